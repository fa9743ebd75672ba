"""The conversation form (``{"messages": [...]}`` rows): pairs differ only in the final answer.

Every other family reads a conversation as its whole transcript, in which the shared context hides
what the pair contrasts; these checks read the final assistant answers alone (their text, and
each tool call as ``tool_call: NAME`` / ``arguments: ARGS``):

- ``answer_only_difference`` (error): a pair whose conversations before the answer differ, or whose
  two answers are the same (warning when they differ only in case, spacing or the order of a tool
  call's arguments): the pair does not contrast the answer alone;
- ``answer_length_confound`` (error): the answers' paired length difference, as
  ``length_confound`` measures it for prefills: > 10% of the mean answer length, the same side
  longer in >= 70% of pairs, sign test p < 0.05;
- ``answer_opener_leak`` (error): how answers start (first word, first two words, or ``[tool call]``
  and the called function for an answer that is a tool call) predicts the label, with
  ``opener_leak``'s thresholds: one opener starts >= 50% of one class's answers and >= 50 points
  fewer of the other's.

For traits in another form the three pass with nothing to check (``ok``, saying so); the two
statistical ones are skipped (``info``) below ``min_pairs`` pairs, as the other statistical checks are.
"""

from __future__ import annotations

import json
from types import MappingProxyType

from ..conversations import Message, message_text
from ..traits import Trait
from ._common import pct, pts
from .config import AuditConfig
from .confounds import check_length_confound
from .findings import Finding
from .leaks import _flag_details, _flag_text, _pair_examples, _predictive
from .registry import trait_check
from .text import PairText, words

__all__ = ["check_answer_only_difference", "check_answer_length_confound", "check_answer_opener_leak", "answers"]

_NOT_APPLICABLE = 'nothing to check: applies to conversation traits ({"messages": [...]} rows) only'


def answers(trait: Trait) -> PairText:
    """The final answers of a conversation trait as audited text (file names are the jsonl files)."""
    return PairText(
        pos=tuple(message_text(p.messages[-1]) for p in trait.positive),
        neg=tuple(message_text(n.messages[-1]) for n in trait.negative),
        lines=trait.lines,
        pos_file="positive.jsonl",
        neg_file="negative.jsonl",
    )


def _normal(message: Message) -> str:
    """An answer with case, spacing and the key order of tool-call arguments made uniform."""
    calls = []
    for call in message.tool_calls:
        try:
            arguments = json.dumps(json.loads(call.arguments), sort_keys=True)
        except json.JSONDecodeError:
            arguments = call.arguments
        calls.append(f"{call.name}({' '.join(arguments.split())})")
    return " ".join((message.content or "").lower().split()) + "|" + "|".join(calls)


@trait_check("answer_only_difference")
def check_answer_only_difference(trait: Trait, cfg: AuditConfig) -> Finding:
    """Each pair shares its conversation before the answer, and its two answers really differ."""
    name = "answer_only_difference"
    threshold = (
        "every pair: identical messages before the final answer, and answers that differ beyond case and spacing"
    )
    if not trait.conversation:
        return Finding(name, "ok", _NOT_APPLICABLE, threshold)
    data = answers(trait)
    context, same, near = [], [], []
    for i, (p, n) in enumerate(zip(trait.positive, trait.negative, strict=True)):
        if p.context != n.context:
            context.append(i)
        elif p.messages[-1] == n.messages[-1]:
            same.append(i)
        elif _normal(p.messages[-1]) == _normal(n.messages[-1]):
            near.append(i)
    fix = (
        "Write each pair as one conversation with two final answers: everything before the answer identical, the "
        "answers differing in the behaviour (traitvec import-pairs builds pairs that way)."
    )
    bad = context + same
    flagged = bad or near
    examples = tuple(e for i in flagged[:3] for e in (data.example(1, i), data.example(0, i)))
    details = MappingProxyType(
        {
            "context_differs": [trait.lines[i] for i in context],
            "same_answer": [trait.lines[i] for i in same],
            "near_identical": [trait.lines[i] for i in near],
        }
    )
    counts = (
        f"{len(context)} pair(s) differ before the answer, {len(same)} have the same answer, {len(near)} answers "
        "differ only in case, spacing or argument order"
    )
    if bad:
        return Finding(name, "error", counts, threshold, float(len(bad)), examples, fix, details)
    if near:
        return Finding(name, "warning", counts, threshold, float(len(near)), examples, fix, details)
    return Finding(name, "ok", f"all {trait.n_pairs} pairs differ only in the final answer", threshold, 0.0, fix=fix)


@trait_check("answer_length_confound")
def check_answer_length_confound(trait: Trait, cfg: AuditConfig) -> Finding:
    """A systematic length difference between the two answers of the pairs."""
    name = "answer_length_confound"
    if not trait.conversation:
        return Finding(name, "ok", _NOT_APPLICABLE, "as length_confound, on the final answers")
    found = check_length_confound(answers(trait), cfg)
    fix = (
        "Make the two answers of each pair about the same length (or vary which side is longer); an answer-mean "
        "vector otherwise learns length (guide, Phase 5: length confound)."
    )
    message = found.message.replace("mean length", "mean answer length", 1)
    return Finding(name, found.severity, message, found.threshold, found.value, found.examples, fix, found.details)


def _answer_openers(message: Message) -> set[str]:
    if not (message.content or "").strip() and message.tool_calls:
        return {"[tool call] …", f"[tool call] {message.tool_calls[0].name} …"}
    ws = words(message.content or "")
    return {f"{ws[0]} …", f"{ws[0]} {ws[1]} …"} if len(ws) > 1 else ({f"{ws[0]} …"} if ws else set())


def _split(feature: str) -> tuple[str, str | None]:
    """``"w1 w2 …"`` → ``("w1", "w2")``; ``"[tool call] f …"`` → ``("[tool call]", "f")``; one word → ``(w, None)``."""
    body = feature.removesuffix(" …")
    if body.startswith("[tool call]"):
        return "[tool call]", body.removeprefix("[tool call]").strip() or None
    head, _, tail = body.partition(" ")
    return head, tail or None


@trait_check("answer_opener_leak")
def check_answer_opener_leak(trait: Trait, cfg: AuditConfig) -> Finding:
    """How the answers start (first words, or the tool called) predicts the label."""
    name = "answer_opener_leak"
    threshold = (
        f"one answer opener (first word, first two words, or [tool call] and its function) starts >= "
        f"{pct(cfg.opener_share)} of one class's answers and at least {pts(cfg.opener_gap)} fewer of the other's; "
        f">= {cfg.min_lines} answers"
    )
    if not trait.conversation:
        return Finding(name, "ok", _NOT_APPLICABLE, threshold)
    data = answers(trait)
    if data.n < cfg.min_pairs:
        message = f"skipped: {data.n} pairs is below the {cfg.min_pairs} this check needs to tell a pattern from noise"
        return Finding(name, "info", message, threshold=f">= {cfg.min_pairs} pairs")
    flags = _predictive(
        [_answer_openers(p.messages[-1]) for p in trait.positive],
        [_answer_openers(n.messages[-1]) for n in trait.negative],
        cfg.opener_share,
        cfg.opener_gap,
        cfg.min_lines,
    )
    heads = {_split(f.feature)[0] for f in flags if _split(f.feature)[1] is None}
    flags = [f for f in flags if _split(f.feature)[1] is None or _split(f.feature)[0] not in heads]  # as opener_leak
    fix = (
        "Start the answers of both classes the same ways (and use tool calls on both sides, or on neither); an "
        "answer vector otherwise learns the opener, not the behaviour (guide, Phase 5: sentence opener)."
    )
    if not flags:
        return Finding(name, "ok", "no answer opener is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: f'"{s}"') for f in flags[:6])
    return Finding(
        name,
        "error",
        f"answers start differently by label: {listed}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"openers": _flag_details(flags)}),
    )
