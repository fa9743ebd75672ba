"""Ways of turning positive and negative activations into a direction, per layer.

- :class:`MeanDiff` (default): ``mean(positive) − mean(negative)``. The strongest simple
  baseline in published comparisons; raw norm = ``‖μ⁺ − μ⁻‖``.
- :class:`Probe`: logistic regression (scikit-learn) on activations centred and scaled by their
  pooled within-class standard deviation ``σ``; the weight vector is mapped back to activation
  space (``w / σ``) so the direction is the one whose dot product with ``h`` is the probe's logit.
  Raw norm = ``‖w / σ‖``. Fitted on at most :data:`PROBE_MAX_PAIRS` pairs (a seeded subsample
  beyond that, recorded as ``extra.n_fit_pairs``).
- :class:`PCA`: first principal axis of the paired differences ``h⁺ᵢ − h⁻ᵢ``, uncentred (so the
  axis the pairs consistently move along, invariant to swapping a pair's sides). Raw norm = the
  RMS of the differences' projections on it.

Every direction is unit-normalised and its sign fixed so positive examples project higher on
average than negative ones.

Memory. :meth:`Method.fit` and :meth:`direction_of` read the activations a chunk of pairs at a
time (:meth:`Activations.chunks`): mean-diff keeps two sums; PCA keeps the differences when there
are no more pairs than the width, else their ``width × width`` second-moment matrix; the probe
loads its (capped) subsample. None of them needs every pair in memory at once.

Units. A vector records two spreads per layer: ``spreads``, the per-token spread measured at
capture (the steering unit, the same for every position and method of a trait), and
``position_spreads``, mean ``‖h − mean h‖`` over the examples at this position.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .activations import Activations
from .errors import ConfigError
from .vectors import TraitVector

__all__ = ["Method", "MeanDiff", "Probe", "PCA", "METHODS", "get_method", "layer_statistics", "PROBE_MAX_PAIRS"]

logger = logging.getLogger(__name__)

PROBE_MAX_PAIRS = 4096
"""Pairs the probe is fitted on at most (a seeded subsample beyond): ``2 · 4096 · width`` float64 in memory."""

Rows = Sequence[int] | np.ndarray


@runtime_checkable
class Method(Protocol):
    """A way of computing a direction from paired activations."""

    name: str

    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Unit direction (sign fixed) and raw norm from ``[n, width]`` positive and negative activations."""
        ...

    def direction_of(
        self, activations: Activations, layer: int, rows: Rows | None = None
    ) -> tuple[torch.Tensor, float]:
        """The same from the pairs ``rows`` (default all) of ``activations`` at ``layer``, read in chunks."""
        ...

    def fit(self, activations: Activations, layers: Sequence[int] | None = None) -> TraitVector:
        """A :class:`TraitVector` at every captured layer (or ``layers``)."""
        ...


def _orient(direction: torch.Tensor, mean_gap: torch.Tensor) -> torch.Tensor:
    """``direction`` normalised, its sign such that positives project higher (``mean_gap`` = mean⁺ − mean⁻)."""
    norm = direction.norm()
    if not torch.isfinite(norm) or float(norm) == 0.0:
        raise ConfigError("the positive and negative activations are identical here; no direction can be fitted")
    unit: torch.Tensor = direction / norm
    return -unit if float(mean_gap.double() @ unit.double()) < 0 else unit


def _sums(activations: Activations, layer: int, rows: Rows | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    pos_sum = torch.zeros(activations.width, dtype=torch.float64)
    neg_sum = torch.zeros(activations.width, dtype=torch.float64)
    count = 0
    for pos, neg in activations.chunks(layer, rows):
        pos_sum += pos.sum(0)
        neg_sum += neg.sum(0)
        count += len(pos)
    return pos_sum, neg_sum, count


def layer_statistics(positive: torch.Tensor, negative: torch.Tensor) -> tuple[float, float]:
    """Mean activation norm ``mean ‖h‖`` and spread ``mean ‖h − mean h‖`` over both classes."""
    both = torch.cat([positive, negative]).double()
    centred = both - both.mean(0, keepdim=True)
    return float(both.norm(dim=1).mean()), float(centred.norm(dim=1).mean())


def _layer_statistics_of(activations: Activations, layer: int) -> tuple[float, float]:
    """:func:`layer_statistics` in two passes over chunks."""
    pos_sum, neg_sum, count = _sums(activations, layer, None)
    mean = (pos_sum + neg_sum) / (2 * count)
    norms = spread = 0.0
    for pos, neg in activations.chunks(layer):
        both = torch.cat([pos, neg])
        norms += float(both.norm(dim=1).sum())
        spread += float((both - mean).norm(dim=1).sum())
    return norms / (2 * count), spread / (2 * count)


class _Base(abc.ABC):
    name = ""

    @abc.abstractmethod
    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Unit direction (sign fixed) and raw norm."""

    def direction_of(
        self, activations: Activations, layer: int, rows: Rows | None = None
    ) -> tuple[torch.Tensor, float]:
        """Unit direction and raw norm from the pairs ``rows`` (default all) at ``layer``."""
        index = np.arange(activations.n_pairs) if rows is None else np.asarray(rows, dtype=np.int64)
        parts = list(activations.chunks(layer, index, size=len(index) or 1))
        return self.direction(parts[0][0], parts[0][1])

    def _details(self) -> dict[str, object]:
        return {}

    def fit(self, activations: Activations, layers: Sequence[int] | None = None) -> TraitVector:
        """Fit a direction at each layer of ``activations`` (or the given ``layers``).

        Example:
            >>> vector = MeanDiff().fit(acts["prefill-mean"])
        """
        chosen = list(layers) if layers is not None else list(activations.layers)
        if activations.n_pairs < 2:
            raise ConfigError(f"{activations.trait}: {activations.n_pairs} pair(s); a vector needs at least 2")
        directions, raw, norms, position_spreads = {}, {}, {}, {}
        for layer in chosen:
            unit, raw_norm = self.direction_of(activations, layer)
            directions[layer] = unit.float().contiguous()
            raw[layer] = raw_norm
            norms[layer], position_spreads[layer] = _layer_statistics_of(activations, layer)
        token = {
            layer: float(activations.token_spreads[layer]) for layer in chosen if layer in activations.token_spreads
        }
        per_token = len(token) == len(chosen)
        if not per_token:
            logger.debug(
                "%s %s: the activations record no per-token spread; the vector's steering unit is the spread of "
                "its %s activations (capture with traitvec.capture for the per-token unit)",
                activations.trait,
                self.name,
                activations.position,
            )
        return TraitVector(
            directions=directions,
            method=self.name,
            position=activations.position,
            model=activations.model,
            trait=activations.trait,
            trait_hash=activations.trait_hash,
            n_pairs=activations.n_pairs,
            raw_norms=raw,
            activation_norms=norms,
            spreads=token if per_token else position_spreads,
            position_spreads=position_spreads,
            spread_unit="per-token" if per_token else "position",
            extra=self._details_for(activations),
        )

    def _details_for(self, activations: Activations) -> dict[str, object]:
        return self._details()

    def __repr__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self._details().items())
        return f"{type(self).__name__}({details})"


@dataclass(frozen=True, repr=False)
class MeanDiff(_Base):
    """Mean of positives minus mean of negatives (the default).

    Example:
        >>> vector = MeanDiff().fit(acts)
    """

    name = "mean-diff"

    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        diff = positive.double().mean(0) - negative.double().mean(0)
        return _orient(diff, diff).float(), float(diff.norm())

    def direction_of(
        self, activations: Activations, layer: int, rows: Rows | None = None
    ) -> tuple[torch.Tensor, float]:
        pos_sum, neg_sum, count = _sums(activations, layer, rows)
        diff = (pos_sum - neg_sum) / count
        return _orient(diff, diff).float(), float(diff.norm())


@dataclass(frozen=True, repr=False)
class Probe(_Base):
    """Logistic-regression probe on standardised activations (scikit-learn).

    Args:
        C: inverse regularisation strength (default 0.1).
        max_iter: solver iterations.
        max_pairs: pairs it is fitted on at most (a seeded subsample beyond).

    Example:
        >>> vector = Probe(C=0.05).fit(acts)
    """

    C: float = 0.1
    max_iter: int = 2000
    max_pairs: int = PROBE_MAX_PAIRS
    name = "probe"

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ConfigError(f"Probe C = {self.C}; use a positive number")
        if self.max_pairs < 2:
            raise ConfigError(f"Probe max_pairs = {self.max_pairs}; use 2 or more")

    def _details(self) -> dict[str, object]:
        return {"C": self.C}

    def _details_for(self, activations: Activations) -> dict[str, object]:
        if activations.n_pairs <= self.max_pairs:
            return self._details()
        return {**self._details(), "n_fit_pairs": self.max_pairs}

    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        from sklearn.linear_model import LogisticRegression

        pos, neg = positive.double().numpy(), negative.double().numpy()
        x = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        # Scale by the pooled within-class spread, not the total spread: dividing by a variance that
        # includes the class separation itself would shrink exactly the dimensions the trait moves.
        mean = x.mean(0)
        std = np.sqrt((pos.var(0) * len(pos) + neg.var(0) * len(neg)) / len(x))
        std[std < 1e-8 * max(float(std.max()), 1e-30)] = 1.0
        probe = LogisticRegression(C=self.C, max_iter=self.max_iter)
        probe.fit((x - mean) / std, y)
        weight = torch.from_numpy(probe.coef_[0] / std)
        gap = torch.from_numpy(pos.mean(0) - neg.mean(0))
        return _orient(weight, gap).float(), float(weight.norm())

    def direction_of(
        self, activations: Activations, layer: int, rows: Rows | None = None
    ) -> tuple[torch.Tensor, float]:
        index = np.arange(activations.n_pairs) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(index) > self.max_pairs:
            index = np.sort(np.random.default_rng(0).choice(index, size=self.max_pairs, replace=False))
        return super().direction_of(activations, layer, index)


@dataclass(frozen=True, repr=False)
class PCA(_Base):
    """First principal axis of the paired differences (uncentred).

    Example:
        >>> vector = PCA().fit(acts)
    """

    name = "pca"

    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        if positive.shape != negative.shape:
            raise ConfigError("PCA of paired differences needs as many positives as negatives")
        diffs = positive.double() - negative.double()
        _, singular, vh = torch.linalg.svd(diffs, full_matrices=False)
        return _orient(vh[0], diffs.mean(0)).float(), float(singular[0] / diffs.shape[0] ** 0.5)

    def direction_of(
        self, activations: Activations, layer: int, rows: Rows | None = None
    ) -> tuple[torch.Tensor, float]:
        index = np.arange(activations.n_pairs) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(index) <= activations.width:  # the differences take no more memory than the moment matrix
            return super().direction_of(activations, layer, index)
        return self._from_moments(activations, layer, index)

    def _from_moments(self, activations: Activations, layer: int, index: np.ndarray) -> tuple[torch.Tensor, float]:
        """The top eigenvector of ``Σ dᵢ dᵢᵀ`` (the same axis as the SVD of the differences)."""
        moments = torch.zeros(activations.width, activations.width, dtype=torch.float64)
        gap = torch.zeros(activations.width, dtype=torch.float64)
        for pos, neg in activations.chunks(layer, index):
            diffs = pos - neg
            moments += diffs.T @ diffs
            gap += diffs.sum(0)
        values, vectors = torch.linalg.eigh(moments)
        return _orient(vectors[:, -1], gap).float(), float(values[-1].clamp(min=0).sqrt() / len(index) ** 0.5)


METHODS: dict[str, type[_Base]] = {"mean-diff": MeanDiff, "probe": Probe, "pca": PCA}


def get_method(name: str) -> Method:
    """A method by name (``mean-diff``, ``probe``, ``pca``)."""
    try:
        return METHODS[name]()
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; use one of {', '.join(METHODS)}") from None
