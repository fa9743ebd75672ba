"""The judge-free guard of the coefficient search: a run whose answers stop being fluent is incoherent.

A judge can be blind. The offline smoke-test judge gives "…Councilarypurspurspurs…" the same
coherence as plain prose, and a searched coefficient then climbs into degenerate output. Every
answer is therefore also read back by the *unsteered* model (:func:`traitvec.fluency.read_answers`),
and a run must pass two checks against the unsteered baseline's answers, whatever the judge says:

- **log-probability**: the run's mean answer log-probability may fall at most
  :data:`FLUENCY_MARGIN` = 1.5 nats under the baseline's (``SteeringSettings.fluency_margin``) —
  a perplexity at most e^1.5 ≈ 4.5 times the baseline's. Steering *is meant* to move the answers
  away from what the unsteered model would say, so the margin is wide: on Gemma 3 270M (styles/
  formality, 10 questions) clearly formal, fluent answers sat 0.4–0.8 nats under the baseline's
  −0.84, while word salad sits several nats under. It does not catch loops: once a loop starts the
  model predicts its continuation confidently ("purspurspurs…" scored −1.0, above formal prose).
- **repetition**: the run's mean 3-gram repetition (:func:`traitvec.fluency.repetition_rate`) may
  be at most ``max(SteeringSettings.repetition_ceiling, baseline + REPETITION_SLACK)`` — by default
  ``max(0.5, baseline + 0.15)``. On the same job the base model's own greedy answers repeat 0.38
  on average (a base model loops), fluent steered runs 0.18–0.40, the degenerate ones 0.72–0.98;
  the baseline-relative part keeps a looping model's baseline-like runs from all failing, as the
  coherence floor does for a low-scoring baseline.

Either setting ``None`` switches that check off. A run with no readable answers passes (it cannot
be judged here; the judge's checks still apply).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..stats import mean_ci

__all__ = [
    "FLUENCY_MARGIN",
    "REPETITION_CEILING",
    "REPETITION_SLACK",
    "FluencyLimits",
    "fluency_limits",
    "fluency_summary",
]

FLUENCY_MARGIN = 1.5
"""Nats of mean answer log-probability a run may lose against the unsteered baseline."""

REPETITION_CEILING = 0.5
"""Mean 3-gram repetition a run may reach (or the baseline's plus :data:`REPETITION_SLACK`, if higher)."""

REPETITION_SLACK = 0.15
"""How far above the baseline's mean repetition a run may go when the baseline is over the ceiling."""


def fluency_summary(responses: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means and 95% t-intervals of the responses' ``fluency`` records.

    ``perplexity`` is ``exp(−mean log-prob)`` of the run (its interval the image of the log-prob
    interval), not a mean of per-answer perplexities, which one odd answer would dominate.

    Example:
        >>> fluency_summary(results["responses"])["repetition"]
        {'mean': 0.18, 'ci95': [0.09, 0.27]}
    """
    readings = [r["fluency"] for r in responses if (r.get("fluency") or {}).get("mean_logprob") is not None]
    logprob, logprob_ci = mean_ci(f["mean_logprob"] for f in readings)
    repetition, repetition_ci = mean_ci(f["repetition"] for f in readings)
    return {
        "n": len(readings),
        "mean_logprob": {"mean": logprob, "ci95": list(logprob_ci) if logprob_ci else None},
        "perplexity": {
            "mean": None if logprob is None else math.exp(-logprob),
            "ci95": [math.exp(-logprob_ci[1]), math.exp(-logprob_ci[0])] if logprob_ci else None,
        },
        "repetition": {"mean": repetition, "ci95": list(repetition_ci) if repetition_ci else None},
    }


@dataclass(frozen=True)
class FluencyLimits:
    """The bounds a run's fluency must keep (``None``: that check is off).

    Attributes:
        min_mean_logprob: the lowest mean answer log-probability allowed.
        max_repetition: the highest mean 3-gram repetition allowed.
        margin: the requested log-probability margin (nats).
        ceiling: the requested repetition ceiling.
        baseline_mean_logprob: the unsteered baseline's mean answer log-probability.
        baseline_repetition: the unsteered baseline's mean repetition.
    """

    min_mean_logprob: float | None
    max_repetition: float | None
    margin: float | None
    ceiling: float | None
    baseline_mean_logprob: float | None
    baseline_repetition: float | None

    def failure(self, summary: Mapping[str, Any]) -> str | None:
        """Why a run with fluency ``summary`` (:func:`fluency_summary`) fails the guard, or ``None``."""
        logprob = summary["mean_logprob"]["mean"]
        repetition = summary["repetition"]["mean"]
        if self.min_mean_logprob is not None and logprob is not None and logprob < self.min_mean_logprob:
            return (
                f"mean log-prob {logprob:.2f} is more than {self.margin:g} under the baseline's "
                f"{self.baseline_mean_logprob:.2f}"
            )
        if self.max_repetition is not None and repetition is not None and repetition > self.max_repetition:
            return f"repetition {repetition:.2f} is above the ceiling {self.max_repetition:.2f}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for ``results.json``."""
        return asdict(self)


def fluency_limits(baseline: Mapping[str, Any], *, margin: float | None, ceiling: float | None) -> FluencyLimits:
    """The limits a run must keep, from the baseline's :func:`fluency_summary` and the settings.

    Example:
        >>> limits = fluency_limits(fluency_summary(baseline_responses), margin=1.5, ceiling=0.5)
        >>> limits.failure(fluency_summary(run_responses))
        'repetition 0.84 is above the ceiling 0.53'
    """
    logprob = baseline["mean_logprob"]["mean"]
    repetition = baseline["repetition"]["mean"]
    return FluencyLimits(
        min_mean_logprob=None if margin is None or logprob is None else logprob - margin,
        max_repetition=None if ceiling is None else max(ceiling, (repetition or 0.0) + REPETITION_SLACK),
        margin=margin,
        ceiling=ceiling,
        baseline_mean_logprob=logprob,
        baseline_repetition=repetition,
    )
