"""Re-judging a finished steering evaluation with another judge, without loading any model.

A steering evaluation keeps every answer it scored (its text, its exact tokens, its judge-free
fluency readings), so another judge — another model, endpoint or mode — can score the same
answers again for the price of its requests alone (trait-interp's ``--rescore``).
:func:`rescore_steering` reads a trait's latest ``results.json`` (or one run's), asks the new
judge for the trait, coherence and relevance of every recorded answer (steered, baseline and
prompted), rebuilds every summary from those scores — the same code the evaluation uses, fed the
recorded rounds — and writes ``results.rescored-<judge key>.json`` beside the old file, with a
comparison of the two judges (:func:`compare_judges`): per run the old and new means and their
difference, and the Pearson correlation of the two judges across runs and across responses.

Nothing here loads a model or touches ``ModelPool``: what the model produced is read from disk.
The search is not re-run: the coefficients tried are those the original judge chose, so a
rescored ``best`` is the best *among those runs* under the new judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import mean_ci

__all__ = ["compare_judges", "pearson"]

COMPARED = ("trait", "coherence")


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r of paired values; ``None`` with fewer than 3 pairs or when either side is constant.

    Example:
        >>> pearson([1, 2, 3], [2, 4, 7])
        0.9933992677987828
    """
    if len(xs) != len(ys):
        raise ValueError(f"pearson needs paired values, got {len(xs)} and {len(ys)}")
    if len(xs) < 3:
        return None
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def _runs(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every scored group of answers by a stable label: the baseline, each run, the prompting baseline."""
    groups: dict[str, Mapping[str, Any]] = {"baseline": results["baseline"]}
    for run in results.get("runs") or []:
        groups[f"L{run['layer']} x {run['coefficient']:+.4g} (round {run['round']})"] = run
    if results.get("prompting_baseline"):
        groups["prompted"] = results["prompting_baseline"]
    return groups


def _response_pairs(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], kind: str
) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for a, b in zip(old, new, strict=True):
        x, y = (a.get(kind) or {}).get("score"), (b.get(kind) or {}).get("score")
        if x is not None and y is not None:
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def _all_responses(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    prompted = (results.get("prompting_baseline") or {}).get("responses") or []
    return [*results["responses"], *prompted]


def compare_judges(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """How a second judge's scores of the same answers compare with the first's.

    Args:
        old: the original ``results.json`` document.
        new: the rescored document (same runs and responses, in the same order).

    Returns:
        ``{"runs": [{"run", "trait": {"old", "new", "difference"}, "coherence": {...}}],
        "mean_difference": {kind: {"mean", "ci95", "n"}}, "correlation": {"runs": {kind: r, "n"},
        "responses": {kind: r, "n"}}}`` — differences are new − old; a correlation is ``None`` with
        fewer than 3 pairs or a constant side.
    """
    old_runs, new_runs = _runs(old), _runs(new)
    rows = []
    for label, run in old_runs.items():
        other = new_runs[label]
        row: dict[str, Any] = {"run": label}
        for kind in COMPARED:
            a, b = run[kind]["mean"], other[kind]["mean"]
            row[kind] = {"old": a, "new": b, "difference": None if a is None or b is None else b - a}
        rows.append(row)
    mean_difference, by_runs, by_responses = {}, {}, {}
    for kind in COMPARED:
        pairs = [(r[kind]["old"], r[kind]["new"]) for r in rows if r[kind]["difference"] is not None]
        mean, ci = mean_ci(b - a for a, b in pairs)
        mean_difference[kind] = {"mean": mean, "ci95": list(ci) if ci else None, "n": len(pairs)}
        by_runs[kind] = pearson([a for a, _ in pairs], [b for _, b in pairs])
        xs, ys = _response_pairs(_all_responses(old), _all_responses(new), kind)
        by_responses[kind] = pearson(xs, ys)
        by_responses[f"n_{kind}"] = len(xs)
        by_runs[f"n_{kind}"] = len(pairs)
    return {
        "runs": rows,
        "mean_difference": mean_difference,
        "correlation": {"runs": by_runs, "responses": by_responses},
    }
