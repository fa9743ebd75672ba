"""The ``results.json`` document of a steering evaluation, and writing a run's files.

:func:`build_results` turns the recorded rounds into the document (plain data, see
``docs/steering-evaluation.md`` for every field); :func:`write_run` writes the run's folder
(``results.json``, ``results.md``, the plots) and then copies it to the trait's folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from .._io import write_json, write_text
from ..fluency import REPETITION_N
from ..judge import Judge
from ..render.markdown import format_results
from ..render.plots import plot_steering
from ..traits import Trait
from .baseline import prompting_summary
from .fluency_guard import FluencyLimits
from .judge_record import judge_for_trait, usage_since
from .layout import SteeringPaths, SteeringRunPaths
from .rounds import ASKED, RELEVANCE_GATE
from .runs import mirror_run
from .search import Record
from .selection import held_out_estimate, selection_record
from .steer_settings import Plan, sign_of
from .steer_summary import INTERVALS, baseline_summary, best_run, prompted_summary, run_summaries

__all__ = [
    "JUDGE_FAILED_FRACTION",
    "build_results",
    "judged_summaries",
    "prompt_hashes",
    "scoring_summary",
    "write_run",
]

JUDGE_FAILED_FRACTION = 0.5
"""Above this fraction of failed judge items a run's ``status`` is ``judge failed``."""

JUDGED = ("trait", "coherence", "relevance")
"""The judge records whose prompt hashes ``results.json`` lists (``coherence`` has its raw score's prompt)."""


def _asked(response: Mapping[str, Any]) -> tuple[str, ...]:
    """The judge records the judge was asked for (a response from before the relevance gate: two)."""
    return ASKED if "coherence_raw" in response else ("trait", "coherence")


def scoring_summary(responses: Sequence[Mapping[str, Any]], judge: Judge | None = None) -> dict[str, Any]:
    """How the judge fared on every item it was asked for in ``responses`` (trait, coherence and
    relevance of each), and its last error.

    ``last_error`` is the reason recorded with the last failed item of these responses, else the
    judge's own last error (``usage()["last_error"]``); the judge masks its key in both.
    """
    items = [r[kind] for r in responses for kind in _asked(r)]
    failed = [i for i in items if i["status"] == "failed"]
    last_error: str | None = None
    if failed:
        reported = judge.usage().get("last_error") if judge is not None else None
        last_error = failed[-1].get("reason") or (str(reported) if reported else None)
    return {
        "n_items": len(items),
        "n_failed": len(failed),
        "n_abstained": sum(1 for i in items if i["status"] == "abstained"),
        "failed_fraction": len(failed) / len(items) if items else 0.0,
        "last_error": last_error,
    }


def _status(scoring: Mapping[str, Any]) -> str:
    if scoring["n_failed"] == 0:
        return "complete"
    return "judge failed" if scoring["failed_fraction"] > JUDGE_FAILED_FRACTION else "some judge items failed"


def prompt_hashes(responses: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The judge prompt hashes recorded with ``responses``, per judged field (:data:`JUDGED`)."""
    hashes: dict[str, set[str]] = {}
    for r in responses:
        for kind in JUDGED:
            digest = (r.get(kind) or {}).get("prompt_hash")
            if digest:
                hashes.setdefault(kind, set()).add(digest)
    return {kind: sorted(v) for kind, v in sorted(hashes.items())}


def build_results(
    trait: Trait,
    plan: Plan,
    steer_model: Mapping[str, Any],
    judge: Judge,
    rounds: list[Record],
    floor: float,
    floor_note: str | None,
    transfer_warnings: list[str],
    seconds: float,
    *,
    fluency: FluencyLimits | None = None,
    prompting: Mapping[str, Any] | None = None,
    usage_before: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` document of one finished run.

    Args:
        trait: the trait.
        plan: the run's plan (settings with position and layers resolved, vector, questions, keys).
        steer_model: the steer model's description.
        judge: the judge (its description, usage and smoke-test flag are recorded).
        rounds: the baseline (round 0) and every search round.
        floor: the coherence floor the search used.
        floor_note: why it differs from the requested floor (``None`` when it does not).
        transfer_warnings: depth / family differences between extraction and steer model.
        seconds: how long the run took.
        fluency: the judge-free fluency limits the search used (``None``: no guard).
        prompting: the prompting baseline's record (:func:`~traitvec.stages.baseline.run_prompting`).
        usage_before: ``judge.usage()`` when the run started: the recorded usage is this run's own
            (a judge shared by several traits counts them all).
    """
    settings, sign = plan.settings, sign_of(trait)
    layers = list(settings.layers or ())
    responses = [dict(r, round=record["round"]) for record in rounds for r in record["responses"]]
    prompted = list(prompting["responses"]) if prompting else []
    scoring = scoring_summary([*responses, *prompted], judge)
    results: dict[str, Any] = {
        "trait": trait.name,
        "inputs_key": plan.key,
        "run_folder": f"runs/{plan.key}",
        "status": _status(scoring),
        "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "vector": {
            "file": str(plan.vector_file),
            "method": plan.vector.method,
            "position": plan.vector.position,
            "extracted_on": dict(plan.vector.model),
        },
        "steer_model": dict(steer_model),
        "steer_model_key": plan.model_key,
        "transfer_warnings": transfer_warnings,
        "direction": trait.direction,
        "layers": layers,
        "settings": {**dataclasses.asdict(settings), "layers": layers},
        "coherence_floor": {"requested": settings.coherence_floor, "effective": floor, "note": floor_note},
        "relevance_gate": dict(RELEVANCE_GATE),
        "coefficient_unit": "spread (mean norm of mean-centred activations at extraction); sign follows direction",
        "intervals": INTERVALS,
        "questions": plan.questions,
        "judge": judge_for_trait(judge.describe(), trait.name),
        "judge_key": plan.judge_key,
        "prompt_hashes": prompt_hashes([*responses, *prompted]),
        "smoke_test": bool(judge.smoke_test),
        "scoring": scoring,
        **judged_summaries(
            rounds,
            prompting,
            sign=sign,
            spread=plan.vector.spread,
            floor=floor,
            min_scored=settings.min_scored,
            fluency=fluency,
            layers=layers,
            seed=settings.seed,
        ),
        "responses": responses,
        "usage": usage_since(judge.usage(), usage_before),
        "seconds": round(seconds, 1),
        "traitvec_version": __version__,
    }
    if results["smoke_test"]:
        results["warning"] = "scored by a tiny local judge: a smoke test, not a measurement"
    return results


def judged_summaries(
    rounds: Sequence[Record],
    prompting: Mapping[str, Any] | None,
    *,
    sign: float,
    spread: Callable[[int], float],
    floor: float,
    min_scored: float,
    fluency: FluencyLimits | None,
    layers: Sequence[int],
    seed: int,
) -> dict[str, Any]:
    """Every entry of ``results.json`` computed from the recorded answers and their scores: the
    ``baseline``, ``runs``, ``best``, ``selection``, ``held_out``, ``fluency_guard`` and
    ``prompting_baseline`` (``None`` without one). ``traitvec rescore`` rebuilds them from a second
    judge's scores with this same function."""
    baseline = rounds[0]["responses"]
    runs = run_summaries(rounds, spread, sign, floor, min_scored, fluency)
    n_questions = len({int(r["question_index"]) for r in baseline})
    selection = selection_record(n_questions, seed)
    prompted = None
    if prompting:
        summary = prompted_summary(prompting["responses"], baseline, sign, floor, min_scored, fluency)
        prompted = prompting_summary(prompting, summary)
    return {
        "baseline": baseline_summary(baseline, layers),
        "runs": runs,
        "best": best_run(runs),
        "selection": selection,
        "held_out": held_out_estimate(rounds, selection, sign, floor, min_scored, fluency),
        "fluency_guard": None if fluency is None else {**fluency.to_dict(), "repetition_n": REPETITION_N},
        "prompting_baseline": prompted,
    }


def write_run(results: dict[str, Any], paths: SteeringPaths, run: SteeringRunPaths, *, keep_progress: bool) -> None:
    """Write the run's folder (plots, ``results.md``, then ``results.json``), then copy it to the trait's folder.

    ``progress.json`` stays when ``keep_progress`` (judge items failed: a rerun re-asks them from it).
    """
    plot_steering(results, run.trait_coherence_png, run.heatmap_png, run.projection_png)
    write_text(run.results_md, format_results(results))
    write_json(run.results_json, results)
    if not keep_progress:
        run.progress_json.unlink(missing_ok=True)
    mirror_run(paths, run, results)
