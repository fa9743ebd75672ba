"""Separation arithmetic for held-out pairs: the three-way split by pair, AUROC from ranks, Cohen's d.

:mod:`traitvec.evaluation` uses these on the projections of train, validation and test pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["SplitMetrics", "split_pairs", "check_fractions", "auroc", "cohens_d"]


@dataclass(frozen=True)
class SplitMetrics:
    """Separation of one part of the split on a training direction."""

    accuracy: float
    auroc: float
    cohens_d: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data; a Cohen's d that is undefined or infinite (constant classes) is written as null."""
        d = self.cohens_d if math.isfinite(self.cohens_d) else None
        return {"accuracy": self.accuracy, "auroc": self.auroc, "cohens_d": d}


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Refuse split fractions outside (0, 1) or that leave no pairs to train on."""
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0 < fraction < 1:
            raise ConfigError(
                f"ExtractionSettings.{name} = {fraction}; use a number between 0 and 1",
                setting=f"ExtractionSettings.{name}",
            )
    if validation_fraction + test_fraction >= 1:
        raise ConfigError(
            f"ExtractionSettings.validation_fraction + test_fraction = {validation_fraction + test_fraction:g}; "
            "leave some pairs to train on (the sum must be under 1)",
            setting="ExtractionSettings.test_fraction",
        )


def split_pairs(
    n_pairs: int, validation_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded split of pair indices into (train, validation, test), each sorted.

    At least 2 train pairs and 1 validation and 1 test pair.

    Example:
        >>> [len(part) for part in split_pairs(170)]
        [102, 34, 34]
    """
    check_fractions(validation_fraction, test_fraction)
    if n_pairs < 4:
        raise ConfigError(
            f"{n_pairs} pairs are too few to train, validate and test on separate pairs; "
            "write at least 4 (150+ advised)"
        )
    order = np.random.default_rng(seed).permutation(n_pairs)
    n_test = min(n_pairs - 3, max(1, round(n_pairs * test_fraction)))
    n_val = min(n_pairs - 2 - n_test, max(1, round(n_pairs * validation_fraction)))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted ½ (the Mann-Whitney statistic, from ranks)."""
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        return math.nan
    values, inverse, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = below + (counts + 1) / 2  # average 1-based rank of every tied group
    u = ranks[inverse[: len(pos)]].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def cohens_d(positive: np.ndarray, negative: np.ndarray) -> float:
    """(mean⁺ − mean⁻) / pooled standard deviation; NaN with fewer than 3 examples in all, ±inf for constant classes."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    n1, n2 = len(pos), len(neg)
    if n1 + n2 < 3:
        return math.nan
    var = ((n1 - 1) * pos.var(ddof=1) if n1 > 1 else 0.0) + ((n2 - 1) * neg.var(ddof=1) if n2 > 1 else 0.0)
    pooled = math.sqrt(var / max(n1 + n2 - 2, 1))
    diff = float(pos.mean() - neg.mean())
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / pooled
