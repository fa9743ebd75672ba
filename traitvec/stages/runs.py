"""Steering runs on disk: one folder per set of inputs, a copy of the latest, the list of them all.

Every steering evaluation writes into ``steering/{trait}/runs/{key}/`` (``key`` is its inputs key),
so runs with other settings — a quick 2-question check beside a 10-question run — never overwrite
each other. When a run finishes, its files are copied to ``steering/{trait}/`` (:func:`mirror_run`)
and that ``results.json`` names the run's folder in ``run_folder``; tools that read the trait's
``results.json`` see the latest run. :func:`list_runs` lists every run of a trait.

The structure checks (:func:`results_problem`, :func:`progress_problem`) let a stage treat a
hand-edited or foreign file with the right key as stale (recompute, with a warning) instead of
failing on it with a traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_bytes, write_json
from ..errors import ConfigError
from ..judge import JudgeScore
from .layout import STEERING_FILES, OutputLayout, SteeringPaths, SteeringRunPaths
from .resume import read_json_checked

__all__ = ["SteeringRun", "list_runs", "mirror_run", "progress_problem", "results_problem"]

logger = logging.getLogger(__name__)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _response_problem(r: Any, where: str) -> str | None:
    if not isinstance(r, Mapping):
        return f"{where} is not an object"
    for name, type_ in (("question", str), ("text", str), ("question_index", int), ("sample", int)):
        if not isinstance(r.get(name), type_):
            return f"{where}.{name} is missing or not a {type_.__name__}"
    if not _number(r.get("coefficient")) or not (r.get("layer") is None or isinstance(r.get("layer"), int)):
        return f"{where} has no numeric coefficient or integer layer"
    for kind in ("trait", "coherence"):
        record = r.get(kind)
        try:
            JudgeScore(**record) if isinstance(record, Mapping) else None
        except TypeError:
            return f"{where}.{kind} is not a judge record"
        if not isinstance(record, Mapping) or record.get("status") not in ("ok", "abstained", "failed"):
            return f"{where}.{kind} is not a judge record"
    return None


def progress_problem(document: Mapping[str, Any]) -> str | None:
    """What is wrong with the structure of a ``progress.json`` document, or ``None``."""
    rounds = document.get("rounds")
    if not isinstance(rounds, list) or not rounds:
        return "'rounds' is not a non-empty list"
    for number, record in enumerate(rounds):
        where = f"rounds[{number}]"
        if not isinstance(record, Mapping) or record.get("round") != number:
            return f"{where} is not round {number}"
        configs, responses = record.get("configs"), record.get("responses")
        if not isinstance(configs, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and _number(c[1]) for c in configs
        ):
            return f"{where}.configs is not a list of [layer, coefficient]"
        if not isinstance(responses, list) or not responses:
            return f"{where}.responses is not a non-empty list"
        for i, r in enumerate(responses):
            problem = _response_problem(r, f"{where}.responses[{i}]")
            if problem:
                return problem
    return None


def results_problem(document: Mapping[str, Any]) -> str | None:
    """What is wrong with the structure of a ``results.json`` document, or ``None``."""
    expected: dict[str, type | tuple[type, ...]] = {
        "trait": str,
        "settings": dict,
        "baseline": dict,
        "runs": list,
        "responses": list,
        "scoring": dict,
        "selection": dict,
        "coherence_floor": dict,
        "best": (dict, type(None)),
        "held_out": dict,
    }
    for name, kind in expected.items():
        if not isinstance(document.get(name), kind):
            return f"'{name}' is missing or of the wrong type"
    for i, run in enumerate(document["runs"]):
        if not isinstance(run, Mapping) or not isinstance(run.get("layer"), int) or not _number(run.get("coefficient")):
            return f"runs[{i}] has no integer layer and numeric coefficient"
    if not isinstance(document["scoring"].get("n_failed"), int):
        return "'scoring.n_failed' is not an integer"
    for i, r in enumerate(document["responses"]):
        problem = _response_problem(r, f"responses[{i}]")
        if problem:
            return problem
    return None


def mirror_run(paths: SteeringPaths, run: SteeringRunPaths, results: Mapping[str, Any]) -> bool:
    """Copy a finished run's files to the trait's steering folder; ``False`` when they are already there.

    The copied ``results.json`` is ``results`` (which names ``run_folder``); the other files are
    copied byte for byte, and a file the run lacks is removed from the trait's folder so nothing
    of an older run stays beside the newer one.
    """
    current, _ = read_json_checked(paths.results_json)
    if (
        current is not None
        and current.get("run_folder") == results.get("run_folder")
        and current.get("inputs_key") == results.get("inputs_key")
        and current.get("finished_at") == results.get("finished_at")
    ):
        return False
    for name in STEERING_FILES[1:]:
        source, target = run.folder / name, paths.folder / name
        if source.is_file():
            write_bytes(target, source.read_bytes())
        else:
            target.unlink(missing_ok=True)
    write_json(paths.results_json, results)
    return True


@dataclass(frozen=True)
class SteeringRun:
    """One steering run of a trait, as :func:`list_runs` finds it.

    Attributes:
        key: the run's inputs key (its folder name).
        folder: ``steering/{trait}/runs/{key}``.
        status: ``complete``, ``some judge items failed``, ``judge failed``, ``unfinished`` (only
            ``progress.json``: interrupted, or running now) or ``unreadable: …``.
        finished_at: ISO time the run finished (``None`` when it has not).
        latest: True for the run the trait's ``results.json`` copies.
        settings: the run's resolved settings (empty when unreadable).
        n_questions: questions asked.
        held_out: the cross-fitted headline (``trait_gain``, ``ci95``, …), or ``None``.
        best: the in-sample best run (``layer``, ``coefficient``, ``trait_gain``), or ``None``.
        rounds: finished search rounds (for an unfinished run), else ``None``.
    """

    key: str
    folder: Path
    status: str
    finished_at: str | None = None
    latest: bool = False
    settings: Mapping[str, Any] | None = None
    n_questions: int | None = None
    held_out: Mapping[str, Any] | None = None
    best: Mapping[str, Any] | None = None
    rounds: int | None = None


def list_runs(layout: OutputLayout, trait: str) -> list[SteeringRun]:
    """Every steering run of ``trait`` under ``layout``'s experiment, oldest first (unfinished runs last).

    Args:
        layout: the steered experiment's output layout.
        trait: ``category/trait``.

    Raises:
        ConfigError: ``trait`` is not a ``category/trait`` name.

    Example:
        >>> for run in list_runs(OutputLayout("experiments/gemma-3-270m"), "styles/formality"):
        ...     print(run.key, run.status, run.held_out and run.held_out["trait_gain"])
    """
    parts = trait.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or p.strip() != p for p in parts):
        raise ConfigError(f"list_runs(trait=) {trait!r} is not a category/trait name such as styles/formality")
    paths = layout.steering(trait)
    latest, _ = read_json_checked(paths.results_json)
    latest_folder = latest.get("run_folder") if latest else None
    found = [_run(paths, folder, latest_folder) for folder in sorted(paths.runs_dir.glob("*")) if folder.is_dir()]
    return sorted(found, key=lambda r: (r.finished_at is None, r.finished_at or "", r.key))


def _run(paths: SteeringPaths, folder: Path, latest_folder: Any) -> SteeringRun:
    run = paths.run(folder.name)
    latest = latest_folder == f"runs/{run.key}"
    document, problem = read_json_checked(run.results_json)
    if document is None and problem is None:
        progress, problem = read_json_checked(run.progress_json)
        rounds = progress.get("rounds") if progress else None
        if isinstance(rounds, list):
            return SteeringRun(run.key, run.folder, "unfinished", rounds=max(0, len(rounds) - 1))
        return SteeringRun(run.key, run.folder, f"unreadable: {problem or 'no results.json'}")
    wrong = problem or (results_problem(document) if document is not None else None)
    if document is None or wrong:
        return SteeringRun(run.key, run.folder, f"unreadable: results.json {wrong}", latest=latest)
    best = document.get("best")
    return SteeringRun(
        key=run.key,
        folder=run.folder,
        status=str(document.get("status", "complete")),
        finished_at=document.get("finished_at"),
        latest=latest,
        settings=document["settings"],
        n_questions=len(document.get("questions") or []),
        held_out=document["held_out"],
        best={k: best.get(k) for k in ("layer", "coefficient", "trait_gain")} if best else None,
    )
