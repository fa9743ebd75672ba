"""Small statistics shared by the reports: a mean with its Student-t 95% interval."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["mean_ci", "t975"]


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_ci(values: Iterable[float]) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and t-interval ``mean ± t(0.975, n−1)·sd/√n`` (interval ``None`` with fewer than two values)."""
    data = [float(v) for v in values]
    if not data:
        return None, None
    mean = math.fsum(data) / len(data)
    if len(data) < 2:
        return mean, None
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (len(data) - 1))
    half = t975(len(data) - 1) * sd / math.sqrt(len(data))
    return mean, (mean - half, mean + half)
