"""``traitvec run`` (also ``extraction/run_pipeline.py``) and ``traitvec extract``: the pipeline behind flags.

What can fail cheaply fails first, before torch is even imported: the experiments, the traits,
then the judge (built, so that a smoke-test judge says so first, and checked with one request).
The stages load afterwards and check each experiment folder is writable before loading its model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..experiments import load_experiment
from ..stages.preflight import load_traits, prepare_judge
from .cluster import failure_line, run_on_executor, uses_executor
from .settings import extraction_settings, judge_settings, steering_settings

if TYPE_CHECKING:
    from ..evaluation import Evaluation
    from ..executors import TaskFailure
    from ..stages.pipeline import TraitRun

__all__ = ["cmd_run", "cmd_extract", "format_outputs"]

SMOKE_TEST_WARNING = (
    "\nWARNING: scored by a tiny local judge: these numbers are a smoke test, not a measurement. "
    "Set OPENAI_API_KEY (and OPENAI_BASE_URL for another server) for real judging."
)


def _run(args: argparse.Namespace, *, steering: bool, vetting: bool) -> list[TraitRun]:
    """Load and validate everything the flags name, in the order errors are reported, then run the pipeline."""
    config = load_experiment(args.experiment, args.experiments_root)
    steer_config = None
    if steering:
        steer_config = load_experiment(args.steer_experiment or args.experiment, args.experiments_root)
    traits = load_traits(args.traits, args.traits_root)
    judge = prepare_judge(judge_settings(args), traits if steering else ()) if steering or vetting else None
    from ..stages.pipeline import run_pipeline  # loads torch: after the cheap checks
    from ..stages.vet import VetSettings

    extraction = extraction_settings(args, config)
    return run_pipeline(
        config,
        traits,
        steer_experiment=steer_config,
        extraction=extraction,
        steering=steering_settings(args) if steering else None,
        vetting=VetSettings() if vetting else None,
        judge=judge,
        vetted_only=args.vetted_only,
        force=args.force,
        show_progress=sys.stderr.isatty(),
        batch_traits=not getattr(args, "no_batch_traits", False),
    )


def _extraction_rows(runs: list[TraitRun]) -> list[tuple[str, dict[str, Evaluation]]]:
    rows = []
    for run in runs:
        assert run.extraction is not None
        rows.append((run.trait, run.extraction.evaluations))
    return rows


def format_outputs(runs: list[TraitRun]) -> str:
    """Where every stage of every trait left its outputs, one path a line (folders end in ``/``).

    Example:
        Outputs of styles/formality:
          extraction  experiments/gemma-3-270m/extraction/styles/formality/vectors/
                      experiments/gemma-3-270m/extraction/styles/formality/evaluation.json
    """
    lines = []
    for run in runs:
        lines.append(f"Outputs of {run.trait}:")
        for stage, paths in run.outputs.items():
            for i, path in enumerate(paths):
                label = stage if i == 0 else ""
                lines.append(f"  {label:<10}  {_shown(path)}")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    return f"{path}/" if path.is_dir() else str(path)


def cmd_run(args: argparse.Namespace) -> int:
    """``traitvec run`` / ``extraction/run_pipeline.py``: every stage, the final tables, where the outputs went.

    Exits 1 when the judge failed on most of a trait's steering items (one line per such trait,
    with the judge's last error): those numbers are not results, and a rerun re-asks the failed items.
    """
    failures: list[TaskFailure] = []
    if uses_executor(args):
        runs, failures = run_on_executor(args, steering=not args.no_steering, vetting=args.vet)
    else:
        runs = _run(args, steering=not args.no_steering, vetting=args.vet)
    status = _cmd_run_tables(args, runs)
    if failures:
        line, failed_status = failure_line(failures, len(runs) + len(failures))
        print(line, file=sys.stderr)
        return max(status, failed_status)
    return status


def _cmd_run_tables(args: argparse.Namespace, runs: list[TraitRun]) -> int:
    from ..render.text import extraction_table, steering_table

    print("\nExtraction (layer chosen on validation pairs; metrics on test pairs):")
    print(extraction_table(_extraction_rows(runs)))
    if not args.no_steering:
        print(
            "\nSteering (held-out: chosen on half the questions, scored on the other half; in-sample best under the "
            "coherence floor; projection gain in spread units):"
        )
        print(steering_table([(run.trait, run.steering) for run in runs]))
    print()
    print(format_outputs(runs))
    if args.no_steering:
        return 0
    if any((r.steering or {}).get("smoke_test") for r in runs):
        print(SMOKE_TEST_WARNING)
    failed = [r for r in runs if (r.steering or {}).get("status") == "judge failed"]
    for run in failed:
        scoring = (run.steering or {})["scoring"]
        print(
            f"traitvec: error: the judge failed on {scoring['n_failed']} of {scoring['n_items']} steering items of "
            f"{run.trait}: {scoring['last_error']}; rerun when it is reachable (only the failed items are asked again)",
            file=sys.stderr,
        )
    return 1 if failed else 0


def cmd_extract(args: argparse.Namespace) -> int:
    """``traitvec extract``: extraction and evaluation only, then the extraction table and the outputs."""
    runs = _run(args, steering=False, vetting=False)
    from ..render.text import extraction_table

    print(extraction_table(_extraction_rows(runs)))
    print()
    print(format_outputs(runs))
    return 0
