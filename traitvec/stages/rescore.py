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

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._io import write_json
from ..errors import ConfigError
from ..judge import Judge
from ..stats import mean_ci
from ..traits import Trait
from ..vectors import TraitVector
from .fluency_guard import fluency_limits, fluency_summary
from .layout import OutputLayout
from .resume import inputs_key, read_json_checked
from .rounds import RELEVANCE_GATE, Scorer, gate_responses, scorers_for
from .runs import results_problem
from .search import MIN_SCORED, Record, effective_floor, response_summary
from .steer import judge_key
from .steer_results import judged_summaries, prompt_hashes, scoring_summary

__all__ = ["Rescored", "compare_judges", "finished_results", "pearson", "rescore_steering", "rescored_name"]

logger = logging.getLogger(__name__)

COMPARED = ("trait", "coherence")


@dataclass(frozen=True)
class Rescored:
    """What :func:`rescore_steering` wrote.

    Attributes:
        path: the new results file (``results.rescored-<judge key>.json`` in the run's folder).
        results: its document (the original's, every score and summary from the new judge).
        comparison: :func:`compare_judges` of the original and the new document.
    """

    path: Path
    results: dict[str, Any]
    comparison: dict[str, Any]


def rescored_name(judge_key_data: Mapping[str, Any]) -> str:
    """``results.rescored-<first 12 hex digits of the judge key>.json``."""
    return f"results.rescored-{inputs_key(judge_key_data)[:12]}.json"


def rescore_steering(
    trait: Trait, experiment_dir: str | os.PathLike[str], judge: Judge, *, run: str | None = None
) -> Rescored:
    """Re-judge the saved answers of ``trait``'s steering evaluation on an experiment with ``judge``.

    Args:
        trait: the trait (its current rubric is what the new judge applies).
        experiment_dir: the steered experiment's folder (``experiments/{S}``).
        judge: the new judge.
        run: a run's key (``steering/{trait}/runs/{key}``); default the latest finished run.

    Raises:
        ConfigError: there is no finished, readable ``results.json`` to rescore.

    Example:
        >>> outcome = rescore_steering(trait, "experiments/gemma-3-270m", make_judge("gpt-4.1-mini"))
        >>> outcome.comparison["correlation"]["runs"]["trait"]
    """
    paths = OutputLayout(experiment_dir).steering(trait.name)
    old = finished_results(trait, experiment_dir, run=run)
    if old.get("trait_hash") not in (None, trait.files_hash):
        logger.warning("%s: the trait's files changed since this run; the new judge applies the current rubric", trait)
    rounds, prompting = _recorded(old)
    scorers = scorers_for(judge, trait)
    everything = [r for record in rounds for r in record["responses"]] + (prompting or {}).get("responses", [])
    _rejudge(everything, scorers)
    new = _rebuilt(old, rounds, prompting, judge, trait)
    comparison = compare_judges(old, new)
    new["comparison"] = comparison
    path = paths.folder / str(old.get("run_folder") or ".") / rescored_name(new["judge_key"])
    write_json(path, new)
    return Rescored(path, new, comparison)


def finished_results(trait: Trait, experiment_dir: str | os.PathLike[str], *, run: str | None = None) -> dict[str, Any]:
    """The ``results.json`` that :func:`rescore_steering` would re-judge (``run``'s, or the latest).

    Raises:
        ConfigError: it is missing, unreadable or not a finished steering results file.
    """
    paths = OutputLayout(experiment_dir).steering(trait.name)
    source = paths.run(run).results_json if run else paths.results_json
    document, problem = read_json_checked(source)
    if document is None:
        why = problem or "does not exist"
        which = f"run {run}" if run else "its latest run"
        raise ConfigError(
            f"{source} {why}: there is no finished steering evaluation of {trait.name} ({which}) to rescore; "
            "run the steering evaluation first (traitvec run), or name an existing run (traitvec results "
            f"{trait.name} lists them)"
        )
    wrong = results_problem(document)
    if wrong:
        raise ConfigError(f"{source} is not a steering results file traitvec can rescore ({wrong})")
    return document


def _recorded(old: Mapping[str, Any]) -> tuple[list[Record], dict[str, Any] | None]:
    """The rounds (baseline first) and the prompting baseline's record, rebuilt from a results document."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for r in old["responses"]:
        by_round.setdefault(int(r.get("round", 0)), []).append(dict(r))
    layers = list(old.get("layers") or [])
    rounds: list[Record] = []
    for number in sorted(by_round):
        configs = [[run["layer"], run["coefficient"]] for run in old["runs"] if run["round"] == number]
        if number == 0:
            configs = [[layers[0] if layers else 0, 0.0]]
        rounds.append({"round": number, "configs": configs, "responses": by_round[number]})
    prompted = old.get("prompting_baseline")
    prompting = None
    if prompted:
        prompting = {
            "instruction": prompted["instruction"],
            "system": prompted.get("placement") == "system prompt",
            "responses": [dict(r) for r in prompted["responses"]],
        }
    return rounds, prompting


def _rejudge(responses: Sequence[dict[str, Any]], scorers: Mapping[str, Scorer]) -> None:
    """Score every response again with each of the new judge's scorers, in place (one call per kind)."""
    if not responses:
        return
    questions, answers = [r["question"] for r in responses], [r["text"] for r in responses]
    for kind, score in scorers.items():
        for response, result in zip(responses, score(questions, answers), strict=True):
            response[kind] = result.to_dict()
    gate_responses(responses)


def _rebuilt(
    old: Mapping[str, Any], rounds: list[Record], prompting: dict[str, Any] | None, judge: Judge, trait: Trait
) -> dict[str, Any]:
    """The original document with every judged entry recomputed from the new scores."""
    settings = old["settings"]
    sign = -1.0 if old.get("direction") == "negative" else 1.0
    requested = float(old["coherence_floor"]["requested"])
    baseline = rounds[0]["responses"]
    coherence = response_summary(baseline)["coherence"]
    floor, note = effective_floor(requested, coherence["mean"], scored=(coherence["n_ok"], coherence["n"]))
    fluency = None  # a run from before the fluency guard had none
    if "fluency_margin" in settings:
        margin, ceiling = settings["fluency_margin"], settings.get("repetition_ceiling")
        fluency = fluency_limits(fluency_summary(baseline), margin=margin, ceiling=ceiling)
    vector = TraitVector.load(old["vector"]["file"])  # the coefficient unit (spread); no model is loaded
    responses = [r for record in rounds for r in record["responses"]]
    prompted = (prompting or {}).get("responses", [])
    new = dict(old)
    new.update(
        judged_summaries(
            rounds,
            prompting,
            sign=sign,
            spread=vector.spread,
            floor=floor,
            min_scored=float(settings.get("min_scored", MIN_SCORED)),
            fluency=fluency,
            layers=list(old.get("layers") or []),
            seed=int(settings.get("seed", 0)),
        )
    )
    scoring = scoring_summary([*responses, *prompted], judge)
    new.update(
        {
            "responses": responses,
            "coherence_floor": {"requested": requested, "effective": floor, "note": note},
            "judge": judge.describe(),
            "judge_key": judge_key(judge, trait),
            "prompt_hashes": prompt_hashes([*responses, *prompted]),
            "relevance_gate": dict(RELEVANCE_GATE),
            "smoke_test": bool(judge.smoke_test),
            "scoring": scoring,
            "usage": judge.usage(),
            "rescored": {
                "from_judge": old.get("judge"),
                "from_judge_key": old.get("judge_key"),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "note": "the answers, their fluency and projections are the original run's; only the judge changed. "
                "The coefficients are those the original judge's search tried.",
            },
        }
    )
    if not new["smoke_test"]:
        new.pop("warning", None)
    return new


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
