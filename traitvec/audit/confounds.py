"""Confounds: something other than the trait that differs systematically between the classes (guide, Phase 5).

- ``person_confound`` (warning): first-person lines >= 50% of one class and >= 30 points fewer in
  the other;
- ``length_confound`` (error): |mean paired length difference| > 10% of the mean length, the same
  side longer in >= 70% of pairs, and a sign test p < 0.05.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from ._common import binom_tail, pct, pts, side_name, skipped
from .config import AuditConfig
from .findings import Finding
from .registry import pair_check
from .text import FIRST_PERSON, PairText, tokenize, words

__all__ = ["check_length_confound", "check_person_confound"]


@pair_check("person_confound")
def check_person_confound(data: PairText, cfg: AuditConfig) -> Finding:
    """One side mostly first-person (I/me/my/we...) and the other not."""
    name = "person_confound"
    threshold = (
        f"first-person lines >= {pct(cfg.person_share)} of one class and at least {pts(cfg.person_gap)} "
        "fewer in the other"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    pos = [bool(FIRST_PERSON & set(words(t))) for t in data.pos]
    neg = [bool(FIRST_PERSON & set(words(t))) for t in data.neg]
    p, q = sum(pos) / data.n, sum(neg) / data.n
    side = 1 if p >= q else 0
    hi, lo = (p, q) if side else (q, p)
    fix = "Balance voice: write first-person and third-person pairs on both sides (guide, Phase 5: person confound)."
    message = f"first-person voice in {pct(p)} of positive and {pct(q)} of negative lines"
    if hi >= cfg.person_share and hi - lo >= cfg.person_gap:
        mine, theirs = (pos, neg) if side else (neg, pos)
        pairs = [i for i in range(data.n) if mine[i] and not theirs[i]][:2]
        examples = tuple(e for i in pairs for e in (data.example(side, i), data.example(1 - side, i)))
        return Finding(name, "warning", message, threshold, hi - lo, examples, fix)
    return Finding(name, "ok", message, threshold, abs(p - q), fix=fix)


@pair_check("length_confound")
def check_length_confound(data: PairText, cfg: AuditConfig) -> Finding:
    """A systematic length difference between the two sides of the pairs."""
    name = "length_confound"
    threshold = (
        f"|mean paired difference| > {pct(cfg.length_rel_diff)} of the mean length AND the same side longer in "
        f">= {pct(cfg.length_consistency)} of pairs AND sign-test p < {cfg.length_p}"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    lp = np.array([len(tokenize(t)) for t in data.pos], dtype=float)
    ln = np.array([len(tokenize(t)) for t in data.neg], dtype=float)
    diff = lp - ln
    mean_len = float(np.concatenate([lp, ln]).mean())
    rel = float(diff.mean()) / mean_len if mean_len else 0.0
    n_pos, n_neg = int((diff > 0).sum()), int((diff < 0).sum())
    side = 1 if n_pos >= n_neg else 0
    consistency = max(n_pos, n_neg) / data.n
    p_value = min(1.0, 2 * binom_tail(max(n_pos, n_neg), n_pos + n_neg))
    message = (
        f"mean length {lp.mean():.1f} tokens (positive) vs {ln.mean():.1f} (negative); mean paired difference "
        f"{diff.mean():+.1f} tokens ({rel:+.0%} of the mean); {side_name(side)} longer in {pct(consistency)} of pairs"
    )
    details = {
        "mean_positive": float(lp.mean()),
        "mean_negative": float(ln.mean()),
        "mean_paired_difference": float(diff.mean()),
        "relative_difference": rel,
        "longer_side": side_name(side),
        "consistency": consistency,
        "sign_test_p": p_value,
    }
    fix = "Trim or extend so the two prefills of each pair are about the same length (guide, Phase 5: length confound)."
    flagged = abs(rel) > cfg.length_rel_diff and consistency >= cfg.length_consistency and p_value < cfg.length_p
    flagged = flagged and (rel > 0) == (side == 1)
    if not flagged:
        return Finding(name, "ok", message, threshold, abs(rel), fix=fix, details=MappingProxyType(details))
    order = np.argsort(-diff if side else diff)[:2]
    examples = tuple(e for i in order for e in (data.example(side, int(i)), data.example(1 - side, int(i))))
    return Finding(name, "error", message, threshold, abs(rel), examples, fix, MappingProxyType(details))
