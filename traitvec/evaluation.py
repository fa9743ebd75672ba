"""Judging vectors per layer before spending judge budget: held-out separation of pairs.

For every layer and method, a direction is fitted on a seeded training split of *pairs* (a pair's
two sides never end up on different sides of the split) and the held-out pairs are projected on
it:

- ``accuracy``: held-out examples on the right side of the midpoint between the training
  classes' mean projections;
- ``auroc``: probability that a held-out positive projects above a held-out negative (ties ½);
- ``cohens_d``: difference of held-out class means over the pooled standard deviation.

Also: cosine between methods' full-data directions at each layer, and between neighbouring
layers' directions of one method.

Recommended layer, per method (:data:`RECOMMENDATION_RULE`): the highest held-out Cohen's d among
layers at 20–80% of the model's depth (where steering works best), ties broken by AUROC and then
by the shallower layer; if the model is too shallow for that band, all layers compete.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .activations import Activations
from .errors import ConfigError
from .methods import get_method
from .vectors import TraitVector

__all__ = [
    "LayerMetrics",
    "Evaluation",
    "evaluate",
    "split_pairs",
    "auroc",
    "cohens_d",
    "in_depth_band",
    "DEPTH_BAND",
    "RECOMMENDATION_RULE",
]

DEPTH_BAND = (0.2, 0.8)
"""Relative depths (``layer / (n_layers - 1)``) where steering works best; layers there are preferred."""

RECOMMENDATION_RULE = (
    "highest held-out Cohen's d among layers at 20-80% of depth (layer/(n_layers-1)); "
    "ties by AUROC, then the shallower layer; all layers compete when that band is empty"
)


@dataclass(frozen=True)
class LayerMetrics:
    """Held-out quality of one method's direction at one layer."""

    layer: int
    method: str
    accuracy: float
    auroc: float
    cohens_d: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data; a Cohen's d that is undefined or infinite (constant classes) is written as null."""
        return {
            "layer": self.layer,
            "method": self.method,
            "accuracy": self.accuracy,
            "auroc": self.auroc,
            "cohens_d": self.cohens_d if math.isfinite(self.cohens_d) else None,
        }


@dataclass(frozen=True)
class Evaluation:
    """Per-layer metrics of every method, their agreement, and a recommended layer per method."""

    trait: str
    position: str
    layers: tuple[int, ...]
    n_layers_model: int
    metrics: tuple[LayerMetrics, ...]
    method_cosines: dict[str, dict[int, float]]
    neighbour_cosines: dict[str, dict[int, float]]
    recommended: dict[str, int]
    best_any_depth: dict[str, int]
    n_train_pairs: int
    n_test_pairs: int
    seed: int

    def for_method(self, method: str) -> list[LayerMetrics]:
        """Metrics of one method, by layer."""
        return [m for m in self.metrics if m.method == method]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trait": self.trait,
            "position": self.position,
            "layers": list(self.layers),
            "n_layers_model": self.n_layers_model,
            "split": {
                "n_train_pairs": self.n_train_pairs,
                "n_test_pairs": self.n_test_pairs,
                "seed": self.seed,
                "unit": "pairs (both sides of a pair stay on one side of the split)",
            },
            "metrics": [m.to_dict() for m in self.metrics],
            "method_cosines": {k: {str(i): c for i, c in v.items()} for k, v in self.method_cosines.items()},
            "neighbour_cosines": {k: {str(i): c for i, c in v.items()} for k, v in self.neighbour_cosines.items()},
            "recommended_layer": self.recommended,
            "best_layer_any_depth": self.best_any_depth,
            "recommendation_rule": RECOMMENDATION_RULE,
        }


def split_pairs(n_pairs: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of pair indices into (train, test); at least 2 train and 1 test pair."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction = {test_fraction}; use a number between 0 and 1")
    if n_pairs < 3:
        raise ConfigError(f"{n_pairs} pairs are too few to evaluate on held-out pairs; write at least 3 (150+ advised)")
    order = np.random.default_rng(seed).permutation(n_pairs)
    n_test = min(n_pairs - 2, max(1, round(n_pairs * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted ½ (the Mann-Whitney statistic)."""
    pos = np.asarray(positive, dtype=np.float64)[:, None]
    neg = np.asarray(negative, dtype=np.float64)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


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


def in_depth_band(layer: int, n_layers: int) -> bool:
    """Whether ``layer`` lies within :data:`DEPTH_BAND` of a model with ``n_layers`` layers (never when it has one).

    Example:
        >>> [layer for layer in range(18) if in_depth_band(layer, 18)]
        [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    """
    low, high = DEPTH_BAND
    return n_layers > 1 and low <= layer / (n_layers - 1) <= high


def _recommend(metrics: list[LayerMetrics], n_layers: int) -> tuple[int, int]:
    def key(m: LayerMetrics) -> tuple[float, float, int]:
        d = (
            -1e9
            if math.isnan(m.cohens_d)
            else m.cohens_d
            if math.isfinite(m.cohens_d)
            else math.copysign(1e9, m.cohens_d)
        )
        return (d, m.auroc, -m.layer)

    band = [m for m in metrics if in_depth_band(m.layer, n_layers)]
    best_all = max(metrics, key=key).layer
    return (max(band, key=key).layer if band else best_all), best_all


def evaluate(
    activations: Activations,
    vectors: dict[str, TraitVector],
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Evaluation:
    """Held-out metrics for every method in ``vectors`` at every captured layer.

    Args:
        activations: the captured activations.
        vectors: ``{method name: vector fitted on all pairs}`` (for the cosines).
        test_fraction: share of pairs held out.
        seed: split seed.

    Example:
        >>> ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts)})
        >>> ev.recommended["mean-diff"]
        7
    """
    if not vectors:
        raise ConfigError("evaluate needs at least one method's vector")
    train, test = split_pairs(activations.n_pairs, test_fraction, seed)
    n_layers = int(activations.model.get("num_layers", max(activations.layers) + 1))
    metrics: list[LayerMetrics] = []
    recommended, best_any = {}, {}
    for name in vectors:
        method = get_method(name)
        rows = []
        for layer in activations.layers:
            pos, neg = activations.at(layer)
            unit, _ = method.direction(pos[train], neg[train])
            unit = unit.double()
            train_pos, train_neg = pos[train].double() @ unit, neg[train].double() @ unit
            threshold = float(train_pos.mean() + train_neg.mean()) / 2
            test_pos, test_neg = (pos[test].double() @ unit).numpy(), (neg[test].double() @ unit).numpy()
            correct = (test_pos > threshold).sum() + (test_neg <= threshold).sum()
            rows.append(
                LayerMetrics(
                    layer,
                    name,
                    float(correct / (2 * len(test))),
                    auroc(test_pos, test_neg),
                    cohens_d(test_pos, test_neg),
                )
            )
        metrics.extend(rows)
        recommended[name], best_any[name] = _recommend(rows, n_layers)
    method_cos: dict[str, dict[int, float]] = {}
    names = list(vectors)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            method_cos[f"{a}~{b}"] = {
                layer: _cos(vectors[a].direction(layer), vectors[b].direction(layer)) for layer in activations.layers
            }
    neighbour: dict[str, dict[int, float]] = {}
    for name, vector in vectors.items():
        layers = list(vector.layers)
        neighbour[name] = {
            lo: _cos(vector.direction(lo), vector.direction(hi)) for lo, hi in itertools.pairwise(layers)
        }
    return Evaluation(
        trait=activations.trait,
        position=activations.position,
        layers=activations.layers,
        n_layers_model=n_layers,
        metrics=tuple(metrics),
        method_cosines=method_cos,
        neighbour_cosines=neighbour,
        recommended=recommended,
        best_any_depth=best_any,
        n_train_pairs=len(train),
        n_test_pairs=len(test),
        seed=seed,
    )


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))
