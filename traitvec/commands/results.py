"""``traitvec results cat/trait [--experiment S]``: every steering run of a trait, newest last."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..experiments import list_experiments, load_experiment
from ..render.text import fmt, format_table, held_out_cell
from ..stages.layout import OutputLayout
from ..stages.runs import SteeringRun, list_runs

__all__ = ["cmd_results", "RESULTS_HEADER"]

RESULTS_HEADER = [
    "",
    "experiment",
    "run key",
    "finished",
    "status",
    "questions",
    "samples",
    "layers",
    "floor",
    "held-out gain [95% CI]",
    "in-sample best",
]


def _settings_cells(run: SteeringRun) -> list[str]:
    s: Mapping[str, Any] = run.settings or {}
    layers = s.get("layers")
    return [
        fmt(run.n_questions),
        fmt(s.get("samples")),
        ",".join(str(x) for x in layers) if layers else "-",
        fmt(s.get("coherence_floor"), 0),
    ]


def _best_cell(run: SteeringRun) -> str:
    best = run.best
    if not best:
        return "-"
    return f"L{best['layer']} × {best['coefficient']:+.3g}: {fmt(best['trait_gain'])}"


def cmd_results(args: argparse.Namespace) -> int:
    """List the steering runs of ``args.trait`` in one experiment (``--experiment``) or in every experiment."""
    root = args.experiments_root
    names = [args.experiment] if args.experiment else list_experiments(root)
    rows = []
    for name in names:
        config = load_experiment(name, root)
        for run in list_runs(OutputLayout(config.path), args.trait):
            rows.append(
                [
                    "*" if run.latest else "",
                    name,
                    run.key,
                    (run.finished_at or "-")[:19].replace("T", " "),
                    run.status if run.rounds is None else f"{run.status} ({run.rounds} rounds)",
                    *_settings_cells(run),
                    held_out_cell({"held_out": run.held_out}),
                    _best_cell(run),
                ]
            )
    where = f"experiment {args.experiment}" if args.experiment else f"any experiment under {root}"
    if not rows:
        print(f"no steering runs of {args.trait} in {where}")
        return 0
    print(f"Steering runs of {args.trait} ({where}; * = the one steering/{args.trait}/results.json copies):")
    print(format_table(rows, RESULTS_HEADER))
    return 0
