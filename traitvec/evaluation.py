"""Judging vectors per layer before spending judge budget: separation of held-out pairs.

The pairs are split three ways, seeded and by *pair* (a pair's two sides never end up in
different parts): a direction is fitted on the **train** pairs at every layer and method; the
**validation** pairs choose the layer; the **test** pairs, used for nothing else, give the
numbers that are reported. Choosing and reporting on the same pairs is optimistic: on pure noise
(170 pairs, 18 layers) the best layer's held-out Cohen's d is ≈ 0.34 and its AUROC ≈ 0.60, where
the truth is 0 and 0.5; the test metrics of the layer chosen on validation average 0 and 0.5.

Metrics, per split, of the training direction's projections:

- ``accuracy``: examples on the right side of the midpoint between the training classes' mean
  projections;
- ``auroc``: probability that a positive projects above a negative (ties ½; from ranks);
- ``cohens_d``: difference of class means over the pooled standard deviation.

Also: cosine between methods' full-data directions at each layer, and between neighbouring
layers' directions of one method.

Recommended layer, per method (:data:`RECOMMENDATION_RULE`): the highest *validation* Cohen's d
among layers at 20–80% of the model's depth (where steering works best), ties broken by
validation AUROC and then by the shallower layer; if the model is too shallow for that band, all
layers compete. :meth:`Evaluation.ranked_layers` gives the same order for several layers
(steering's candidate layers).

Memory: the activations are read a chunk of pairs at a time (:meth:`Activations.chunks`); what
is kept is one projection per example.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .activations import Activations
from .errors import ConfigError, VectorError
from .methods import get_method
from .metrics import SplitMetrics, auroc, check_fractions, cohens_d, split_pairs
from .vectors import TraitVector

__all__ = [
    "SplitMetrics",
    "LayerMetrics",
    "PairSplit",
    "Evaluation",
    "evaluate",
    "split_pairs",
    "check_fractions",
    "auroc",
    "cohens_d",
    "in_depth_band",
    "DEPTH_BAND",
    "RECOMMENDATION_RULE",
    "SELECTION",
]

DEPTH_BAND = (0.2, 0.8)
"""Relative depths (``layer / (n_layers - 1)``) where steering works best; layers there are preferred."""

RECOMMENDATION_RULE = (
    "highest validation Cohen's d among layers at 20-80% of depth (layer/(n_layers-1)); "
    "ties by validation AUROC, then the shallower layer; all layers compete when that band is empty"
)
SELECTION = {
    "fit": "train pairs: one direction per method and layer",
    "choose": "validation pairs: the recommended layer and the ranked candidate layers (validation Cohen's d)",
    "report": "test pairs: accuracy, auroc and cohens_d of every metrics row (used for nothing else)",
}
"""What each part of the split is used for (written to ``evaluation.json``)."""


FEW_HELD_OUT = 10
"""Fewer validation or test pairs than this, and the layer choice and its test metrics are mostly noise."""


@dataclass(frozen=True)
class LayerMetrics:
    """One method's direction at one layer: its test metrics (reported) and validation metrics (for choosing)."""

    layer: int
    method: str
    accuracy: float
    auroc: float
    cohens_d: float
    validation: SplitMetrics = SplitMetrics(math.nan, math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the test metrics at the top level, the validation metrics under ``validation``."""
        test = SplitMetrics(self.accuracy, self.auroc, self.cohens_d).to_dict()
        return {"layer": self.layer, "method": self.method, **test, "validation": self.validation.to_dict()}


@dataclass(frozen=True)
class PairSplit:
    """Pair indices (0-based rows of the activations) of each part of the split."""

    train: tuple[int, ...]
    validation: tuple[int, ...]
    test: tuple[int, ...]
    seed: int


def _rank_key(metrics: LayerMetrics) -> tuple[float, float, int]:
    d = metrics.validation.cohens_d
    d = -1e9 if math.isnan(d) else d if math.isfinite(d) else math.copysign(1e9, d)
    auc = metrics.validation.auroc
    return (-d, -(auc if math.isfinite(auc) else -1.0), metrics.layer)


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
    split: PairSplit
    lines: tuple[int, ...] = ()

    @property
    def n_train_pairs(self) -> int:
        return len(self.split.train)

    @property
    def n_validation_pairs(self) -> int:
        return len(self.split.validation)

    @property
    def n_test_pairs(self) -> int:
        return len(self.split.test)

    def few_pairs_warning(self) -> str | None:
        """What to tell the user when the held-out splits are too small to choose a layer on (else ``None``)."""
        n_val, n_test = self.n_validation_pairs, self.n_test_pairs
        if min(n_val, n_test) >= FEW_HELD_OUT:
            return None
        return (
            f"{self.n_train_pairs + n_val + n_test} pairs leave {n_val} validation and {n_test} test pairs, so the "
            "recommended layer and its test metrics rest on too few pairs to mean much; write more pairs (50+ for "
            "a rough answer, 150+ advised)"
        )

    @property
    def seed(self) -> int:
        return self.split.seed

    def for_method(self, method: str) -> list[LayerMetrics]:
        """Metrics of one method, by layer."""
        return [m for m in self.metrics if m.method == method]

    def ranked_layers(self, method: str, n: int | None = None, *, n_layers_model: int | None = None) -> list[int]:
        """The layers of ``method`` within the depth band, best validation Cohen's d first.

        Args:
            method: the vector's method.
            n: how many (default all in the band).
            n_layers_model: depth the band is relative to (default the evaluated model's; pass the
                steered model's depth for a vector applied to another model). When no evaluated
                layer lies in the band, all layers compete.

        Example:
            >>> evaluation.ranked_layers("mean-diff", 3)
            [7, 6, 9]
        """
        rows = self.for_method(method)
        if not rows:
            raise ConfigError(f"the evaluation of {self.trait} at {self.position} has no method {method!r}")
        depth = self.n_layers_model if n_layers_model is None else n_layers_model
        band = [m for m in rows if in_depth_band(m.layer, depth)] or rows
        return [m.layer for m in sorted(band, key=_rank_key)][:n]

    def to_dict(self) -> dict[str, Any]:
        def lines(rows: Sequence[int]) -> list[int]:
            return [self.lines[i] for i in rows] if self.lines else list(rows)

        return {
            "trait": self.trait,
            "position": self.position,
            "layers": list(self.layers),
            "n_layers_model": self.n_layers_model,
            "split": {
                "n_train_pairs": self.n_train_pairs,
                "n_validation_pairs": self.n_validation_pairs,
                "n_test_pairs": self.n_test_pairs,
                "seed": self.seed,
                "unit": "pairs (both sides of a pair stay in one part); lists are the pairs' line numbers",
                "train": lines(self.split.train),
                "validation": lines(self.split.validation),
                "test": lines(self.split.test),
                "rows": {
                    "train": list(self.split.train),
                    "validation": list(self.split.validation),
                    "test": list(self.split.test),
                },
            },
            "selection": SELECTION,
            "metrics": [m.to_dict() for m in self.metrics],
            "method_cosines": {k: {str(i): c for i, c in v.items()} for k, v in self.method_cosines.items()},
            "neighbour_cosines": {k: {str(i): c for i, c in v.items()} for k, v in self.neighbour_cosines.items()},
            "recommended_layer": self.recommended,
            "best_layer_any_depth": self.best_any_depth,
            "recommendation_rule": RECOMMENDATION_RULE,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """An :class:`Evaluation` read back from :meth:`to_dict`'s data (a null Cohen's d becomes NaN).

        Raises:
            VectorError: the data does not have that structure.
        """
        try:
            return _from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise VectorError(f"not an evaluation written by traitvec ({type(err).__name__}: {err})") from None


def _from_dict(data: Mapping[str, Any]) -> Evaluation:
    def ints(d: Mapping[str, Any]) -> dict[int, float]:
        return {int(k): float(v) for k, v in d.items()}

    def number(value: Any) -> float:
        return math.nan if value is None else float(value)

    def split_metrics(m: Mapping[str, Any]) -> SplitMetrics:
        return SplitMetrics(float(m["accuracy"]), float(m["auroc"]), number(m["cohens_d"]))

    metrics = []
    for m in data["metrics"]:
        test = split_metrics(m)
        metrics.append(
            LayerMetrics(
                int(m["layer"]),
                str(m["method"]),
                test.accuracy,
                test.auroc,
                test.cohens_d,
                split_metrics(m["validation"]),
            )
        )
    parts = ("train", "validation", "test")
    rows = {k: tuple(int(i) for i in data["split"]["rows"][k]) for k in parts}
    split = PairSplit(rows["train"], rows["validation"], rows["test"], int(data["split"]["seed"]))
    by_row = {r: int(line) for k in parts for r, line in zip(rows[k], data["split"][k], strict=True)}
    lines = tuple(by_row[r] for r in range(len(by_row)))
    return Evaluation(
        trait=str(data["trait"]),
        position=str(data["position"]),
        layers=tuple(int(i) for i in data["layers"]),
        n_layers_model=int(data["n_layers_model"]),
        metrics=tuple(metrics),
        method_cosines={k: ints(v) for k, v in data["method_cosines"].items()},
        neighbour_cosines={k: ints(v) for k, v in data["neighbour_cosines"].items()},
        recommended={k: int(v) for k, v in data["recommended_layer"].items()},
        best_any_depth={k: int(v) for k, v in data["best_layer_any_depth"].items()},
        split=split,
        lines=lines,
    )


def in_depth_band(layer: int, n_layers: int) -> bool:
    """Whether ``layer`` lies within :data:`DEPTH_BAND` of a model with ``n_layers`` layers (never when it has one).

    Example:
        >>> [layer for layer in range(18) if in_depth_band(layer, 18)]
        [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    """
    low, high = DEPTH_BAND
    return n_layers > 1 and low <= layer / (n_layers - 1) <= high


def _projections(activations: Activations, layer: int, unit: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    unit = unit.double()
    pos, neg = zip(*((p @ unit, n @ unit) for p, n in activations.chunks(layer)), strict=True)
    return torch.cat(pos).numpy(), torch.cat(neg).numpy()


def _split_metrics(pos: np.ndarray, neg: np.ndarray, rows: np.ndarray, threshold: float) -> SplitMetrics:
    p, n = pos[rows], neg[rows]
    correct = (p > threshold).sum() + (n <= threshold).sum()
    return SplitMetrics(float(correct / (2 * len(rows))), auroc(p, n), cohens_d(p, n))


def evaluate(
    activations: Activations,
    vectors: Mapping[str, TraitVector],
    *,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Evaluation:
    """Validation and test metrics for every method in ``vectors`` at every captured layer.

    Args:
        activations: the captured activations.
        vectors: ``{method name: vector fitted on all pairs}`` (for the cosines).
        validation_fraction: share of pairs that choose the layer.
        test_fraction: share of pairs the reported metrics are measured on.
        seed: split seed.

    Example:
        >>> ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts)})
        >>> ev.recommended["mean-diff"], ev.ranked_layers("mean-diff", 3)
        (7, [7, 6, 9])
    """
    if not vectors:
        raise ConfigError("evaluate needs at least one method's vector")
    train, val, test = split_pairs(activations.n_pairs, validation_fraction, test_fraction, seed)
    n_layers = int(activations.model.get("num_layers", max(activations.layers) + 1))
    metrics: list[LayerMetrics] = []
    for name in vectors:
        method = get_method(name)
        for layer in activations.layers:
            unit, _ = method.direction_of(activations, layer, train)
            pos, neg = _projections(activations, layer, unit)
            threshold = float(pos[train].mean() + neg[train].mean()) / 2
            reported = _split_metrics(pos, neg, test, threshold)
            metrics.append(
                LayerMetrics(
                    layer,
                    name,
                    reported.accuracy,
                    reported.auroc,
                    reported.cohens_d,
                    _split_metrics(pos, neg, val, threshold),
                )
            )
    evaluation = Evaluation(
        trait=activations.trait,
        position=activations.position,
        layers=activations.layers,
        n_layers_model=n_layers,
        metrics=tuple(metrics),
        method_cosines=_method_cosines(vectors, activations.layers),
        neighbour_cosines={
            name: {lo: _cos(v.direction(lo), v.direction(hi)) for lo, hi in itertools.pairwise(v.layers)}
            for name, v in vectors.items()
        },
        recommended={},
        best_any_depth={},
        split=PairSplit(tuple(map(int, train)), tuple(map(int, val)), tuple(map(int, test)), seed),
        lines=tuple(activations.lines),
    )
    for name in vectors:
        evaluation.recommended[name] = evaluation.ranked_layers(name, 1)[0]
        evaluation.best_any_depth[name] = min(evaluation.for_method(name), key=_rank_key).layer
    return evaluation


def _method_cosines(vectors: Mapping[str, TraitVector], layers: Sequence[int]) -> dict[str, dict[int, float]]:
    names = list(vectors)
    return {
        f"{a}~{b}": {layer: _cos(vectors[a].direction(layer), vectors[b].direction(layer)) for layer in layers}
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))
