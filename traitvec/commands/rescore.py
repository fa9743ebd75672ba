"""``traitvec rescore``: re-judge the saved answers of finished steering evaluations with another judge."""

from __future__ import annotations

import argparse

from ..experiments import load_experiment
from ..render.text import rescore_table
from ..stages.preflight import load_traits, prepare_judge
from .settings import judge_from_args

__all__ = ["cmd_rescore"]


def cmd_rescore(args: argparse.Namespace) -> int:
    """Re-judge every named trait's latest steering results (or ``--run KEY``'s) and print the comparison.

    No model is loaded: the answers, their tokens and their fluency readings come from
    ``results.json``. Exit 0 when every trait was rescored; a missing or unreadable results file is
    an error (exit 2) naming the file, and so is a judge that does not answer its check request
    (before anything is scored or written).
    """
    from ..stages.rescore import finished_results, rescore_steering

    config = load_experiment(args.experiment, args.experiments_root)
    traits = load_traits(args.traits, args.traits_root)
    for trait in traits:  # a missing run is named before the judge is asked anything
        finished_results(trait, config.path, run=args.run)
    judge = prepare_judge(judge_from_args(args), traits)  # an unreachable judge: one line, nothing written
    for trait in traits:
        outcome = rescore_steering(trait, config.path, judge, run=args.run)
        print(f"\n{trait.name}: rescored by {judge.name} -> {outcome.path}")
        print(rescore_table(outcome.comparison))
    return 0
