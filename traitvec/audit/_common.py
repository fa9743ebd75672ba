"""Small helpers the check families share: percentages, class names, the skipped finding, a sign test."""

from __future__ import annotations

import math

from .config import AuditConfig
from .findings import Finding
from .text import PairText

__all__ = ["binom_tail", "pct", "pts", "side_name", "skipped"]


def pct(x: float) -> str:
    """A fraction as a whole percentage (``0.8`` → ``"80%"``)."""
    return f"{100 * x:.0f}%"


def pts(x: float) -> str:
    """A difference of fractions in percentage points (``0.6`` → ``"60 points"``)."""
    return f"{100 * x:.0f} points"


def side_name(side: int) -> str:
    """``"positive"`` for side 1, ``"negative"`` for side 0."""
    return "positive" if side else "negative"


def skipped(check: str, data: PairText, cfg: AuditConfig) -> Finding:
    """The ``info`` finding of a statistical check that does not run below ``min_pairs`` pairs."""
    return Finding(
        check,
        "info",
        f"skipped: {data.n} pairs is below the {cfg.min_pairs} this check needs to tell a pattern from noise",
        threshold=f">= {cfg.min_pairs} pairs",
    )


def binom_tail(k: int, m: int) -> float:
    """P(X >= k) for X ~ Binomial(m, 1/2)."""
    if m == 0:
        return 1.0
    outcomes: int = 2**m  # integer division below stays exact for any number of pairs
    return sum(math.comb(m, j) for j in range(k, m + 1)) / outcomes
