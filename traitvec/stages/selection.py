"""Cross-fitted choice of the steering configuration: choose on some questions, report on the others.

The in-sample best run (:func:`~traitvec.stages.steer_summary.best_run`) is chosen and scored on the
same questions; with many (layer, coefficient) runs and 10–20 questions the maximum of noisy gains
is optimistic even when steering does nothing. The held-out estimate fixes that by 2-fold
cross-fitting over questions:

1. The question indices are shuffled with the settings' seed and cut in two halves, A and B.
2. The coefficient search itself runs once over all questions, as before: the grid of runs is
   shared; only the *choice* among them is cross-fitted.
3. Fold 1 tunes on A: among the runs that are coherent on A's answers (the same floor and
   minimum scored fraction as the search), the one with the largest trait gain on A is chosen;
   its per-question gains on B are held out. Fold 2 swaps the halves.
4. The held-out per-question gains of both folds (every question exactly once) are pooled: their
   mean is the headline ``held_out.trait_gain``, with a Student-t 95% interval across questions.

A fold whose tune half has no coherent run contributes no held-out questions (its ``chosen`` is
``None``); with fewer than two questions there is nothing to split and ``held_out`` says so.
Plain data in and out; no model and no judge.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import mean_ci
from .fluency_guard import FluencyLimits
from .search import MIN_SCORED, Record, coherence_verdict, ok_score, question_means
from .steer_summary import paired_gains, run_responses

__all__ = ["FOLDS", "question_folds", "selection_record", "held_out_estimate"]

FOLDS = 2
"""Folds of the cross-fitted choice (2: tune on one half, test on the other, then swap)."""


def question_folds(n_questions: int, seed: int) -> list[dict[str, list[int]]]:
    """The 2-fold split of question indices ``0 … n−1``: ``[{"tune": A, "test": B}, {"tune": B, "test": A}]``.

    The indices are shuffled with ``random.Random(seed)``; each half is sorted. Empty with fewer
    than two questions.

    Example:
        >>> question_folds(4, 0)
        [{'tune': [0, 2], 'test': [1, 3]}, {'tune': [1, 3], 'test': [0, 2]}]
    """
    if n_questions < 2:
        return []
    order = list(range(n_questions))
    random.Random(seed).shuffle(order)
    half = (n_questions + 1) // 2
    first, second = sorted(order[:half]), sorted(order[half:])
    return [{"tune": first, "test": second}, {"tune": second, "test": first}]


def selection_record(n_questions: int, seed: int) -> dict[str, Any]:
    """The ``selection`` entry of ``results.json``: how the questions were split and what that means."""
    return {
        "method": f"{FOLDS}-fold cross-fitting over questions",
        "seed": seed,
        "folds": question_folds(n_questions, seed),
        "grid": "shared: the coefficient search ran over all questions; only the choice of the run is cross-fitted",
    }


def _on(responses: Sequence[Mapping[str, Any]], questions: set[int]) -> list[Mapping[str, Any]]:
    return [r for r in responses if r["question_index"] in questions]


def _choose(
    rounds: Sequence[Record],
    tune: set[int],
    sign: float,
    floor: float,
    min_scored: float,
    fluency: FluencyLimits | None,
) -> tuple[dict[str, Any] | None, float | None]:
    """The run chosen on the ``tune`` questions (largest tune gain among runs coherent there; the smaller
    coefficient on ties), and its tune gain."""
    baseline = _on(rounds[0]["responses"], tune)
    best: tuple[float, float] | None = None
    chosen: dict[str, Any] | None = None
    for number, layer, coefficient, responses in run_responses(rounds):
        mine = _on(responses, tune)
        if coherence_verdict(mine, floor, min_scored, fluency) != "coherent":
            continue
        gains = list(paired_gains(mine, baseline, ok_score("trait"), sign).values())
        if not gains:
            continue
        gain = sum(gains) / len(gains)
        rank = (gain, -abs(coefficient))
        if best is None or rank > best:
            best, chosen = rank, {"layer": layer, "coefficient": coefficient, "round": number}
    return chosen, (best[0] if best else None)


def held_out_estimate(
    rounds: Sequence[Record],
    selection: Mapping[str, Any],
    sign: float,
    floor: float,
    min_scored: float = MIN_SCORED,
    fluency: FluencyLimits | None = None,
) -> dict[str, Any]:
    """The ``held_out`` entry of ``results.json``: the cross-fitted gain of the chosen configuration.

    Args:
        rounds: the baseline (round 0) and the search rounds.
        selection: :func:`selection_record` (its ``folds``).
        sign: +1 or -1 (the trait's direction).
        floor: the coherence floor in force.
        min_scored: minimum fraction of scored answers for a run to count as coherent.
        fluency: the judge-free fluency limits a coherent run must also keep (``None``: no guard).

    Returns:
        ``trait_gain`` (mean of the pooled held-out per-question gains), ``ci95`` (t-interval across
        those questions), ``n_questions``, ``coherence`` (mean held-out per-question coherence of the
        chosen runs), ``folds`` (per fold: ``tune``, ``test``, ``chosen`` run or ``None``, ``tune_gain``,
        ``test_gain``, ``test_questions`` scored) and ``note``.
    """
    baseline = rounds[0]["responses"]
    by_config = {
        (number, layer, coefficient): responses for number, layer, coefficient, responses in run_responses(rounds)
    }
    pooled: dict[int, float] = {}
    coherence: list[float] = []
    folds = []
    for fold in selection["folds"]:
        tune, test = set(fold["tune"]), set(fold["test"])
        chosen, tune_gain = _choose(rounds, tune, sign, floor, min_scored, fluency)
        gains: dict[int, float] = {}
        if chosen is not None:
            responses = by_config[(chosen["round"], chosen["layer"], chosen["coefficient"])]
            gains = paired_gains(responses, baseline, ok_score("trait"), sign, questions=test)
            coherence += list(question_means(_on(responses, test), ok_score("coherence")).values())
            pooled.update(gains)
        folds.append(
            {
                **fold,
                "chosen": chosen,
                "tune_gain": tune_gain,
                "test_gain": sum(gains.values()) / len(gains) if gains else None,
                "test_questions": sorted(gains),
            }
        )
    gain, ci = mean_ci(list(pooled.values()))
    return {
        "trait_gain": gain,
        "ci95": list(ci) if ci else None,
        "n_questions": len(pooled),
        "coherence": sum(coherence) / len(coherence) if coherence else None,
        "folds": folds,
        "note": _note(selection, folds, len(pooled)),
    }


def _note(selection: Mapping[str, Any], folds: Sequence[Mapping[str, Any]], n: int) -> str:
    if not selection["folds"]:
        return "fewer than two questions: nothing to hold out"
    empty = [i + 1 for i, f in enumerate(folds) if f["chosen"] is None]
    if empty:
        which = " and ".join(str(i) for i in empty)
        return f"no run was coherent on the tune half of fold {which}; {n} held-out questions remain"
    return "chosen on the tune half of each fold, scored on the other half; held-out gains pooled over both folds"
