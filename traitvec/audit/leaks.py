"""Label leaks: words, openers and punctuation that tell the classes apart (guide, Phase 5).

- ``lexical_leak`` (error): a word or bigram in >= 80% of one class's lines and >= 60 points less
  often in the other;
- ``opener_leak`` (error): a first word / first two words starting >= 50% of one class's lines and
  >= 50 points fewer of the other's;
- ``punctuation_leak`` (error): a mark contained in / starting / ending >= 50% of one class's lines
  and >= 50 points fewer of the other's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._common import pct, pts, side_name, skipped
from .config import AuditConfig
from .findings import Example, Finding
from .registry import pair_check
from .text import PairText, is_word, norm_punct, tokenize, words

__all__ = ["check_lexical_leak", "check_opener_leak", "check_punctuation_leak"]


@dataclass(frozen=True)
class _Flag:
    feature: str
    side: int  # the class the feature is common in
    share: float
    other: float
    pairs: tuple[int, ...]  # pairs where the dominant side has it and the other side does not


def _predictive(
    pos: Sequence[set[str]], neg: Sequence[set[str]], share: float, gap: float, min_lines: int
) -> list[_Flag]:
    """Features present in >= ``share`` of one class's lines and at least ``gap`` less often in the other."""
    n = len(pos)
    count_pos: Counter[str] = Counter(f for s in pos for f in s)
    count_neg: Counter[str] = Counter(f for s in neg for f in s)
    flags = []
    for feature in set(count_pos) | set(count_neg):
        p, q = count_pos[feature] / n, count_neg[feature] / n
        side = 1 if p >= q else 0
        hi, lo = (p, q) if side else (q, p)
        if hi >= share and hi - lo >= gap and max(count_pos[feature], count_neg[feature]) >= min_lines:
            mine, theirs = (pos, neg) if side else (neg, pos)
            pairs = tuple(i for i in range(n) if feature in mine[i] and feature not in theirs[i])
            flags.append(_Flag(feature, side, hi, lo, pairs))
    flags.sort(key=lambda f: (-(f.share - f.other), f.feature))
    return flags


def _pair_examples(data: PairText, flags: Sequence[_Flag], limit: int = 3) -> tuple[Example, ...]:
    """For each of the first ``limit`` flags, the first pair showing it: dominant line, then its partner."""
    out: list[Example] = []
    for flag in flags[:limit]:
        if flag.pairs:
            i = flag.pairs[0]
            out += [data.example(flag.side, i), data.example(1 - flag.side, i)]
    return tuple(dict.fromkeys(out))


def _flag_text(flag: _Flag, label: Callable[[str], str]) -> str:
    dominant, other = side_name(flag.side), side_name(1 - flag.side)
    return f"{label(flag.feature)} in {pct(flag.share)} of {dominant} lines vs {pct(flag.other)} of {other}"


def _flag_details(flags: Sequence[_Flag]) -> list[dict[str, Any]]:
    return [{"feature": f.feature, "class": side_name(f.side), "share": f.share, "other_share": f.other} for f in flags]


@pair_check("lexical_leak")
def check_lexical_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """Words and word pairs (bigrams) common in one class and rare in the other."""
    name = "lexical_leak"
    threshold = (
        f"a word or bigram in >= {pct(cfg.leak_share)} of one class's lines and at least "
        f"{pts(cfg.leak_gap)} less often in the other (so <= {pct(cfg.leak_share - cfg.leak_gap)} "
        f"at the threshold); >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    pos_w, neg_w = [words(t) for t in data.pos], [words(t) for t in data.neg]
    unigrams = _predictive(
        [set(w) for w in pos_w], [set(w) for w in neg_w], cfg.leak_share, cfg.leak_gap, cfg.min_lines
    )
    flagged = {f.feature for f in unigrams}

    def bigrams(ws: list[str]) -> set[str]:
        return {f"{a} {b}" for a, b in zip(ws, ws[1:], strict=False) if a not in flagged and b not in flagged}

    pairs = _predictive(
        [bigrams(w) for w in pos_w], [bigrams(w) for w in neg_w], cfg.leak_share, cfg.leak_gap, cfg.min_lines
    )
    flags = unigrams + pairs
    fix = (
        "Use both words on both sides, or restructure to eliminate the pattern entirely; otherwise the "
        "vector learns the word, not the trait (guide, Phase 5: lexical label leak)."
    )
    if not flags:
        return Finding(name, "ok", "no word or bigram is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: f'"{s}"') for f in flags[:8])
    more = f" (and {len(flags) - 8} more)" if len(flags) > 8 else ""
    return Finding(
        name,
        "error",
        f"{len(flags)} label-predicting word(s)/bigram(s): {listed}{more}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"words": _flag_details(unigrams), "bigrams": _flag_details(pairs)}),
    )


def _openers(text: str) -> set[str]:
    ws = words(text)
    return {f"{ws[0]} …", f"{ws[0]} {ws[1]} …"} if len(ws) > 1 else ({f"{ws[0]} …"} if ws else set())


@pair_check("opener_leak")
def check_opener_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """First word / first two words of a line that predict its label."""
    name = "opener_leak"
    threshold = (
        f"one opener (first word or first two words) starts >= {pct(cfg.opener_share)} of one class's lines "
        f"and at least {pts(cfg.opener_gap)} fewer of the other's; >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    flags = _predictive(
        [_openers(t) for t in data.pos],
        [_openers(t) for t in data.neg],
        cfg.opener_share,
        cfg.opener_gap,
        cfg.min_lines,
    )
    one_word = {f.feature[:-2] for f in flags if f.feature.count(" ") == 1}
    flags = [f for f in flags if f.feature.count(" ") == 1 or f.feature.split(" ")[0] not in one_word]
    fix = (
        "Vary how lines start and use each opener on both sides; a model learns 'Despite...' = trait "
        "instead of the trait (guide, Phase 5: sentence opener predicts label)."
    )
    if not flags:
        return Finding(name, "ok", "no opener is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: f'"{s}"') for f in flags[:6])
    return Finding(
        name,
        "error",
        f"lines start differently by label: {listed}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"openers": _flag_details(flags)}),
    )


def _punct_features(text: str) -> set[str]:
    marks = [norm_punct(t) for t in tokenize(text) if not is_word(t)]
    feats = {f"contains {m}" for m in marks}
    stripped = text.strip()
    if stripped:
        first, last = tokenize(stripped)[0], tokenize(stripped)[-1]
        if not is_word(first):
            feats.add(f"starts with {norm_punct(first)}")
        if not is_word(last):
            feats.add(f"ends with {norm_punct(last)}")
    return feats


@pair_check("punctuation_leak")
def check_punctuation_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """Punctuation or quote marks whose presence, or use as first/last character, predicts the label."""
    name = "punctuation_leak"
    threshold = (
        f"a mark contained in, starting or ending >= {pct(cfg.punct_share)} of one class's lines and at least "
        f"{pts(cfg.punct_gap)} fewer of the other's; >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    flags = _predictive(
        [_punct_features(t) for t in data.pos],
        [_punct_features(t) for t in data.neg],
        cfg.punct_share,
        cfg.punct_gap,
        cfg.min_lines,
    )
    edge = {(f.feature.split(" ")[-1], f.side) for f in flags if not f.feature.startswith("contains")}
    flags = [f for f in flags if not f.feature.startswith("contains") or (f.feature.split(" ")[-1], f.side) not in edge]
    fix = (
        "Use the mark on both sides or on neither, and end the two prefills of a pair the same way "
        "(quote marks, '!', '?', dashes); the model can read the label off punctuation."
    )
    if not flags:
        return Finding(name, "ok", "no punctuation mark is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: s.replace("contains ", "containing ").join("''")) for f in flags[:6])
    return Finding(
        name,
        "error",
        f"punctuation predicts the label: {listed}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"marks": _flag_details(flags)}),
    )
