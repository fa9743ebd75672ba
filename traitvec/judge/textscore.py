"""Reading a 0–100 score from a judge's short text reply (text mode): the one parser.

Servers without logprobs answer in text, and judge models do not always answer with the bare
number they were asked for. The parser takes only a number the reply clearly gives as its score,
and abstains otherwise — a score that was never given is worse than no score:

1. **Candidates.** Every number in the reply (``85``, ``7.5``, ``-3``), except
   - numbers that are part of a word (``GPT4``, ``GPT-4``, ``4o``, ``3rd``);
   - ranges (``0-100``, ``0 – 100``, ``0 to 100``, ``between 0 and 100``): a range ending in 100
     is the scale and is skipped; any other range (``1-10``, ``85-90``) means the reply speaks of
     another scale or gives no single score, and the reply abstains;
   - denominators (``/100``, ``out of 100``): skipped, and the number before them is preferred
     (``85/100``); a denominator other than 100 (``8/10``, ``out of 5``) is another scale: abstain;
   - list markers: a number opening a line with ``.`` or ``)`` after it, when another number
     follows on that line (``1. 85`` → 85, while ``85. The answer is fine`` → 85).
2. **Choice**, in this order: the last ``N/100`` or ``N out of 100``; the last number after a score
   word (``Score: 85``, ``rating of 85``, ``I'd give it 85``); the number the reply opens with; the
   only candidate value. Several different numbers with none of these forms → abstain.
3. **Range.** The chosen number must lie in 0–100, else the reply abstains (``150``, ``-5``).

:func:`read_text_score` says why it abstained; :func:`parse_text_score` gives only the number. A
reply cut by ``max_tokens`` is never parsed (the judge re-asks or abstains, see
:mod:`traitvec.judge.openai`): ``"Score: 100"`` cut after ``"Score: 10"`` would read as 10.

:data:`TEXT_PARSER_VERSION` is part of the text-mode cache key and of :meth:`Judge.key_for`, so
scores parsed by an older parser are never reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TEXT_PARSER_VERSION", "parse_text_score", "read_text_score"]

TEXT_PARSER_VERSION = 2
"""Bumped whenever the parser reads some reply differently (1: the first number anywhere)."""

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_RANGE_JOIN = re.compile(r"\s*(?:-|–|—|to)\s*", re.IGNORECASE)
_OVER = re.compile(r"\s*(?:/|out\s+of)\s*", re.IGNORECASE)
_BETWEEN = re.compile(r"between\s*$", re.IGNORECASE)
_AND = re.compile(r"\s*and\s*", re.IGNORECASE)
_DENOMINATOR = re.compile(r"(?:/|\bout\s+of)\s*$", re.IGNORECASE)
_SCORE_WORD = re.compile(
    r"(?:\bscores?|\brating|\brated?|\bgrade|\bgive\s+it|\bi'?d\s+say|\bi\s+would\s+say)"
    r"(?:\s+(?:is|of|at|a|an|as|be|would|will|it))*\s*[:=]?\s*(?:a\s+|an\s+)?$",
    re.IGNORECASE,
)
_MARKER_AFTER = re.compile(r"[.)]\s")


@dataclass(frozen=True)
class _Number:
    start: int
    end: int
    text: str
    value: float


def read_text_score(text: str | None) -> tuple[float | None, str]:
    """The score a text reply gives, or ``None`` and why it holds no clear score 0–100.

    Args:
        text: the reply's content (``None`` or empty: no score).

    Returns:
        ``(score, how)``: the score and which form gave it (``"N/100"``, ``"score word"``,
        ``"leading number"``, ``"only number"``), or ``None`` and the reason.

    Example:
        >>> read_text_score("On a scale of 0-100 I'd say 85")
        (85.0, 'score word')
        >>> read_text_score("I cannot rate this as GPT4 would.")
        (None, 'it holds no number')
    """
    if not text or not text.strip():
        return None, "it is empty"
    numbers = [n for m in _NUMBER.finditer(text) if (n := _read(m, text)) is not None]
    skipped: set[int] = set()
    preferred: list[_Number] = []
    for i, number in enumerate(numbers):
        before = text[: number.start]
        if _DENOMINATOR.search(before):
            skipped.add(i)
            if number.value != 100:
                return None, f"it scores out of {number.text}, not out of 100"
            if i > 0 and i - 1 not in skipped and _OVER.fullmatch(text[numbers[i - 1].end : number.start]):
                preferred.append(numbers[i - 1])
            continue
        if i + 1 < len(numbers) and _is_range(text, number, numbers[i + 1]):
            upper = numbers[i + 1]
            if upper.value != 100:
                return None, f"it names the range {number.text}-{upper.text}, not one score 0-100"
            skipped.update((i, i + 1))
    candidates = [n for i, n in enumerate(numbers) if i not in skipped and not _is_marker(text, n, numbers)]
    if preferred:
        return _in_range(preferred[-1], "N/100")
    worded = [n for n in candidates if _SCORE_WORD.search(text[: n.start])]
    if worded:
        return _in_range(worded[-1], "score word")
    if candidates and not text[: candidates[0].start].strip():
        return _in_range(candidates[0], "leading number")
    values = {n.value for n in candidates}
    if len(values) == 1:
        return _in_range(candidates[-1], "only number")
    if not values:
        return None, "it holds no number" if not numbers else "it holds no number that reads as a score"
    return None, f"it holds several numbers ({', '.join(n.text for n in candidates[:4])}) and none reads as the score"


def parse_text_score(text: str | None) -> float | None:
    """The score a judge's text reply clearly gives, 0–100, else ``None`` (see the module docstring).

    Example:
        >>> parse_text_score(" 72"), parse_text_score("Rating (out of 100): 85"), parse_text_score("1. 85")
        (72.0, 85.0, 85.0)
        >>> parse_text_score("I cannot rate this"), parse_text_score("150"), parse_text_score("8/10")
        (None, None, None)
    """
    return read_text_score(text)[0]


def _read(match: re.Match[str], text: str) -> _Number | None:
    """The number of ``match``, or ``None`` when it is part of a word (``GPT4``, ``GPT-4``, ``4o``)."""
    start, end = match.span()
    token = match.group(0)
    if token.startswith("-") and start > 0 and (text[start - 1].isalnum() or text[start - 1] in "-–—"):
        start, token = start + 1, token[1:]  # a hyphen between two things, not a minus sign
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if before.isalpha() or before == "_" or after.isalpha() or after == "_":
        return None
    if before in "-–—" and start > 1 and text[start - 2].isalpha():
        return None  # GPT-4
    return _Number(start, end, token, float(token.replace(",", "")))


def _is_range(text: str, low: _Number, high: _Number) -> bool:
    """``low`` and ``high`` are the two ends of a range: ``0-100``, ``0 to 100``, ``between 0 and 100``."""
    gap = text[low.end : high.start]
    if high.text.startswith("-"):
        return False
    if _RANGE_JOIN.fullmatch(gap):
        return True
    return bool(_AND.fullmatch(gap) and _BETWEEN.search(text[: low.start]))


def _is_marker(text: str, number: _Number, numbers: list[_Number]) -> bool:
    """A list marker: opens its line, ``.``/``)`` after it, and another number follows on the line."""
    line_start = text.rfind("\n", 0, number.start) + 1
    if text[line_start : number.start].strip() or not _MARKER_AFTER.match(text, number.end):
        return False
    if number.value != int(number.value) or number.text.startswith("-"):
        return False
    line_end = text.find("\n", number.end)
    line_end = len(text) if line_end < 0 else line_end
    return any(number.end < n.start < line_end for n in numbers)


def _in_range(number: _Number, how: str) -> tuple[float | None, str]:
    if 0.0 <= number.value <= 100.0:
        return number.value, how
    return None, f"its score {number.text} is outside 0-100"
