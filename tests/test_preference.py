"""Preference data → trait folders: KTO pairing, DPO pairs, refused rows, hold-out, atomic output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from traitvec import ConfigError, TraitDataError, load_trait
from traitvec.conversations import parse_messages
from traitvec.preference import RefusedRowsError, import_pairs
from traitvec.traits import DEFINITION_STUB

EXAMPLES = ROOT / "datasets" / "examples"
KTO, DPO = EXAMPLES / "kto_example.jsonl", EXAMPLES / "dpo_example.jsonl"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(tmp_path: Path, rows: list[Any], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _kto(request: str, answer: str, label: Any, behavior: str = "b") -> dict[str, Any]:
    convo = [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
    return {"conversations": convo, "label": label, "behavior": behavior}


def _loaded_pairs(out: Path) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    trait = load_trait(out.name, out.parent)
    return [
        ([m.to_dict() for m in p.messages], [m.to_dict() for m in n.messages])
        for p, n in zip(trait.positive, trait.negative, strict=True)
    ]


def _expected_kto_pairs(behavior: str) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """An independent pairing of the example file: same conversation before the answer, in file order."""
    groups: dict[str, tuple[list[tuple[int, Any]], list[tuple[int, Any]]]] = {}
    for line, row in enumerate(_rows(KTO), start=1):
        if row["behavior"] == behavior:
            key = json.dumps(row["conversations"][:-1], sort_keys=True)
            groups.setdefault(key, ([], []))[0 if row["label"] else 1].append((line, row["conversations"]))
    pairs = [(p, n) for pos, neg in groups.values() for p, n in zip(pos, neg, strict=True)]
    return [(p[1], n[1]) for p, n in sorted(pairs, key=lambda pn: min(pn[0][0], pn[1][0]))]


@pytest.mark.parametrize("behavior", ["verification_before_action", "intellectual_humility"])
def test_kto_example_round_trips(tmp_path: Path, behavior: str) -> None:
    out = tmp_path / "traits" / "agent" / behavior
    report = import_pairs(KTO, format="kto", behavior=behavior, out=out, holdout=0)
    expected = _expected_kto_pairs(behavior)
    assert _loaded_pairs(out) == expected
    assert report.pairs == len(expected) and report.held_out == 0 and not report.refused and not report.unpaired
    assert report.behaviors[behavior].pairs == len(expected) and not report.behaviors[behavior].unpaired
    assert not (out / "steering.json").exists()
    pos = (out / "positive.jsonl").read_text().splitlines()
    neg = (out / "negative.jsonl").read_text().splitlines()
    for p, n in zip(pos, neg, strict=True):  # line by line: identical except the final assistant message
        assert json.loads(p)["messages"][:-1] == json.loads(n)["messages"][:-1]
        assert json.loads(p)["messages"][-1] != json.loads(n)["messages"][-1]


@pytest.mark.parametrize("behavior", ["careful_sql", "grounded_actions"])
def test_dpo_example_round_trips_with_tool_calls(tmp_path: Path, behavior: str) -> None:
    out = tmp_path / behavior
    report = import_pairs(DPO, format="dpo", behavior=behavior, out=out, holdout=0)
    rows = [r for r in _rows(DPO) if r["behavior"] == behavior]
    expected = [(r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]) for r in rows]
    assert _loaded_pairs(out) == expected
    assert report.pairs == len(rows) and report.behaviors[behavior].positive == len(rows)
    if behavior == "grounded_actions":
        trait = load_trait(out.name, out.parent)
        assert any(m.role == "tool" for p in trait.positive for m in p.messages)
        calls = [p.answer for p in trait.positive if p.answer is not None and p.answer.tool_calls]
        assert calls and calls[0].content is None and calls[0].tool_calls[0].name == "search"


def test_held_out_requests_become_steering_questions_and_leave_extraction(tmp_path: Path) -> None:
    everything = import_pairs(DPO, format="dpo", behavior="careful_sql", out=tmp_path / "all", holdout=0)
    report = import_pairs(DPO, format="dpo", behavior="careful_sql", out=tmp_path / "x", holdout=0.3, seed=3)
    trait = load_trait("x", tmp_path)
    requests = {next(m.content for m in reversed(p.context) if m.role == "user") for p in trait.positive}
    assert len(trait.questions) == round(0.3 * 7) == 2  # 8 pairs over 7 distinct requests
    assert not set(trait.questions) & requests
    assert report.pairs + report.held_out == everything.pairs
    again = import_pairs(DPO, format="dpo", behavior="careful_sql", out=tmp_path / "y", holdout=0.3, seed=3)
    assert again.questions == report.questions
    draws = {
        import_pairs(DPO, format="dpo", behavior="careful_sql", out=tmp_path / f"s{s}", holdout=0.3, seed=s).questions
        for s in range(6)
    }
    assert len(draws) > 1


def test_malformed_rows_are_refused_with_line_numbers(tmp_path: Path) -> None:
    good = [_kto("Is it safe?", "Let me check first.", True), _kto("Is it safe?", "Yes, go ahead.", False)]
    bad = [
        '{"conversations": [',
        "[1, 2]",
        {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        _kto("q", "a", "yes"),
        {"conversations": "hello", "label": True},
        {"conversations": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}], "label": True},
        _kto("q", "   ", True),
        {
            "conversations": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
            ],
            "label": True,
        },
        {"conversations": [{"role": "user", "content": "q"}], "label": False},
        {"conversations": [{"role": "user", "content": 7}, {"role": "assistant", "content": "a"}], "label": False},
    ]
    path = _write(tmp_path, good + bad)
    out = tmp_path / "out"
    with pytest.raises(RefusedRowsError) as info:
        import_pairs(path, format="kto", behavior="b", out=out)
    reasons = {r.line: r.reason for r in info.value.rows}
    assert sorted(reasons) == list(range(3, 13))
    assert "invalid JSON" in reasons[3]
    assert "expected a JSON object" in reasons[4]
    assert 'missing key "label"' in reasons[5]
    assert '"label" must be true or false' in reasons[6] and '"yes"' in reasons[6]
    assert '"conversations" must be a non-empty list' in reasons[7]
    assert '"role" is "robot"' in reasons[8]
    assert "empty assistant answer" in reasons[9]
    assert "tool call 1 must look like" in reasons[10]
    assert "ends with a user message" in reasons[11]
    assert '"content" must be a string' in reasons[12]
    message = str(info.value)
    assert "10 row(s) refused" in message and "line 3: invalid JSON" in message
    assert "use import_pairs(skip_bad=)" in message
    assert info.value.setting == "import_pairs(skip_bad=)"
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]

    report = import_pairs(path, format="kto", behavior="b", out=out, skip_bad=True, holdout=0)
    assert report.pairs == 1 and [r.line for r in report.refused] == list(range(3, 13))
    assert "refused line 6" in report.describe()
    assert _loaded_pairs(out) == [(good[0]["conversations"], good[1]["conversations"])]
    provenance = json.loads((out / "import.json").read_text())
    assert provenance["pairs"] == [[1, 2]] and len(provenance["refused"]) == 10


def test_kto_rows_of_one_prompt_pair_in_order_and_the_rest_are_reported(tmp_path: Path) -> None:
    rows = [
        _kto("Delete it?", "Checking first.", True),  # 1
        _kto("Delete it?", "Deleted.", False),  # 2
        _kto("Other?", "Careful answer.", True),  # 3: no false partner
        _kto("Delete it?", "Asking you first.", True),  # 4
        _kto("Delete it?", "Gone.", False),  # 5
        _kto("Delete it?", "One more careful one.", True),  # 6: the third true row, no partner
    ]
    out = tmp_path / "t"
    report = import_pairs(_write(tmp_path, rows), format="kto", behavior="b", out=out, holdout=0)
    assert [p[0][-1]["content"] + " / " + p[1][-1]["content"] for p in _loaded_pairs(out)] == [
        "Checking first. / Deleted.",
        "Asking you first. / Gone.",
    ]
    assert [r.line for r in report.unpaired] == [3, 6]
    assert (
        "without a label false partner" in report.unpaired[1].reason and "first on line 1" in report.unpaired[1].reason
    )
    assert report.behaviors["b"].unpaired == 2 and report.behaviors["b"].pairs == 2
    assert json.loads((out / "import.json").read_text())["pairs"] == [[1, 2], [4, 5]]


def test_identical_answers_and_repeated_pairs_are_refused(tmp_path: Path) -> None:
    rows = [
        _kto("A?", "same", True),
        _kto("A?", "same", False),
        _kto("B?", "good", True),
        _kto("B?", "bad", False),
        _kto("B?", "good", True),
        _kto("B?", "bad", False),
    ]
    with pytest.raises(RefusedRowsError) as info:
        import_pairs(_write(tmp_path, rows), format="kto", behavior="b", out=tmp_path / "t")
    reasons = {r.line: r.reason for r in info.value.rows}
    assert sorted(reasons) == [1, 2, 5, 6]
    assert "are identical" in reasons[1]
    assert "repeats the pair on line(s) 3/4" in reasons[5]


def test_dpo_string_forms_implicit_prompt_and_differing_contexts(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Say hi.", "chosen": "Hello!", "rejected": "No."},
        {
            "chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
            "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "B."}],
        },
        {
            "prompt": [{"role": "user", "content": "R?"}],
            "chosen": [
                {"role": "assistant", "content": "x", "tool_calls": None},
                {"role": "user", "content": "more"},
                {"role": "assistant", "content": "y"},
            ],
            "rejected": [{"role": "assistant", "content": "z"}],
        },
        {"prompt": [{"role": "user", "content": "S?"}], "chosen": [{"role": "assistant", "content": "s"}]},
    ]
    with pytest.raises(RefusedRowsError) as info:
        import_pairs(_write(tmp_path, rows), format="dpo", out=tmp_path / "t")
    reasons = {r.line: r.reason for r in info.value.rows}
    assert sorted(reasons) == [3, 4]
    assert '"chosen" and "rejected" differ before their final assistant message' in reasons[3]
    assert "missing key(s) 'rejected'" in reasons[4]
    import_pairs(_write(tmp_path, rows), format="dpo", out=tmp_path / "t", skip_bad=True, holdout=0)
    assert _loaded_pairs(tmp_path / "t") == [
        ([{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hello!"}],
         [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "No."}]),
        (rows[1]["chosen"], rows[1]["rejected"]),
    ]  # fmt: skip


def test_behaviours_must_be_chosen_and_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TraitDataError) as info:
        import_pairs(KTO, format="kto", out=tmp_path / "t")
    assert "intellectual_humility (6 rows), verification_before_action (12 rows)" in str(info.value)
    assert info.value.setting == "import_pairs(behavior=)"
    with pytest.raises(TraitDataError) as info:
        import_pairs(KTO, format="kto", behavior="humility", out=tmp_path / "t")
    assert "no row has behavior 'humility'" in str(info.value) and "intellectual_humility" in str(info.value)
    assert not (tmp_path / "t").exists()


def test_existing_folders_are_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    (out / "positive.txt").write_text("mine\n")
    with pytest.raises(ConfigError) as info:
        import_pairs(KTO, format="kto", behavior="intellectual_humility", out=out)
    assert "already exists" in str(info.value) and info.value.setting == "import_pairs(overwrite=)"
    bad = _write(tmp_path, ["{"])
    with pytest.raises(RefusedRowsError):
        import_pairs(bad, format="kto", out=out, overwrite=True)
    assert (out / "positive.txt").read_text() == "mine\n"  # a failed import leaves the old folder as it was
    import_pairs(KTO, format="kto", behavior="intellectual_humility", out=out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "definition.txt", "import.json", "negative.jsonl", "positive.jsonl", "steering.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "t"]


def test_an_interrupted_write_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import traitvec.preference as preference

    def boom(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(preference, "load_trait", boom)
    with pytest.raises(KeyboardInterrupt):
        import_pairs(KTO, format="kto", behavior="intellectual_humility", out=tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_definition_stub_reads_as_no_rubric(tmp_path: Path) -> None:
    import_pairs(KTO, format="kto", behavior="intellectual_humility", out=tmp_path / "t")
    text = (tmp_path / "t" / "definition.txt").read_text()
    assert text.startswith(DEFINITION_STUB) and "write this rubric before judging" in text
    trait = load_trait("t", tmp_path)
    assert trait.definition is None and trait.conversation and trait.questions


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format"):
        import_pairs(KTO, format="orpo", out=tmp_path / "t")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="holdout"):
        import_pairs(KTO, format="kto", out=tmp_path / "t", holdout=1.0)
    with pytest.raises(ConfigError, match="is not a file"):
        import_pairs(tmp_path / "missing.jsonl", format="kto", out=tmp_path / "t")


def test_imported_answers_are_exact_token_spans_on_a_chat_model(tmp_path: Path) -> None:
    from tiny import make_model

    from traitvec.prompting import encode_conversation

    import_pairs(DPO, format="dpo", behavior="grounded_actions", out=tmp_path / "t", holdout=0)
    trait = load_trait("t", tmp_path)
    loaded = make_model(chat=True)
    for prompt in trait.positive + trait.negative:
        encoded = encode_conversation(loaded, prompt)
        answer = loaded.tokenizer.decode(list(encoded.input_ids[encoded.answer_start : encoded.answer_end]))
        assert answer == encoded.text[slice(*encoded.answer_chars)]
        assert prompt.answer is not None and (prompt.answer.content or prompt.answer.tool_calls[0].name) in answer


def test_example_files_parse_with_the_shared_message_rules() -> None:
    kto, dpo = _rows(KTO), _rows(DPO)
    assert 12 <= len(kto) <= 20 and 12 <= len(dpo) <= 20
    assert len({r["behavior"] for r in kto}) >= 2 and len({r["behavior"] for r in dpo}) >= 2
    for row in kto:
        assert isinstance(row["label"], bool) and parse_messages(row["conversations"])
    assert any(m.get("tool_calls") for r in kto for m in r["conversations"])
    assert any(m["role"] == "tool" for r in dpo for m in r["prompt"])
