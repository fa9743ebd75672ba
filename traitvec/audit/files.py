"""The audit's checks of the evaluation files: ``definition.txt`` (the judge's rubric) and ``steering.json``.

- ``definition_format``: HIGH / MID / LOW bands and a ``Key:`` line are required (error); bands
  without numeric ranges get a warning; a missing ``definition.txt`` is an error (the judge needs it).
- ``definition_length``: more than 12 non-empty lines or 200 words is a warning (the guide: ~7-10
  lines; longer definitions hurt the judge's accuracy).
- ``steering_questions``: 15-20 questions recommended (warning outside), duplicates (warning), a
  missing ``steering.json`` (warning). A malformed ``eval_prompt`` never reaches here: the loader
  refuses it and the audit reports that as a ``structure`` error.
- ``steering_overlap``: a question that repeats an extraction prefill (warning): it shares a run of
  ``overlap_ngram`` (5) consecutive words with a prefill, or the two share at least half their
  content words (Jaccard >= 0.5, each with 4 or more content words).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from types import MappingProxyType

from ..traits import Trait
from .config import AuditConfig
from .findings import Example, Finding
from .registry import trait_check
from .text import content_words, words

__all__ = ["check_definition_format", "check_definition_length", "check_steering_questions", "check_steering_overlap"]

_BANDS = {
    "HIGH": re.compile(r"^[\W_]*high\b", re.IGNORECASE),
    "MID": re.compile(r"^[\W_]*(mid|medium)\b", re.IGNORECASE),
    "LOW": re.compile(r"^[\W_]*low\b", re.IGNORECASE),
}
_RANGE = re.compile(r"\d+\s*(?:-|–|—|to)\s*\d+")
_KEY = re.compile(r"^[\W_]*key\b\s*(?::|distinction)", re.IGNORECASE)
_TEMPLATE = (
    "Follow the guide's template: 'Score {trait} (0-100).' / 'HIGH (70-100): {observable markers}' / "
    "'MID (40-70): {mixed}' / 'LOW (0-40): {opposite markers}' / 'Key: {the one critical distinction}'."
)


def _definition_lines(trait: Trait) -> list[tuple[int, str]]:
    """(1-based line number, text) of definition.txt, numbered as in the file when it can be read."""
    path = trait.path / "definition.txt"
    try:
        raw = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").split("\n")
    except (OSError, UnicodeDecodeError):
        raw = (trait.definition or "").split("\n")
    return [(i, line) for i, line in enumerate(raw, start=1)]


@trait_check("definition_format")
def check_definition_format(trait: Trait, cfg: AuditConfig) -> Finding:
    """HIGH/MID/LOW bands with score ranges and a Key line in ``definition.txt``."""
    name = "definition_format"
    threshold = "HIGH, MID and LOW band lines and a 'Key:' (or 'Key distinction') line; bands with numeric ranges"
    if trait.definition is None:
        return Finding(
            name,
            "error",
            "definition.txt is missing; the LLM judge scores responses with it",
            threshold,
            fix=f"Write definition.txt. {_TEMPLATE}",
        )
    lines = _definition_lines(trait)
    found = {band: [(i, t) for i, t in lines if rx.search(t)] for band, rx in _BANDS.items()}
    missing = [band for band, hits in found.items() if not hits]
    key = [(i, t) for i, t in lines if _KEY.search(t)]
    problems = [f"no {band} band" for band in missing] + ([] if key else ["no 'Key:' line"])
    if problems:
        return Finding(
            name,
            "error",
            f"definition.txt has {', '.join(problems)}",
            threshold,
            float(len(problems)),
            tuple(Example("definition.txt", i, t) for i, t in lines[:1]),
            f"Add the missing part(s); the Key line is the one distinction that stops the judge conflating "
            f"traits. {_TEMPLATE}",
        )
    unranged = [(band, hits[0]) for band, hits in found.items() if not _RANGE.search(hits[0][1])]
    if unranged:
        return Finding(
            name,
            "warning",
            f"band(s) without a score range: {', '.join(b for b, _ in unranged)}",
            threshold,
            float(len(unranged)),
            tuple(Example("definition.txt", i, t) for _, (i, t) in unranged),
            "Give every band its numbers, e.g. 'HIGH (70-100):'; without ranges the judge calibrates poorly.",
        )
    return Finding(name, "ok", "HIGH, MID and LOW bands with ranges, and a Key line", threshold, 0.0)


@trait_check("definition_length")
def check_definition_length(trait: Trait, cfg: AuditConfig) -> Finding:
    """``definition.txt`` within the recommended length."""
    name = "definition_length"
    threshold = f"<= {cfg.definition_max_lines} non-empty lines and <= {cfg.definition_max_words} words"
    if trait.definition is None:
        return Finding(name, "info", "skipped: no definition.txt", threshold)
    non_empty = [line for line in trait.definition.split("\n") if line.strip()]
    n_words = len(words(trait.definition))
    message = f"{len(non_empty)} non-empty lines, {n_words} words"
    if len(non_empty) > cfg.definition_max_lines or n_words > cfg.definition_max_words:
        return Finding(
            name,
            "warning",
            f"definition.txt is long: {message}",
            threshold,
            float(len(non_empty)),
            fix="Condense to ~7-10 short lines of observable markers; longer definitions hurt the judge's accuracy.",
            details=MappingProxyType({"lines": len(non_empty), "words": n_words}),
        )
    return Finding(name, "ok", message, threshold, float(len(non_empty)))


def _json_line(text: str, value: str) -> int:
    for encoded in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        at = text.find(encoded)
        if at >= 0:
            return text.count("\n", 0, at) + 1
    return 1


def _steering_text(trait: Trait) -> str:
    try:
        return (trait.path / "steering.json").read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return ""


@trait_check("steering_questions")
def check_steering_questions(trait: Trait, cfg: AuditConfig) -> Finding:
    """``steering.json`` present, with 15-20 distinct questions."""
    name = "steering_questions"
    lo, hi = cfg.steering_min_questions, cfg.steering_max_questions
    threshold = f"{lo}-{hi} distinct questions"
    fix = (
        f"Write {lo}-{hi} questions across different domains that do NOT naturally elicit the trait "
        "(baseline 5-15), different from the extraction scenarios (guide, Phase 7)."
    )
    if not (trait.path / "steering.json").exists() and not trait.questions:
        return Finding(name, "warning", "steering.json is missing; steering cannot be evaluated", threshold, fix=fix)
    n = len(trait.questions)
    text = _steering_text(trait)
    dupes = [q for q, c in Counter(q.strip().lower() for q in trait.questions).items() if c > 1]
    problems = []
    if not lo <= n <= hi:
        problems.append(f"{n} questions ({lo}-{hi} recommended)")
    if dupes:
        problems.append(f"{len(dupes)} repeated question(s)")
    if problems:
        originals = [q for q in trait.questions if q.strip().lower() in dupes][:2]
        examples = tuple(Example("steering.json", _json_line(text, q), q) for q in originals)
        return Finding(name, "warning", "; ".join(problems), threshold, float(n), examples, fix)
    eval_note = "with its own eval_prompt" if trait.eval_prompt else "judged with definition.txt (no eval_prompt)"
    return Finding(name, "ok", f"{n} questions, {eval_note}", threshold, float(n), fix=fix)


def _ngrams(ws: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)}


@trait_check("steering_overlap")
def check_steering_overlap(trait: Trait, cfg: AuditConfig) -> Finding:
    """Steering questions that repeat an extraction prefill."""
    name = "steering_overlap"
    threshold = (
        f"a question shares {cfg.overlap_ngram} consecutive words with a prefill, or content-word "
        f"Jaccard >= {cfg.overlap_jaccard} (both with >= 4 content words)"
    )
    if not trait.questions:
        return Finding(name, "info", "skipped: no steering questions", threshold)
    ext = "jsonl" if trait.chat else "txt"
    prefills: list[tuple[str, int, str]] = []
    for file, side in ((f"positive.{ext}", trait.positive), (f"negative.{ext}", trait.negative)):
        prefills += [(file, line, p.text) for line, p in zip(trait.lines, side, strict=True)]
    grams = [_ngrams(words(t), cfg.overlap_ngram) for _, _, t in prefills]
    contents = [content_words(t) for _, _, t in prefills]
    text = _steering_text(trait)
    hits: list[tuple[str, tuple[str, int, str], str]] = []
    for question in dict.fromkeys(trait.questions):
        q_grams, q_content = _ngrams(words(question), cfg.overlap_ngram), content_words(question)
        for j, prefill in enumerate(prefills):
            union = q_content | contents[j]
            jac = len(q_content & contents[j]) / len(union) if union else 0.0
            if q_grams & grams[j]:
                hits.append((question, prefill, f"shares '{' '.join(sorted(q_grams & grams[j])[0])}'"))
                break
            if len(q_content) >= 4 and len(contents[j]) >= 4 and jac >= cfg.overlap_jaccard:
                hits.append((question, prefill, f"content-word Jaccard {jac:.2f}"))
                break
    fix = (
        "Rewrite these questions: steering questions must be different from the extraction scenarios (guide, Phase 7)."
    )
    if not hits:
        return Finding(
            name, "ok", f"none of {len(trait.questions)} questions repeats a prefill", threshold, 0.0, fix=fix
        )
    examples: list[Example] = []
    for question, (file, line, prefill_text), _ in hits[:3]:
        examples += [Example("steering.json", _json_line(text, question), question), Example(file, line, prefill_text)]
    listed = "; ".join(f"question {trait.questions.index(q) + 1} {why}" for q, _, why in hits[:5])
    return Finding(
        name,
        "warning",
        f"{len(hits)} of {len(trait.questions)} questions repeat an extraction prefill: {listed}",
        threshold,
        float(len(hits)),
        tuple(examples),
        fix,
    )
