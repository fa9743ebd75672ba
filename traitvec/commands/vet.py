"""``traitvec vet`` (also ``extraction/vet_scenarios.py``): scenario vetting of one trait."""

from __future__ import annotations

import argparse
import sys

from ..experiments import load_experiment
from ..models import ModelPool
from ..render.text import format_vetting
from ..stages.layout import OutputLayout
from ..stages.vet import vet_trait
from ..traits import load_trait
from .settings import judge_from_args, vet_settings

__all__ = ["cmd_vet"]


def cmd_vet(args: argparse.Namespace) -> int:
    """Print the vetting report; exit 0 on pass, 1 when the separation fails."""
    config = load_experiment(args.experiment, args.experiments_root)
    trait = load_trait(args.trait, args.traits_root)
    settings = vet_settings(args)
    judge = judge_from_args(args)
    report = vet_trait(
        trait, config, ModelPool(), judge, settings=settings, force=args.force, show_progress=sys.stderr.isatty()
    )
    print(format_vetting(report))
    print(f"  written: {OutputLayout(config.path).extraction(trait.name).vetting_json}")
    return 0 if report["passed"] else 1
