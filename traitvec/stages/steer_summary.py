"""Summaries of recorded steering rounds: per-run means and gains, the baseline's projections, the best run.

Plain data in (the rounds recorded in ``progress.json``), plain data out (the ``runs``, ``best`` and
``baseline`` entries of ``results.json``); no model and no judge.

Gains are paired by question: for every question scored both at baseline and in the run, the
gain is ``sign × (run's mean at the question − baseline's mean at the question)`` (the means are
over the question's samples), and a run's gain is the mean of those per-question gains with a
Student-t 95% interval across questions. Each question counts once, so several samples of one
question never narrow an interval as if they were independent questions. ``sign`` is −1 for a
trait whose ``direction`` is ``negative``: a gain is always movement in the direction steering
aims at, for the judge's trait score and for the projection alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..stats import mean_ci
from .fluency_guard import FluencyLimits, fluency_summary
from .search import MIN_SCORED, Record, coherence_verdict, ok_score, question_means, response_summary

__all__ = [
    "INTERVALS",
    "best_run",
    "baseline_summary",
    "mean_projection",
    "paired_gains",
    "prompted_summary",
    "run_responses",
    "run_summaries",
]

INTERVALS = (
    "95% Student-t intervals across questions: each question's samples are averaged first, so a question "
    "counts once (gains are paired by question against the baseline)"
)
"""How every interval in ``results.json`` is computed (recorded as its ``intervals`` field)."""

Value = Callable[[Mapping[str, Any]], float | None]


def mean_projection(responses: Sequence[Mapping[str, Any]], layer: int) -> float | None:
    """Mean projection at ``layer`` of the responses that have projections (``None`` when none has)."""
    values = [r["projections"][str(layer)] for r in responses if r.get("projections")]
    return sum(values) / len(values) if values else None


def projection_at(layer: int) -> Value:
    """A response's projection at ``layer`` (read by the unsteered model), or ``None``."""

    def value(r: Mapping[str, Any]) -> float | None:
        projections = r.get("projections")
        v = projections.get(str(layer)) if isinstance(projections, Mapping) else None
        return None if v is None else float(v)

    return value


def paired_gains(
    steered: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]],
    value: Value,
    sign: float,
    questions: set[int] | None = None,
) -> dict[int, float]:
    """Per question scored on both sides (and in ``questions`` when given), ``sign × (steered − baseline)`` means."""
    ours, theirs = question_means(steered, value), question_means(baseline, value)
    return {q: sign * (ours[q] - theirs[q]) for q in ours if q in theirs and (questions is None or q in questions)}


def _mean_interval(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    mean, ci = mean_ci(values)
    return mean, list(ci) if ci else None


def run_responses(rounds: Sequence[Record]) -> Iterator[tuple[int, int, float, list[dict[str, Any]]]]:
    """``(round, layer, coefficient, responses)`` of every steered run of the search rounds (baseline skipped)."""
    for record in rounds[1:]:
        for layer, coefficient in record["configs"]:
            yield record["round"], layer, coefficient, [r for r in record["responses"] if r["layer"] == layer]


def baseline_summary(baseline: Sequence[Mapping[str, Any]], layers: Sequence[int]) -> dict[str, Any]:
    """Trait, coherence and fluency summaries of the baseline answers, and their mean projection per candidate layer."""
    return {
        **response_summary(baseline),
        "fluency": fluency_summary(baseline),
        "projection": {str(layer): mean_projection(baseline, layer) for layer in layers},
    }


def prompted_summary(
    prompted: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]],
    sign: float,
    floor: float,
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
) -> dict[str, Any]:
    """Trait, coherence and fluency summaries of the prompting baseline's answers, their trait gain
    over the unsteered baseline (paired by question, sign-adjusted, as a run's) and their verdict."""
    gains = paired_gains(prompted, baseline, ok_score("trait"), sign)
    gain, gain_ci = _mean_interval(list(gains.values()))
    verdict = coherence_verdict(prompted, floor, min_scored, fluency)
    return {
        **response_summary(prompted),
        "fluency": fluency_summary(prompted),
        "trait_gain": gain,
        "trait_gain_ci95": gain_ci,
        "n_questions_paired": len(gains),
        "coherent": verdict == "coherent",
        "verdict": verdict,
    }


def run_summaries(
    rounds: Sequence[Record],
    spread: Callable[[int], float],
    sign: float,
    floor: float,
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
) -> list[dict[str, Any]]:
    """One summary per (search round, layer): trait, coherence and fluency summaries, gains with intervals, verdict.

    Args:
        rounds: the baseline (round 0) and the search rounds.
        spread: the vector's spread at a layer (projection gains are in spread units).
        sign: +1 or -1 (the trait's direction); every gain is sign-adjusted.
        floor: the coherence floor in force (``coherent`` says whether a run reaches it).
        min_scored: minimum fraction of scored answers for the floor to apply (see
            :func:`~traitvec.stages.search.coherence_verdict`).
        fluency: the judge-free fluency limits a coherent run must also keep (``None``: no guard).
    """
    baseline = rounds[0]["responses"]
    runs = []
    for number, layer, coefficient, responses in run_responses(rounds):
        trait_gains = paired_gains(responses, baseline, ok_score("trait"), sign)
        gain, gain_ci = _mean_interval(list(trait_gains.values()))
        proj_mean, proj_ci = _mean_interval(list(question_means(responses, projection_at(layer)).values()))
        unit = spread(layer)
        projection_gains = [g / unit for g in paired_gains(responses, baseline, projection_at(layer), sign).values()]
        proj_gain, proj_gain_ci = _mean_interval(projection_gains)
        verdict = coherence_verdict(responses, floor, min_scored, fluency)
        runs.append(
            {
                "layer": layer,
                "coefficient": coefficient,
                "round": number,
                **response_summary(responses),
                "fluency": fluency_summary(responses),
                "trait_gain": gain,
                "trait_gain_ci95": gain_ci,
                "n_questions_paired": len(trait_gains),
                "coherent": verdict == "coherent",
                "verdict": verdict,
                "projection": {"mean": proj_mean, "ci95": proj_ci},
                "projection_gain": proj_gain,
                "projection_gain_ci95": proj_gain_ci,
            }
        )
    return runs


def best_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The coherent run with the largest trait gain (the smaller coefficient on ties); ``None`` if none qualifies.

    This is the in-sample best: chosen and scored on the same questions, so its gain is optimistic
    (the held-out estimate of :mod:`traitvec.stages.selection` is not).
    """
    eligible = [r for r in runs if r["coherent"] and r["trait_gain"] is not None]
    return max(eligible, key=lambda r: (r["trait_gain"], -abs(r["coefficient"]))) if eligible else None
