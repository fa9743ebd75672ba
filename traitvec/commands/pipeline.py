"""``traitvec run`` (also ``extraction/run_pipeline.py``) and ``traitvec extract``: the pipeline behind flags."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..experiments import load_experiment
from ..render.text import extraction_table, steering_table
from ..stages.pipeline import TraitRun, load_traits, run_pipeline
from .settings import extraction_settings, judge_factory, steering_settings

if TYPE_CHECKING:
    from ..evaluation import Evaluation

__all__ = ["cmd_run", "cmd_extract"]

SMOKE_TEST_WARNING = (
    "\nWARNING: scored by a tiny local judge: these numbers are a smoke test, not a measurement. "
    "Set OPENAI_API_KEY (and OPENAI_BASE_URL for another server) for real judging."
)


def _run(args: argparse.Namespace, *, steering: bool, vetting: bool) -> list[TraitRun]:
    """Load and validate everything the flags name, in the order errors are reported, then run the pipeline."""
    from ..stages.vet import VetSettings

    config = load_experiment(args.experiment, args.experiments_root)
    steer_config = None
    if steering:
        steer_config = load_experiment(args.steer_experiment or args.experiment, args.experiments_root)
    traits = load_traits(args.traits, args.traits_root)
    extraction = extraction_settings(args, config)
    return run_pipeline(
        config,
        traits,
        steer_experiment=steer_config,
        extraction=extraction,
        steering=steering_settings(args) if steering else None,
        vetting=VetSettings() if vetting else None,
        judge=judge_factory(args) if steering or vetting else None,
        vetted_only=args.vetted_only,
        force=args.force,
        show_progress=sys.stderr.isatty(),
    )


def _extraction_rows(runs: list[TraitRun]) -> list[tuple[str, dict[str, Evaluation]]]:
    rows = []
    for run in runs:
        assert run.extraction is not None
        rows.append((run.trait, run.extraction.evaluations))
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    """``traitvec run`` / ``extraction/run_pipeline.py``: every stage, then the extraction and steering tables.

    Exits 1 when the judge failed on most of a trait's steering items (one line per such trait,
    with the judge's last error): those numbers are not results, and a rerun re-asks the failed items.
    """
    runs = _run(args, steering=not args.no_steering, vetting=args.vet)
    print("\nExtraction (layer chosen on validation pairs; metrics on test pairs):")
    print(extraction_table(_extraction_rows(runs)))
    if args.no_steering:
        return 0
    print(
        "\nSteering (held-out: chosen on half the questions, scored on the other half; in-sample best under the "
        "coherence floor; projection gain in spread units):"
    )
    print(steering_table([(run.trait, run.steering) for run in runs]))
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
    """``traitvec extract``: extraction and evaluation only, then the extraction table and each trait's folder."""
    runs = _run(args, steering=False, vetting=False)
    print(extraction_table(_extraction_rows(runs)))
    for run in runs:
        assert run.extraction is not None
        print(f"{run.trait}: {run.extraction.folder}")
    return 0
