"""The steering evaluation's choices that need no model: candidate layers, coherence floor, coefficient search.

- :func:`candidate_layers`: the ``n`` layers with the highest validation Cohen's d within the depth
  band (:func:`traitvec.evaluation.in_depth_band`) of the steered model.
- :func:`effective_floor`: the requested coherence floor, or the baseline's coherence minus
  :data:`BASELINE_MARGIN` when the unsteered model itself scores under the floor.
- :func:`coherence_verdict` / :func:`is_coherent`: a run is coherent when at least ``min_scored``
  (default :data:`MIN_SCORED`, 80%) of its answers got a coherence score and their mean reaches
  the floor. Too few scored answers is its own verdict, never "coherent" and never "incoherent":
  one ok score out of ten says nothing about the other nine. With fluency limits
  (:mod:`traitvec.stages.fluency_guard`), a run whose answers the unsteered model finds far less
  likely than the baseline's, or that repeat themselves, is "not fluent" whatever the judge says.
- :func:`response_summary`: trait and coherence summaries of recorded responses, each question
  counted once (per-question means, then the t-interval across questions), so several samples of
  one question are not taken for independent evidence.
- :class:`CoefficientSearch` and :func:`search`: per layer, start at ``start`` spread units, double
  while the run stays coherent, then bisect (geometric mean) between the last coherent and the
  first incoherent coefficient until they are within 25% or the steps run out. Finished rounds
  (from ``progress.json``) are replayed into the search state first, so a resumed run continues
  exactly where it stopped; a recorded round that no longer follows from the rounds before it (its
  judge items were re-scored after a failure) is dropped with every round after it, and redone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..evaluation import Evaluation
from ..judge import JudgeScore, summarize
from ..stats import mean_ci
from .fluency_guard import FluencyLimits, fluency_summary

__all__ = [
    "BASELINE_MARGIN",
    "MIN_SCORED",
    "CoefficientSearch",
    "Record",
    "Verdict",
    "candidate_layers",
    "coherence_verdict",
    "effective_floor",
    "is_coherent",
    "ok_score",
    "question_means",
    "response_summary",
    "search",
]

logger = logging.getLogger(__name__)

BASELINE_MARGIN = 10.0
"""Points under the baseline's coherence the floor drops to when the baseline scores under the requested floor."""

MIN_SCORED = 0.8
"""Default minimum fraction of a run's answers with an ok coherence score for the floor to apply."""

Record = dict[str, Any]
"""One search round as recorded in ``progress.json``: ``{"round", "configs", "responses"}``."""

Verdict = Literal["coherent", "below floor", "too few scored", "unscored", "not fluent"]
"""Why a run counts or not: coherent; mean coherence under the floor; under ``min_scored`` of its
answers scored for coherence or for the trait (a gain measured on a few answers is no result); no
answer scored at all; coherent for the judge but failing the judge-free fluency guard
(:class:`~traitvec.stages.fluency_guard.FluencyLimits`)."""


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


def effective_floor(
    requested: float,
    baseline_coherence: float | None,
    *,
    scored: tuple[int, int] | None = None,
    min_scored: float = MIN_SCORED,
) -> tuple[float, str | None]:
    """The coherence floor the search uses, and why it differs from the requested one (or None).

    ``scored``: ``(ok, all)`` coherence scores of the baseline. When fewer than ``min_scored`` of
    them are ok, the baseline's mean says too little to lower the floor on, so the requested
    floor stays (with a note saying so).

    Example:
        >>> effective_floor(70, 88.0)
        (70, None)
        >>> effective_floor(70, 39.5)[0]
        29.5
        >>> effective_floor(70, 39.5, scored=(2, 10))[0]
        70
    """
    if baseline_coherence is None or baseline_coherence >= requested:
        return requested, None
    if scored is not None and scored[0] < min_scored * scored[1]:
        return requested, (
            f"the unsteered baseline scores {baseline_coherence:.1f} coherence, under the floor {requested:g}, but "
            f"on only {scored[0]} of {scored[1]} answers the judge scored; the search keeps the floor {requested:g}"
        )
    floor = max(0.0, baseline_coherence - BASELINE_MARGIN)
    note = (
        f"the unsteered baseline scores {baseline_coherence:.1f} coherence, under the floor {requested:g}; "
        f"the search uses {floor:.1f} ({BASELINE_MARGIN:g} under the baseline) instead"
    )
    return floor, note


def question_means(
    responses: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float | None]
) -> dict[int, float]:
    """Per question index, the mean of ``value(response)`` over its responses where it is not ``None``."""
    groups: dict[int, list[float]] = {}
    for r in responses:
        v = value(r)
        if v is not None:
            groups.setdefault(int(r["question_index"]), []).append(float(v))
    return {q: math.fsum(vs) / len(vs) for q, vs in sorted(groups.items())}


def ok_score(kind: str) -> Callable[[Mapping[str, Any]], float | None]:
    """The ok score of judge record ``kind`` of a response (``None`` when failed or abstained)."""

    def value(r: Mapping[str, Any]) -> float | None:
        record = r[kind]
        return float(record["score"]) if record["status"] == "ok" and record["score"] is not None else None

    return value


def _summary(responses: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """Counts of every item, and the mean and t-interval of the per-question means of the ok scores."""
    data = summarize([JudgeScore(**r[kind]) for r in responses]).to_dict()
    means = list(question_means(responses, ok_score(kind)).values())
    mean, ci = mean_ci(means)
    data["n_questions"] = len(means)
    data["mean"] = mean
    data["ci95"] = [max(0.0, ci[0]), min(100.0, ci[1])] if ci else None
    data["sd"] = (
        math.sqrt(math.fsum((m - mean) ** 2 for m in means) / (len(means) - 1)) if ci and mean is not None else None
    )
    return data


def response_summary(responses: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Trait and coherence summaries of recorded responses.

    Each summary holds the counts of every item (``n``, ``n_ok``, ``n_failed``, ``n_abstained``)
    and, over the questions with at least one ok score (``n_questions``), the mean of the
    per-question means with its Student-t 95% interval across questions (``ci95``, clipped to
    0–100) and their standard deviation (``sd``). With one sample per question this is the plain
    mean and t-interval of the ok scores.
    """
    return {kind: _summary(responses, kind) for kind in ("trait", "coherence")}


def coherence_verdict(
    responses: Sequence[Mapping[str, Any]],
    floor: float,
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
) -> Verdict:
    """Whether a run's answers are coherent enough to count (see :data:`Verdict`).

    ``fluency``: the judge-free limits a judge-coherent run must also keep (``None``: no guard).

    Example:
        >>> coherence_verdict(responses, 70)  # 1 ok score of 10, however high
        'too few scored'
    """
    if not responses:
        return "unscored"
    summary = _summary(responses, "coherence")
    if summary["n_ok"] == 0:
        return "unscored"
    if summary["n_ok"] < min_scored * len(responses):
        return "too few scored"
    if _summary(responses, "trait")["n_ok"] < min_scored * len(responses):  # its gain would rest on a few answers
        return "too few scored"
    if summary["mean"] is None or summary["mean"] < floor:
        return "below floor"
    if fluency is not None and fluency.failure(fluency_summary(responses)) is not None:
        return "not fluent"
    return "coherent"


def is_coherent(
    responses: Sequence[Mapping[str, Any]],
    floor: float,
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
) -> bool:
    """Whether at least ``min_scored`` of the responses were scored, their mean coherence reaches
    ``floor`` and (with ``fluency``) they keep the fluency limits."""
    return coherence_verdict(responses, floor, min_scored, fluency) == "coherent"


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
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
    label: str = "",
) -> None:
    """Run search rounds until every layer is done or ``steps`` rounds ran; appends to ``rounds``.

    Args:
        rounds: the baseline (round 0) and any finished rounds; new rounds are appended. A recorded
            round whose configurations no longer follow from the rounds before it is removed, with
            every round after it.
        layers: candidate layers.
        start: first coefficient magnitude (spread units).
        sign: +1 or -1 (the trait's direction).
        floor: the coherence floor in force.
        steps: the last round number.
        run_round: generates, judges and projects ``[(layer, coefficient)]`` as round ``number``.
        checkpoint: called with every round after each new one (writes ``progress.json``).
        min_scored: minimum fraction of scored answers for a run to count as coherent.
        fluency: the judge-free fluency limits a run must also keep (``None``: no guard).
        label: log prefix (the trait name).
    """
    searches = {layer: CoefficientSearch(next=start) for layer in layers}
    kept = _replay(rounds, searches, layers, sign, floor, min_scored, fluency, label)
    if kept < len(rounds):
        del rounds[kept:]
        checkpoint(rounds)
    if len(rounds) > 1:
        logger.info("%s: resuming after %d finished rounds", label, len(rounds) - 1)
    for number in range(len(rounds), steps + 1):
        configs = _next_configs(searches, layers, sign)
        if not configs:
            break
        logger.info("%s: round %d: %s", label, number, ", ".join(f"L{layer} × {c:+.3g}" for layer, c in configs))
        record = run_round(configs, number)
        rounds.append(record)
        checkpoint(rounds)
        _update(searches, record, floor, min_scored, fluency)


def _next_configs(
    searches: Mapping[int, CoefficientSearch], layers: Sequence[int], sign: float
) -> list[tuple[int, float]]:
    return [(layer, sign * searches[layer].next) for layer in layers if not searches[layer].done]


def _replay(
    rounds: Sequence[Record],
    searches: dict[int, CoefficientSearch],
    layers: Sequence[int],
    sign: float,
    floor: float,
    min_scored: float,
    fluency: FluencyLimits | None,
    label: str,
) -> int:
    """Replay finished rounds into ``searches``; the number of leading rounds that still follow (baseline included)."""
    for index, record in enumerate(rounds[1:], start=1):
        expected = _next_configs(searches, layers, sign)
        recorded = [(int(layer), float(c)) for layer, c in record["configs"]]
        same = len(expected) == len(recorded) and all(
            a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-9) for a, b in zip(expected, recorded, strict=True)
        )
        if not same or record["round"] != index:
            logger.info(
                "%s: round %d no longer follows from the rounds before it (re-scored judge items); redoing it",
                label,
                index,
            )
            return index
        _update(searches, record, floor, min_scored, fluency)
    return len(rounds)


def _update(
    searches: dict[int, CoefficientSearch],
    record: Record,
    floor: float,
    min_scored: float,
    fluency: FluencyLimits | None,
) -> None:
    for layer, coefficient in record["configs"]:
        runs = [r for r in record["responses"] if r["layer"] == layer]
        searches[layer].update(abs(coefficient), is_coherent(runs, floor, min_scored, fluency))
