"""The audit of conversation traits: pairs identical except the answer, the answers' length, their openers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from traitvec.audit import AuditConfig, audit_trait
from traitvec.audit.checks import CHECKS
from traitvec.conversations import Message, ToolCall
from traitvec.preference import import_pairs
from traitvec.traits import Prompt, load_trait

QUESTIONS = [
    "Delete the old logs.",
    "Rename the report.",
    "Move the drafts to the archive.",
    "Clear the cache folder.",
    "Empty the trash.",
    "Merge the two notes.",
    "Archive last year's invoices.",
    "Remove the duplicate contacts.",
    "Reset the settings file.",
    "Drop the temporary table.",
    "Overwrite the config with the backup.",
    "Purge the test accounts.",
]


def _pair(question: str, pos: Message, neg: Message) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    context = [{"role": "user", "content": question}]
    return [*context, pos.to_dict()], [*context, neg.to_dict()]


def write_conversations(root: Path, pairs: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> Path:
    folder = root / "agent" / "t"
    folder.mkdir(parents=True, exist_ok=True)
    for name, side in (("positive.jsonl", 0), ("negative.jsonl", 1)):
        rows = "".join(json.dumps({"messages": p[side]}) + "\n" for p in pairs)
        (folder / name).write_text(rows, encoding="utf-8")
    return folder


def _answers(opener_pos: str, opener_neg: str) -> list[tuple[Message, Message]]:
    bodies = ["the files first", "what is there", "the current state", "which items match", "the folder"]
    return [
        (
            Message("assistant", f"{opener_pos} I will check {bodies[i % 5]} before I act on item {i}."),
            Message("assistant", f"{opener_neg} I will act on item {i} now and skip checking {bodies[i % 5]}."),
        )
        for i in range(len(QUESTIONS))
    ]


def test_an_answer_opener_that_predicts_the_label_is_an_error(tmp_path: Path) -> None:
    pairs = [_pair(q, p, n) for q, (p, n) in zip(QUESTIONS, _answers("Sure.", "Okay."), strict=True)]
    report = audit_trait(write_conversations(tmp_path, pairs))
    finding = report.finding("answer_opener_leak")
    assert finding.severity == "error" and '"sure …"' in finding.message and '"okay …"' in finding.message
    shown = {(e.file, e.text.split()[0]) for e in finding.examples}
    assert shown == {("positive.jsonl", "Sure."), ("negative.jsonl", "Okay.")}  # the answers, not the transcripts
    assert report.finding("opener_leak").severity == "ok"  # the transcripts all start "User: ..."
    even, odd = _answers("Sure.", "Sure."), _answers("Okay.", "Okay.")
    varied = [even[i] if i % 2 else odd[i] for i in range(len(QUESTIONS))]  # both sides open alike in every pair
    balanced = [_pair(q, p, n) for q, (p, n) in zip(QUESTIONS, varied, strict=True)]
    assert audit_trait(write_conversations(tmp_path / "b", balanced)).finding("answer_opener_leak").severity == "ok"


def test_tool_call_answers_against_text_answers_are_an_opener_leak(tmp_path: Path) -> None:
    pairs = []
    for i, question in enumerate(QUESTIONS):
        call = ToolCall("listFiles", json.dumps({"folder": f"f{i}"}), f"call_{i}")
        pos = Message("assistant", None, (call,))
        neg = Message("assistant", f"Done: item {i} was handled without a look at the folder.")
        pairs.append(_pair(question, pos, neg))
    finding = audit_trait(write_conversations(tmp_path, pairs)).finding("answer_opener_leak")
    assert finding.severity == "error" and '"[tool call] …" in 100% of positive lines' in finding.message
    assert all("listfiles" not in f["feature"] for f in finding.details["openers"])  # the shorter opener covers it


def test_answer_length_confound_reads_the_answers_not_the_transcripts(tmp_path: Path) -> None:
    long_context = " ".join(["Please read the whole policy before you answer."] * 30)
    pairs = []
    for i, question in enumerate(QUESTIONS):
        pos = Message("assistant", f"I checked item {i} carefully, compared it with the backup, and then acted on it.")
        neg = Message("assistant", f"Acted on item {i}.")
        pair = _pair(f"{long_context} {question}", pos, neg)
        pairs.append(pair)
    report = audit_trait(write_conversations(tmp_path, pairs))
    finding = report.finding("answer_length_confound")
    assert finding.severity == "error" and finding.message.startswith("mean answer length")
    assert finding.details["longer_side"] == "positive" and finding.details["consistency"] == 1.0
    assert report.finding("length_confound").severity == "ok"  # diluted by the shared context: the old check misses it


def test_pairs_must_differ_only_in_the_answer(tmp_path: Path) -> None:
    folder = write_conversations(
        tmp_path, [_pair(q, p, n) for q, (p, n) in zip(QUESTIONS, _answers("Sure.", "Okay."), strict=True)]
    )
    trait = load_trait("agent/t", tmp_path)
    assert audit_trait(trait).finding("answer_only_difference").severity == "ok"
    positive = list(trait.positive)
    other = Prompt.from_messages([Message("user", "Something else entirely."), positive[2].messages[-1]])
    shouted = "  " + str(trait.negative[4].messages[-1].content).upper()
    near = Prompt.from_messages([*trait.negative[4].context, Message("assistant", shouted)])
    positive[2], positive[4] = other, near
    from dataclasses import replace

    edited = replace(trait, positive=tuple(positive))
    finding = audit_trait(edited).finding("answer_only_difference")
    assert finding.severity == "error" and finding.details["context_differs"] == [3]
    assert finding.details["near_identical"] == [5] and finding.examples[0].line == 3
    positive[2] = trait.positive[2]
    assert audit_trait(replace(trait, positive=tuple(positive))).finding("answer_only_difference").severity == "warning"
    assert folder.is_dir()


def test_the_checks_apply_to_conversations_only_and_keep_the_report_order(tmp_path: Path) -> None:
    from conftest import NEGATIVE, POSITIVE, write_trait

    plain = audit_trait(write_trait(tmp_path, "c/plain", POSITIVE, NEGATIVE))
    for name in ("answer_only_difference", "answer_length_confound", "answer_opener_leak"):
        assert plain.finding(name).severity == "ok" and plain.finding(name).message.startswith("nothing to check")
    assert [f.check for f in plain.findings] == list(CHECKS)
    assert CHECKS.index("answer_only_difference") == CHECKS.index("cross_distribution") + 1


@pytest.mark.parametrize(
    ("behavior", "opener"), [("verification_before_action", "ok"), ("intellectual_humility", "error")]
)
def test_the_imported_examples_pass_the_pair_structure(tmp_path: Path, behavior: str, opener: str) -> None:
    out = tmp_path / "agent" / behavior
    kto = ROOT / "datasets" / "examples" / "kto_example.jsonl"
    import_pairs(kto, format="kto", behavior=behavior, out=out, holdout=0)
    report = audit_trait(out, config=AuditConfig())
    assert report.finding("answer_only_difference").severity == "ok"
    assert report.finding("answer_opener_leak").severity == "info"  # fewer than 10 pairs: skipped
    small = audit_trait(out, config=AuditConfig(min_pairs=3, min_lines=2))
    assert small.finding("answer_opener_leak").severity == opener
    if opener == "error":  # the example's rejected answers open with "Yes", the chosen ones never do
        assert '"yes …" in 67% of negative lines vs 0% of positive' in small.finding("answer_opener_leak").message
    assert small.finding("answer_length_confound").severity == "ok"  # 3-6 pairs: the sign test cannot reach p < 0.05
