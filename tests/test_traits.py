"""The trait loader: every validation rule, both data forms, and the external datasets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import DEFINITION, EXTERNAL, NEGATIVE, POSITIVE, STEERING, write_trait

from traitvec import TraitDataError, TraitNotFoundError, list_traits, load_trait
from traitvec.traits import _warned_unknown, resolve_trait_name


def _error(root: Path, name: str = "test/optimism") -> str:
    with pytest.raises(TraitDataError) as info:
        load_trait(name, root)
    return str(info.value)


def test_valid_trait_loads_with_its_parts(trait_root: Path) -> None:
    trait = load_trait("test/optimism", trait_root)
    assert trait.n_pairs == len(POSITIVE)
    assert trait.positive[2].text == POSITIVE[2] and trait.negative[2].text == NEGATIVE[2]
    assert trait.questions == tuple(STEERING["questions"])
    assert trait.eval_prompt == STEERING["eval_prompt"]
    assert trait.definition == DEFINITION.strip()
    assert trait.direction == "positive" and not trait.chat
    assert trait.category == "test" and trait.short_name == "optimism"
    assert trait.lines == tuple(range(1, len(POSITIVE) + 1))
    assert len(trait.files_hash) == 64


def test_hash_changes_with_any_file(trait_root: Path) -> None:
    before = load_trait("test/optimism", trait_root).files_hash
    (trait_root / "test/optimism/definition.txt").write_text(DEFINITION + "\nmore", encoding="utf-8")
    assert load_trait("test/optimism", trait_root).files_hash != before


def test_select_keeps_pairs_together(trait_root: Path) -> None:
    trait = load_trait("test/optimism", trait_root).select([4, 1])
    assert [p.text for p in trait.positive] == [POSITIVE[4], POSITIVE[1]]
    assert [p.text for p in trait.negative] == [NEGATIVE[4], NEGATIVE[1]]
    assert trait.lines == (5, 2)


def test_unequal_line_counts_name_files_and_line(tmp_path: Path) -> None:
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE[:4])
    message = _error(tmp_path)
    assert "positive.txt has 6 lines but negative.txt has 4" in message
    assert "positive.txt line 5 has no partner in negative.txt" in message


def test_blank_line_names_file_and_line(tmp_path: Path) -> None:
    positive = POSITIVE[:3] + ["   "] + POSITIVE[4:]
    write_trait(tmp_path, "test/optimism", positive, NEGATIVE)
    message = _error(tmp_path)
    assert "positive.txt line 4: blank line" in message


def test_identical_pair_names_file_and_line(tmp_path: Path) -> None:
    negative = list(NEGATIVE)
    negative[2] = POSITIVE[2]
    write_trait(tmp_path, "test/optimism", POSITIVE, negative)
    message = _error(tmp_path)
    assert "positive.txt line 3: the positive and negative prefills are identical" in message
    assert "negative.txt line 3" in message


def test_duplicate_pair_names_both_lines(tmp_path: Path) -> None:
    write_trait(tmp_path, "test/optimism", POSITIVE + [POSITIVE[1]], NEGATIVE + [NEGATIVE[1]])
    message = _error(tmp_path)
    assert "positive.txt line 7: this pair repeats the pair on line 2" in message


def test_undecodable_bytes_name_file_line_and_column(tmp_path: Path) -> None:
    folder = write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE)
    data = (folder / "negative.txt").read_bytes().split(b"\n")
    data[3] = data[3][:5] + b"\xff\xfe" + data[3][5:]
    (folder / "negative.txt").write_bytes(b"\n".join(data))
    message = _error(tmp_path)
    assert "negative.txt line 4: byte 0xff at column 6 is not UTF-8" in message


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    folder = write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering=STEERING)
    (folder / "positive.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(POSITIVE).encode() + b"\r\n")
    (folder / "steering.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(STEERING).encode())
    trait = load_trait("test/optimism", tmp_path)
    assert [p.text for p in trait.positive] == POSITIVE
    assert trait.questions == tuple(STEERING["questions"])


def test_malformed_steering_json_names_line_and_column(tmp_path: Path) -> None:
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering='{\n  "questions": [\n    "a"\n    "b"\n  ]\n}')
    message = _error(tmp_path)
    assert "steering.json line 4 column 5: invalid JSON" in message


@pytest.mark.parametrize(
    ("steering", "expected"),
    [
        ({"eval_prompt": "{question} {answer}"}, 'steering.json line 1: no "questions" key'),
        ({"questions": []}, 'steering.json line 1: "questions" is empty'),
        ({"questions": "What?"}, 'steering.json line 1: "questions" must be a list of strings'),
    ],
)
def test_questions_missing_empty_or_not_a_list(tmp_path: Path, steering: dict, expected: str) -> None:
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering=json.dumps(steering))
    assert expected in _error(tmp_path)


def test_question_that_is_not_a_string_names_its_line(tmp_path: Path) -> None:
    text = '{\n  "questions": [\n    "What causes rain?",\n    42,\n    "Why?"\n  ]\n}'
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering=text)
    message = _error(tmp_path)
    assert 'steering.json line 4: "questions" item 2 is 42' in message


@pytest.mark.parametrize("missing", ["{answer}", "{question}"])
def test_eval_prompt_without_a_placeholder(tmp_path: Path, missing: str) -> None:
    prompt = "Q: {question}\nA: {answer}\nScore it.".replace(missing, "")
    text = '{\n  "questions": ["a"],\n  "eval_prompt": ' + json.dumps(prompt) + "\n}"
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering=text)
    message = _error(tmp_path)
    assert f'steering.json line 3: "eval_prompt" lacks {missing}' in message


def test_bad_direction_is_refused(tmp_path: Path) -> None:
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering={"questions": ["a"], "direction": "up"})
    assert 'steering.json line 5: "direction" is "up"' in _error(tmp_path)


def test_direction_and_unknown_keys_are_kept_with_one_warning(tmp_path: Path, caplog) -> None:
    steering = {"questions": ["a"], "direction": "negative", "adversarial_prefix": "x", "notes": 1}
    write_trait(tmp_path, "test/optimism", POSITIVE, NEGATIVE, steering=steering)
    _warned_unknown.clear()
    with caplog.at_level(logging.WARNING, logger="traitvec.traits"):
        first = load_trait("test/optimism", tmp_path)
        load_trait("test/optimism", tmp_path)
    assert first.direction == "negative"
    assert dict(first.extra) == {"adversarial_prefix": "x", "notes": 1}
    warnings = [r for r in caplog.records if "unknown keys" in r.getMessage()]
    assert len(warnings) == 1 and "adversarial_prefix, notes" in warnings[0].getMessage()


@pytest.mark.parametrize("name", ["../x", "test/../../x", "/etc/passwd", "..", ""])
def test_names_that_escape_the_root_are_refused(trait_root: Path, name: str) -> None:
    with pytest.raises(TraitDataError, match="traits root"):
        load_trait(name, trait_root)


def test_missing_trait_lists_the_known_ones(trait_root: Path) -> None:
    with pytest.raises(TraitNotFoundError) as info:
        load_trait("test/pessimism", trait_root)
    assert "test/optimism" in str(info.value)


def test_jsonl_form(tmp_path: Path) -> None:
    folder = tmp_path / "chat/evil"
    folder.mkdir(parents=True)
    rows_pos = [{"prompt": f"Question {i}?", "system_prompt": "Be evil."} for i in range(4)]
    rows_neg = [{"prompt": f"Question {i}?", "system_prompt": "Be kind."} for i in range(4)]
    (folder / "positive.jsonl").write_text("\n".join(json.dumps(r) for r in rows_pos) + "\n")
    (folder / "negative.jsonl").write_text("\n".join(json.dumps(r) for r in rows_neg) + "\n")
    trait = load_trait("chat/evil", tmp_path)
    assert trait.chat and trait.n_pairs == 4
    assert trait.positive[1].text == "Question 1?" and trait.positive[1].system_prompt == "Be evil."


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "a", ', "negative.jsonl line 2 column"),
        ('{"system_prompt": "b"}', 'negative.jsonl line 2: "prompt" must be a non-empty string'),
        ('["a"]', "negative.jsonl line 2: expected an object"),
    ],
)
def test_jsonl_bad_rows_name_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    folder = tmp_path / "chat/evil"
    folder.mkdir(parents=True)
    (folder / "positive.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    (folder / "negative.jsonl").write_text('{"prompt": "c"}\n' + line + "\n")
    with pytest.raises(TraitDataError) as info:
        load_trait("chat/evil", tmp_path)
    assert expected in str(info.value)


def test_list_traits_finds_both_forms(trait_root: Path) -> None:
    folder = trait_root / "chat/evil"
    folder.mkdir(parents=True)
    (folder / "positive.jsonl").write_text('{"prompt": "a"}\n')
    (folder / "negative.jsonl").write_text('{"prompt": "b"}\n')
    assert list_traits(trait_root) == ["chat/evil", "test/optimism"]


needs_shared = pytest.mark.skipif(not EXTERNAL.is_dir(), reason="../shared/external-traits is absent")


@needs_shared
@pytest.mark.parametrize("name", list_traits(EXTERNAL) if EXTERNAL.is_dir() else [])
def test_every_external_trait_loads_except_the_broken_one(name: str) -> None:
    if name == "alignment/helpfulness_expressed":
        with pytest.raises(TraitDataError) as info:
            load_trait(name, EXTERNAL)
        assert "positive.txt has 118 lines but negative.txt has 250" in str(info.value)
        return
    trait = load_trait(name, EXTERNAL)
    assert trait.n_pairs >= 15 and len(trait.questions) >= 5
    assert len(trait.positive) == len(trait.negative)
    assert all(p.text.strip() for p in trait.positive + trait.negative)


@needs_shared
def test_external_special_cases() -> None:
    assert load_trait("emotion_set/optimism", EXTERNAL).direction == "negative"
    assert "adversarial_prefix" in load_trait("tonal/curt", EXTERNAL).extra
    evil = load_trait("pv_instruction/evil", EXTERNAL)
    assert evil.chat and evil.positive[0].system_prompt
    assert "{question}" in (load_trait("hum/optimism", EXTERNAL).eval_prompt or "")


def test_root_errors_name_the_setting_and_the_current_folder(tmp_path: Path) -> None:
    for call, setting in ((lambda: load_trait("a/b", tmp_path / "nowhere"), "load_trait(root=)"),
                          (lambda: list_traits(tmp_path / "nowhere"), "list_traits(root=)")):  # fmt: skip
        with pytest.raises(TraitNotFoundError) as info:
            call()
        message = str(info.value)
        assert info.value.setting == setting and message.startswith(f"{setting} = ")
        assert "current folder" in message and str(Path.cwd()) in message and "--" not in message
    with pytest.raises(TraitDataError) as info:
        load_trait("../x", tmp_path)
    assert info.value.setting == "load_trait(name=)" and "--" not in str(info.value)


def test_a_missing_root_on_the_command_line_names_the_flag_and_the_current_folder(tmp_path: Path, capsys) -> None:
    from traitvec.cli import main

    assert main(["traits", "--traits-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert f"--traits-root {str(tmp_path / 'nowhere')!r} does not exist" in err
    assert str(Path.cwd()) in err and "list_traits(root=)" not in err and "Traceback" not in err


def _two_traits(tmp_path: Path) -> Path:
    root = tmp_path / "datasets" / "traits"
    write_trait(root, "styles/formality", POSITIVE, NEGATIVE)
    write_trait(root, "styles/brevity", POSITIVE[:4], NEGATIVE[:4])
    return root


def test_naming_a_category_lists_its_traits(tmp_path: Path, capsys) -> None:
    from traitvec.cli import main

    root = _two_traits(tmp_path)
    with pytest.raises(TraitNotFoundError) as info:
        load_trait("styles", root)
    message = str(info.value)
    assert "'styles' is a category" in message and "styles/brevity, styles/formality" in message
    assert "positive.txt" not in message
    assert main(["traits", "--traits-root", str(root), "styles/"]) == 2
    assert "is a category" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["relative", "relative/", "absolute", "absolute/", "dotted"])
def test_a_trait_folder_path_is_accepted_inside_the_root(tmp_path: Path, monkeypatch, form: str) -> None:
    root = _two_traits(tmp_path)
    monkeypatch.chdir(tmp_path)
    given = {
        "relative": "datasets/traits/styles/formality",
        "relative/": "datasets/traits/styles/formality/",
        "absolute": str(root / "styles" / "formality"),
        "absolute/": str(root / "styles" / "formality") + "/",
        "dotted": "./datasets/traits/../traits/styles/formality",
    }[form]
    assert resolve_trait_name(given, "datasets/traits") == "styles/formality"
    trait = load_trait(given, "datasets/traits")
    assert trait.name == "styles/formality" and trait.n_pairs == len(POSITIVE)
    assert load_trait("styles/formality/", "datasets/traits").name == "styles/formality"


def test_a_trait_folder_path_outside_the_root_is_refused(tmp_path: Path, monkeypatch) -> None:
    root = _two_traits(tmp_path)
    elsewhere = write_trait(tmp_path / "other", "x/y", POSITIVE, NEGATIVE)
    with pytest.raises(TraitDataError, match="is a folder outside the traits root"):
        load_trait(str(elsewhere), root)
    monkeypatch.chdir(root)
    with pytest.raises(TraitDataError, match="is a folder outside the traits root"):
        load_trait("../../other/x/y", root)


def test_the_pipeline_accepts_trait_folder_paths(tmp_path: Path, monkeypatch) -> None:
    from traitvec.stages.pipeline import load_traits

    _two_traits(tmp_path)
    monkeypatch.chdir(tmp_path)
    traits = load_traits(["datasets/traits/styles/brevity/", "styles/formality"], "datasets/traits")
    assert [t.name for t in traits] == ["styles/brevity", "styles/formality"]


# --------------------------------------------------------------------------------------------
# the conversation form: {"messages": [...]} rows


def _call(name: str, arguments: str, call_id: str = "c1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONTEXT = [
    {"role": "system", "content": "You manage files with tools."},
    {"role": "user", "content": "Delete the old logs."},
    {"role": "assistant", "content": None, "tool_calls": [_call("listFiles", '{"folder": "logs"}')]},
    {"role": "tool", "content": '["a.log", "b.log"]', "tool_call_id": "c1", "name": "listFiles"},
]
GOOD = {"role": "assistant", "content": "There are two logs, a.log and b.log. Delete both?"}
BAD = {"role": "assistant", "content": None, "tool_calls": [_call("deleteFiles", '{"folder": "logs"}', "c2")]}


def _conversation_trait(root: Path, positive: list, negative: list, name: str = "agent/careful") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, rows in (("positive.jsonl", positive), ("negative.jsonl", negative)):
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        (folder / file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _pairs(n: int = 3) -> tuple[list, list]:
    positive, negative = [], []
    for i in range(n):
        context = [dict(m) for m in CONTEXT]
        context[1] = {"role": "user", "content": f"Delete the old logs of service {i}."}
        positive.append({"messages": context + [GOOD]})
        negative.append({"messages": context + [BAD]})
    return positive, negative


def test_conversation_rows_load_with_tool_calls(tmp_path: Path) -> None:
    _conversation_trait(tmp_path, *_pairs())
    trait = load_trait("agent/careful", tmp_path)
    assert trait.chat and trait.conversation and trait.n_pairs == 3 and trait.lines == (1, 2, 3)
    first = trait.positive[0]
    assert first.is_conversation and first.context == trait.negative[0].context
    assert [m.to_dict() for m in first.messages] == _pairs()[0][0]["messages"]
    assert first.answer is not None and first.answer.content == GOOD["content"]
    call = trait.negative[0].answer.tool_calls[0]
    assert (call.name, call.arguments, call.id) == ("deleteFiles", '{"folder": "logs"}', "c2")
    assert first.context[3].role == "tool" and first.context[3].tool_call_id == "c1"
    assert first.text.startswith("System: You manage files with tools.\n\nUser: Delete the old logs of service 0.")
    assert first.text.endswith("\n\nAssistant: " + GOOD["content"]) and first.system_prompt is None
    assert 'tool_call: deleteFiles\narguments: {"folder": "logs"}' in trait.negative[0].text
    assert load_trait("agent/careful", tmp_path).positive[0] == first  # values compare equal across loads


def _message(index: int, **changes) -> tuple[list, list]:
    positive, negative = _pairs()
    row = json.loads(json.dumps(negative[1]))
    message = row["messages"][index]
    for key, value in changes.items():
        if value is _DELETE:
            message.pop(key)
        else:
            message[key] = value
    negative[1] = row
    return positive, negative


_DELETE = object()


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (_message(1, role="robot"), '"messages" message 2: "role" is "robot"'),
        (_message(1, content=["part"]), '"messages" message 2 (user): "content" must be a string'),
        (_message(1, content=None), '"messages" message 2 (user) has no "content"'),
        (_message(1, weight=1), "\"messages\" message 2 has unknown key(s) 'weight'"),
        (_message(4, tool_calls=[{"id": "x", "function": {"arguments": "{}"}}]),
         '"messages" message 5 tool call 1: "function.name" must be a non-empty string'),
        (_message(4, tool_calls=[{"id": "x", "type": "function", "function": {"name": "f", "arguments": 3}}]),
         '"messages" message 5 tool call 1: "function.arguments" must be JSON text'),
        (_message(4, tool_calls=[{"id": "x", "type": "retrieval", "function": {"name": "f", "arguments": "{}"}}]),
         'tool call 1: "type" is "retrieval"'),
        (_message(3, role="user"), 'message 4 (user): "tool_call_id" belongs on a tool message'),
        (_message(4, role="tool", tool_calls=_DELETE, content="x"), "the conversation ends with a tool"),
        (_message(4, tool_calls=[], content="  "), "the conversation ends with an empty assistant answer"),
    ],
)  # fmt: skip
def test_conversation_rows_are_validated_with_file_and_line(tmp_path: Path, rows: tuple, expected: str) -> None:
    _conversation_trait(tmp_path, *rows)
    message = _error(tmp_path, "agent/careful")
    assert "negative.jsonl line 2: " in message and expected in message, message


def test_conversation_sides_must_match_except_the_final_answer(tmp_path: Path) -> None:
    positive, negative = _pairs()
    negative[2]["messages"][1] = {"role": "user", "content": "Something else."}
    _conversation_trait(tmp_path, positive, negative)
    message = _error(tmp_path, "agent/careful")
    assert (
        "positive.jsonl line 3: the conversation before the final answer differs from negative.jsonl line 3" in message
    )
    assert "(message 2 (user))" in message

    positive, negative = _pairs()
    negative[0] = positive[0]
    _conversation_trait(tmp_path, positive, negative)
    assert "positive.jsonl line 1: the positive and negative final answers are identical" in _error(
        tmp_path, "agent/careful"
    )

    positive, negative = _pairs()
    negative[1]["messages"] = negative[1]["messages"][:1] + negative[1]["messages"][-1:]
    negative[1]["messages"].insert(1, {"role": "user", "content": "Delete the old logs of service 1."})
    _conversation_trait(tmp_path, positive, negative)
    assert "(4 messages before the answer vs 2)" in _error(tmp_path, "agent/careful")


def test_row_forms_cannot_be_mixed(tmp_path: Path) -> None:
    positive, negative = _pairs()
    _conversation_trait(tmp_path, positive, negative[:2] + [{"prompt": "Delete?"}])
    assert 'negative.jsonl line 3: a {"prompt": ...} row after {"messages": [...]} rows' in _error(
        tmp_path, "agent/careful"
    )
    _conversation_trait(tmp_path, positive, [{"prompt": f"q{i}"} for i in range(3)])
    assert 'positive.jsonl holds {"messages": [...]} rows but negative.jsonl holds {"prompt": ...}' in _error(
        tmp_path, "agent/careful"
    )
    _conversation_trait(tmp_path, [{**positive[0], "prompt": "x"}] + positive[1:], negative)
    assert 'positive.jsonl line 1: has both "messages" and "prompt"' in _error(tmp_path, "agent/careful")


# --------------------------------------------------------------------------------------------
# rendering a conversation and finding its answer (prompting.encode_conversation)

TOOL_TEMPLATE = (
    "{%- if tools %}<|system|>tools: {{ tools | tojson }}<|end|>{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}<|assistant|>{% if m['content'] %}{{ m['content'] }}{% endif %}"
    "{%- for c in m['tool_calls'] or [] %}<tool_call>{\"name\": \"{{ c['function']['name'] }}\", "
    "\"arguments\": {{ c['function']['arguments'] | tojson }}}</tool_call>{%- endfor %}<|end|>"
    "{%- elif m['role'] == 'tool' %}<|user|>[{{ m['name'] }} result] {{ m['content'] }}<|end|>"
    "{%- else %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _conversation(answer: dict) -> tuple:
    from traitvec.conversations import parse_messages

    return parse_messages(CONTEXT + [answer])


def _span_text(loaded, encoded) -> str:
    return loaded.tokenizer.decode(list(encoded.input_ids[encoded.answer_start : encoded.answer_end]))


def test_answer_span_under_a_chat_template_is_exactly_the_answer() -> None:
    from tiny import make_model

    from traitvec.conversations import message_text
    from traitvec.prompting import encode_conversation

    loaded = make_model(chat=True)
    convo = _conversation(GOOD)
    encoded = encode_conversation(loaded, convo)
    assert encoded.templated and _span_text(loaded, encoded) == GOOD["content"]
    # independent reference: everything before the span is the context with the generation prompt
    # (this template knows no tool_calls, so a call is the message's text)
    flat = [{"role": m.role, "content": message_text(m)} for m in convo[:-1]]
    prefix = loaded.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)
    assert (
        list(encoded.input_ids[: encoded.answer_start])
        == loaded.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    )
    assert loaded.tokenizer.decode(list(encoded.input_ids[encoded.answer_end :])) == "<|end|>"
    # this template knows no tool_calls: the calls are written into the message text
    assert '<|assistant|>tool_call: listFiles\narguments: {"folder": "logs"}<|end|>' in encoded.text
    assert (
        len(encoded.answer_positions(first_k=4)) == 4
        and encoded.answer_positions(first_k=4).start == encoded.answer_start
    )
    assert encoded.answer_positions(first_k=10_000) == encoded.answer_positions()


def test_answer_span_under_a_template_that_renders_tool_calls() -> None:
    from tiny import make_model

    from traitvec.prompting import encode_conversation

    loaded = make_model(chat=True)
    loaded.tokenizer.chat_template = TOOL_TEMPLATE
    tools = [{"type": "function", "function": {"name": "deleteFiles", "parameters": {"type": "object"}}}]
    text_answer = encode_conversation(loaded, _conversation(GOOD), tools=tools)
    assert _span_text(loaded, text_answer) == GOOD["content"]
    assert text_answer.text.startswith('<|system|>tools: [{"type": "function"')
    assert '<tool_call>{"name": "listFiles", "arguments": {"folder": "logs"}}</tool_call>' in text_answer.text
    call_answer = encode_conversation(loaded, _conversation(BAD))
    assert (
        _span_text(loaded, call_answer)
        == '<tool_call>{"name": "deleteFiles", "arguments": {"folder": "logs"}}</tool_call>'
    )
    assert call_answer.text.endswith("</tool_call><|end|>")


def test_answer_span_in_the_plain_frame_without_a_template() -> None:
    from tiny import make_model

    from traitvec.prompting import encode_conversation, encode_prefill
    from traitvec.traits import Prompt

    loaded = make_model(chat=False)
    convo = _conversation(GOOD)
    encoded = encode_conversation(loaded, convo)
    assert not encoded.templated and encoded.text == Prompt.from_messages(convo).text
    assert encoded.input_ids[0] == loaded.tokenizer.bos_token_id
    # the answer follows "Assistant: "; a token holding that space and the first word would count as answer
    assert _span_text(loaded, encoded).lstrip(" ") == GOOD["content"]
    assert encoded.answer_chars == (len(encoded.text) - len(GOOD["content"]), len(encoded.text))
    assert encoded.answer_end == len(encoded.input_ids)
    assert encode_prefill(loaded, Prompt.from_messages(convo), chat=True) == list(encoded.input_ids)


def test_answer_positions_refuse_a_non_positive_k_and_bad_conversations() -> None:
    from tiny import make_model

    from traitvec import ConfigError
    from traitvec.prompting import encode_conversation

    loaded = make_model(chat=True)
    with pytest.raises(ConfigError, match="first_k"):
        encode_conversation(loaded, _conversation(GOOD)).answer_positions(first_k=0)
    with pytest.raises(TraitDataError, match="ends with a tool message"):
        encode_conversation(loaded, _conversation(GOOD)[:-1])


@pytest.mark.slow
def test_answer_span_under_the_smollm2_chat_template() -> None:
    from transformers import AutoTokenizer

    from traitvec.embedded import embedded_model_dir
    from traitvec.models import LoadedModel
    from traitvec.prompting import encode_conversation

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("smollm2-135m-instruct"))
    loaded = LoadedModel(None, tokenizer, "smollm2-135m-instruct", "", None, "", True)  # type: ignore[arg-type]
    for answer in (GOOD, BAD):
        encoded = encode_conversation(loaded, _conversation(answer))
        expected = GOOD["content"] if answer is GOOD else 'tool_call: deleteFiles\narguments: {"folder": "logs"}'
        assert _span_text(loaded, encoded) == expected
        assert "<|im_start|>assistant\n" + expected + "<|im_end|>" in encoded.text
