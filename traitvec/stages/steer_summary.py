"""Summaries of recorded steering rounds: per-run means and gains, the baseline's projections, the best run.

Plain data in (the rounds recorded in ``progress.json``), plain data out (the ``runs``, ``best`` and
baseline ``projection`` entries of ``results.json``); no model and no judge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..stats import mean_ci
from .search import Record, response_summary

__all__ = ["run_summaries", "best_run", "mean_projection"]


def mean_projection(responses: Sequence[Mapping[str, Any]], layer: int) -> float | None:
    """Mean projection at ``layer`` of the responses that have projections (``None`` when none has)."""
    values = [r["projections"][str(layer)] for r in responses if r.get("projections")]
    return sum(values) / len(values) if values else None


def run_summaries(
    rounds: Sequence[Record],
    baseline: Mapping[str, Any],
    base_projection: Mapping[int, float | None],
    spread: Callable[[int], float],
    sign: float,
    floor: float,
) -> list[dict[str, Any]]:
    """One summary per (search round, layer): trait and coherence summaries, trait gain, projection gain.

    Args:
        rounds: the baseline (round 0, skipped) and the search rounds.
        baseline: :func:`~traitvec.stages.search.response_summary` of the baseline.
        base_projection: the baseline's mean projection per layer.
        spread: the vector's spread at a layer (projection gains are in spread units).
        sign: +1 or -1 (the trait's direction); trait gains are sign-adjusted.
        floor: the coherence floor in force (``coherent`` says whether a run reaches it).
    """
    runs = []
    for record in rounds[1:]:
        for layer, coefficient in record["configs"]:
            responses = [r for r in record["responses"] if r["layer"] == layer]
            summary = response_summary(responses)
            proj_mean, proj_ci = mean_ci([r["projection"] for r in responses if r["projection"] is not None])
            gain_trait = None
            if summary["trait"]["mean"] is not None and baseline["trait"]["mean"] is not None:
                gain_trait = sign * (summary["trait"]["mean"] - baseline["trait"]["mean"])
            base = base_projection[layer]
            runs.append(
                {
                    "layer": layer,
                    "coefficient": coefficient,
                    "round": record["round"],
                    **summary,
                    "trait_gain": gain_trait,
                    "coherent": summary["coherence"]["mean"] is not None and summary["coherence"]["mean"] >= floor,
                    "projection": {"mean": proj_mean, "ci95": list(proj_ci) if proj_ci else None},
                    "projection_gain": None
                    if proj_mean is None or base is None
                    else (proj_mean - base) / spread(layer),
                }
            )
    return runs


def best_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The coherent run with the largest trait gain (the smaller coefficient on ties); ``None`` if none qualifies."""
    eligible = [r for r in runs if r["coherent"] and r["trait_gain"] is not None]
    return max(eligible, key=lambda r: (r["trait_gain"], -abs(r["coefficient"]))) if eligible else None
