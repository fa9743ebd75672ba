"""Small statistics shared by the reports: Student-t 95% intervals (no scipy import needed)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["mean_ci", "t975"]

# t(0.975, df) for df = 1..30; beyond, a Cornish–Fisher expansion accurate to 1e-5.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.04523, 2.042272)  # fmt: skip
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


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
