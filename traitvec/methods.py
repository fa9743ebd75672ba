"""Ways of turning positive and negative activations into a direction, per layer.

- :class:`MeanDiff` (default): ``mean(positive) − mean(negative)``. The strongest simple
  baseline in published comparisons; raw norm = ``‖μ⁺ − μ⁻‖``.
- :class:`Probe`: logistic regression (scikit-learn) on activations centred and scaled by their
  pooled within-class standard deviation ``σ``; the weight vector is mapped back to activation
  space (``w / σ``) so the direction is the one whose dot product with ``h`` is the probe's logit.
  Raw norm = ``‖w / σ‖``.
- :class:`PCA`: first principal axis of the paired differences ``h⁺ᵢ − h⁻ᵢ``, uncentred (so the
  axis the pairs consistently move along, invariant to swapping a pair's sides). Raw norm = the
  RMS of the differences' projections on it.

Every direction is unit-normalised and its sign fixed so positive examples project higher on
average than negative ones.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .activations import Activations
from .errors import ConfigError
from .vectors import TraitVector

__all__ = ["Method", "MeanDiff", "Probe", "PCA", "METHODS", "get_method", "layer_statistics"]


@runtime_checkable
class Method(Protocol):
    """A way of computing a direction from paired activations."""

    name: str

    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Unit direction (sign fixed) and raw norm from ``[n, width]`` positive and negative activations."""
        ...

    def fit(self, activations: Activations, layers: Sequence[int] | None = None) -> TraitVector:
        """A :class:`TraitVector` at every captured layer (or ``layers``)."""
        ...


def _orient(direction: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    norm = direction.norm()
    if not torch.isfinite(norm) or float(norm) == 0.0:
        raise ConfigError("the positive and negative activations are identical here; no direction can be fitted")
    unit: torch.Tensor = direction / norm
    if float((positive @ unit).mean()) < float((negative @ unit).mean()):
        unit = -unit
    return unit


def layer_statistics(positive: torch.Tensor, negative: torch.Tensor) -> tuple[float, float]:
    """Mean activation norm ``mean ‖h‖`` and spread ``mean ‖h − mean h‖`` over both classes."""
    both = torch.cat([positive, negative]).double()
    centred = both - both.mean(0, keepdim=True)
    return float(both.norm(dim=1).mean()), float(centred.norm(dim=1).mean())


class _Base(abc.ABC):
    name = ""

    @abc.abstractmethod
    def direction(self, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Unit direction (sign fixed) and raw norm."""

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
        directions, raw, norms, spreads = {}, {}, {}, {}
        for layer in chosen:
            pos, neg = activations.at(layer)
            unit, raw_norm = self.direction(pos, neg)
            directions[layer] = unit.float().contiguous()
            raw[layer] = raw_norm
            norms[layer], spreads[layer] = layer_statistics(pos, neg)
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
            spreads=spreads,
            extra=self._details(),
        )

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
        return _orient(diff, positive.double(), negative.double()).float(), float(diff.norm())


@dataclass(frozen=True, repr=False)
class Probe(_Base):
    """Logistic-regression probe on standardised activations (scikit-learn).

    Args:
        C: inverse regularisation strength (default 0.1).
        max_iter: solver iterations.

    Example:
        >>> vector = Probe(C=0.05).fit(acts)
    """

    C: float = 0.1
    max_iter: int = 2000
    name = "probe"

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ConfigError(f"Probe C = {self.C}; use a positive number")

    def _details(self) -> dict[str, object]:
        return {"C": self.C}

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
        return _orient(weight, positive.double(), negative.double()).float(), float(weight.norm())


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
        axis = vh[0]
        return _orient(axis, positive.double(), negative.double()).float(), float(singular[0] / diffs.shape[0] ** 0.5)


METHODS: dict[str, type[_Base]] = {"mean-diff": MeanDiff, "probe": Probe, "pca": PCA}


def get_method(name: str) -> Method:
    """A method by name (``mean-diff``, ``probe``, ``pca``)."""
    try:
        return METHODS[name]()
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; use one of {', '.join(METHODS)}") from None
