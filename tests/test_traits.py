"""The trait loader: every validation rule, both data forms, and the external datasets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import DEFINITION, EXTERNAL, NEGATIVE, POSITIVE, STEERING, write_trait

from traitvec import TraitDataError, TraitNotFoundError, list_traits, load_trait
from traitvec.traits import _warned_unknown


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
