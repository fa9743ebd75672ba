"""``traitvec vet`` (also ``extraction/vet_scenarios.py``): scenario vetting of one trait."""

from __future__ import annotations

import argparse
import sys

from ..experiments import load_experiment
from ..stages.preflight import load_traits, prepare_judge
from .settings import judge_settings, vet_settings

__all__ = ["cmd_vet"]


def cmd_vet(args: argparse.Namespace) -> int:
    """Print the vetting report and where it was written; exit 0 on pass, 1 when the separation fails.

    Everything that can fail cheaply fails before the model loads: the experiment, the trait, the
    settings, the judge (built and checked with one request), and the experiment folder being writable.
    """
    config = load_experiment(args.experiment, args.experiments_root)
    (trait,) = load_traits([args.trait], args.traits_root)
    judge = prepare_judge(judge_settings(args))
    from ..render.text import format_vetting  # these load torch: after the cheap checks
    from ..stages.layout import OutputLayout
    from ..stages.pipeline import CheckedPool
    from ..stages.vet import vet_trait

    settings = vet_settings(args)
    pool = CheckedPool("load_experiment(root=)")
    report = vet_trait(
        trait, config, pool, judge, settings=settings, force=args.force, show_progress=sys.stderr.isatty()
    )
    print(format_vetting(report))
    print(f"  written: {OutputLayout(config.path).extraction(trait.name).vetting_json}")
    return 0 if report["passed"] else 1
