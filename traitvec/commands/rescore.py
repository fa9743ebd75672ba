"""``traitvec rescore``: re-judge the saved answers of finished steering evaluations with another judge."""

from __future__ import annotations

import argparse

from ..experiments import load_experiment
from ..render.text import rescore_table
from ..stages.pipeline import load_traits
from .settings import judge_from_args

__all__ = ["cmd_rescore"]


def cmd_rescore(args: argparse.Namespace) -> int:
    """Re-judge every named trait's latest steering results (or ``--run KEY``'s) and print the comparison.

    No model is loaded: the answers, their tokens and their fluency readings come from
    ``results.json``. Exit 0 when every trait was rescored; a missing or unreadable results file is
    an error (exit 2) naming the file.
    """
    from ..stages.rescore import rescore_steering

    config = load_experiment(args.experiment, args.experiments_root)
    traits = load_traits(args.traits, args.traits_root)
    judge = judge_from_args(args)
    for trait in traits:
        outcome = rescore_steering(trait, config.path, judge, run=args.run)
        print(f"\n{trait.name}: rescored by {judge.name} -> {outcome.path}")
        print(rescore_table(outcome.comparison))
    return 0
