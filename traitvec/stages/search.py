"""The steering evaluation's choices that need no model: candidate layers, coherence floor, coefficient search.

- :func:`candidate_layers`: the ``n`` layers with the highest validation Cohen's d within the depth
  band (:func:`traitvec.evaluation.in_depth_band`) of the steered model.
- :func:`effective_floor`: the requested coherence floor, or the baseline's coherence minus
  :data:`BASELINE_MARGIN` when the unsteered model itself scores under the floor.
- :class:`CoefficientSearch` and :func:`search`: per layer, start at ``start`` spread units, double
  while mean coherence stays at or above the floor, then bisect (geometric mean) between the last
  coherent and the first incoherent coefficient until they are within 25% or the steps run out.
  Finished rounds (from ``progress.json``) are replayed into the search state first, so a resumed
  run continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..evaluation import Evaluation
from ..judge import JudgeScore, summarize

__all__ = [
    "BASELINE_MARGIN",
    "CoefficientSearch",
    "candidate_layers",
    "effective_floor",
    "response_summary",
    "is_coherent",
    "search",
]

logger = logging.getLogger(__name__)

BASELINE_MARGIN = 10.0
"""Points under the baseline's coherence the floor drops to when the baseline scores under the requested floor."""

Record = dict[str, Any]
"""One search round as recorded in ``progress.json``: ``{"round", "configs", "responses"}``."""


def candidate_layers(evaluation: Evaluation, method: str, n: int, n_layers_model: int) -> list[int]:
    """The ``n`` layers of ``method`` with the highest validation Cohen's d within the depth band, sorted.

    Args:
        evaluation: extraction's evaluation at the vector's position.
        method: the vector's method.
        n: how many layers.
        n_layers_model: depth of the steered model (the band is relative to it); when no evaluated
            layer lies in its band, all evaluated layers compete.
    """
    return sorted(evaluation.ranked_layers(method, n, n_layers_model=n_layers_model))


def effective_floor(requested: float, baseline_coherence: float | None) -> tuple[float, str | None]:
    """The coherence floor the search uses, and why it differs from the requested one (or None).

    Example:
        >>> effective_floor(70, 88.0)
        (70, None)
        >>> effective_floor(70, 39.5)[0]
        29.5
    """
    if baseline_coherence is None or baseline_coherence >= requested:
        return requested, None
    floor = max(0.0, baseline_coherence - BASELINE_MARGIN)
    note = (
        f"the unsteered baseline scores {baseline_coherence:.1f} coherence, under the floor {requested:g}; "
        f"the search uses {floor:.1f} ({BASELINE_MARGIN:g} under the baseline) instead"
    )
    return floor, note


def response_summary(responses: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Trait and coherence summaries (n, n_ok, n_failed, n_abstained, mean, ci95) of recorded responses."""
    return {kind: summarize([JudgeScore(**r[kind]) for r in responses]).to_dict() for kind in ("trait", "coherence")}


def is_coherent(responses: Sequence[Mapping[str, Any]], floor: float) -> bool:
    """Whether the responses' mean coherence is at or above ``floor``."""
    mean = response_summary(responses)["coherence"]["mean"]
    return mean is not None and bool(mean >= floor)


@dataclass
class CoefficientSearch:
    """Adaptive coefficient search state of one layer (magnitudes; the sign is applied outside)."""

    next: float
    good: float | None = None
    bad: float | None = None
    done: bool = False

    def update(self, coefficient: float, coherent: bool) -> None:
        """Record whether ``coefficient`` kept coherence and choose the next one."""
        if coherent:
            self.good = coefficient
        else:
            self.bad = coefficient
        if self.good is not None and self.bad is not None:
            if self.bad / self.good < 1.25:
                self.done = True
            self.next = math.sqrt(self.good * self.bad)
        elif self.bad is None:
            self.next = coefficient * 2
        else:
            self.next = coefficient / 2


def search(
    rounds: list[Record],
    layers: Sequence[int],
    *,
    start: float,
    sign: float,
    floor: float,
    steps: int,
    run_round: Callable[[list[tuple[int, float]], int], Record],
    checkpoint: Callable[[list[Record]], None],
    label: str = "",
) -> None:
    """Run search rounds until every layer is done or ``steps`` rounds ran; appends to ``rounds``.

    Args:
        rounds: the baseline (round 0) and any finished rounds; new rounds are appended.
        layers: candidate layers.
        start: first coefficient magnitude (spread units).
        sign: +1 or -1 (the trait's direction).
        floor: the coherence floor in force.
        steps: the last round number.
        run_round: generates, judges and projects ``[(layer, coefficient)]`` as round ``number``.
        checkpoint: called with every round after each new one (writes ``progress.json``).
        label: log prefix (the trait name).
    """
    searches = {layer: CoefficientSearch(next=start) for layer in layers}
    for record in rounds[1:]:  # replay finished rounds into the search state
        _update(searches, record, floor)
    if len(rounds) > 1:
        logger.info("%s: resuming after %d finished rounds", label, len(rounds) - 1)
    for number in range(len(rounds), steps + 1):
        active = [layer for layer in layers if not searches[layer].done]
        if not active:
            break
        configs = [(layer, sign * searches[layer].next) for layer in active]
        logger.info("%s: round %d: %s", label, number, ", ".join(f"L{layer} × {c:+.3g}" for layer, c in configs))
        record = run_round(configs, number)
        rounds.append(record)
        checkpoint(rounds)
        _update(searches, record, floor)


def _update(searches: dict[int, CoefficientSearch], record: Record, floor: float) -> None:
    for layer, coefficient in record["configs"]:
        runs = [r for r in record["responses"] if r["layer"] == layer]
        searches[layer].update(abs(coefficient), is_coherent(runs, floor))
