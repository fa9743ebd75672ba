"""``traitvec run --executor ray [--ray-address ADDR] [--gpus-per-task N]``: the pipeline as one task per trait.

The default (``--executor local``) is the sequential in-process pipeline of
:mod:`traitvec.commands.pipeline`. With ``--executor ray`` every trait becomes a task of
:func:`~traitvec.stages.parallel.run_pipeline_tasks` on a Ray cluster (``--ray-address``; none:
``RAY_ADDRESS``, a cluster started on this machine, else a local instance started for the run).
A trait whose task fails is reported on one line; the other traits' outputs are whole.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..experiments import load_experiment
from ..stages.preflight import load_traits
from .settings import extraction_settings, flag_message, judge_settings, steering_settings

if TYPE_CHECKING:
    from ..executors import TaskFailure
    from ..stages.pipeline import TraitRun

__all__ = ["executor_options", "uses_executor", "run_on_executor", "failure_line"]

logger = logging.getLogger("traitvec.commands")


def executor_options(p: argparse.ArgumentParser) -> None:
    """``--no-batch-traits``, ``--executor``, ``--ray-address``, ``--gpus-per-task`` of ``traitvec run``."""
    g = p.add_argument_group("many traits (see docs/scale.md)")
    g.add_argument(
        "--no-batch-traits",
        action="store_true",
        help="steer one trait after another; by default the steering searches of several traits share one "
        "generate call per round (the same results, faster)",
    )
    g.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: every trait in this process (default); ray: one Ray task per trait, each with its own models",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 (default: $RAY_ADDRESS, a cluster started "
        "on this machine, else a local instance for this run)",
    )
    g.add_argument(
        "--gpus-per-task",
        type=float,
        metavar="N",
        help="GPUs per trait task (default: 1 when the cluster has GPUs, else 0; a cuda/cpu device in the config "
        "decides first)",
    )


def uses_executor(args: argparse.Namespace) -> bool:
    """True when the flags ask for an executor other than the in-process default.

    Raises:
        ConfigError: ``--ray-address`` or ``--gpus-per-task`` without ``--executor ray``.
    """
    kind = getattr(args, "executor", "local")
    if kind == "local":
        for flag, value in (("--ray-address", args.ray_address), ("--gpus-per-task", args.gpus_per_task)):
            if value is not None:
                raise ConfigError(f"{flag} applies to --executor ray only; add --executor ray or drop {flag}")
        return False
    return True


def run_on_executor(
    args: argparse.Namespace, *, steering: bool, vetting: bool
) -> tuple[list[TraitRun], list[TaskFailure]]:
    """Run one task per trait on the executor the flags name; the finished runs and the failures."""
    from ..executors import make_executor

    config = load_experiment(args.experiment, args.experiments_root)
    steer_name = args.steer_experiment or args.experiment
    steer_config = load_experiment(steer_name, args.experiments_root) if steering else None
    traits = load_traits(args.traits, args.traits_root)
    extraction = extraction_settings(args, config)
    executor = make_executor(args.executor, address=args.ray_address, num_gpus_per_task=args.gpus_per_task)
    from ..stages.parallel import run_pipeline_tasks  # loads torch: after the cheap checks
    from ..stages.vet import VetSettings

    with executor:
        outcomes = run_pipeline_tasks(
            config,
            traits,
            executor=executor,
            steer_experiment=steer_config,
            extraction=extraction,
            steering=steering_settings(args) if steering else None,
            vetting=VetSettings() if vetting else None,
            judge=judge_settings(args) if steering or vetting else None,
            vetted_only=args.vetted_only,
            traits_root=args.traits_root,
            force=args.force,
        )
    runs = [o.value for o in outcomes if o.value is not None]
    failures = [o.failure for o in outcomes if o.failure is not None]
    for failure in failures:
        logger.debug("--- %s ---\n%s", failure.name, failure.traceback.rstrip())
    return runs, failures


def failure_line(failures: list[TaskFailure], total: int) -> tuple[str, int]:
    """One line naming every failed trait with its error, and the exit status.

    The status is 2 when every failure is a traitvec error (bad input, as the sequential run
    reports it), else 1.
    """
    from ..errors import TraitvecError

    parts = []
    for failure in failures:
        message = flag_message(failure.error) if isinstance(failure.error, TraitvecError) else failure.message
        kind = failure.error_type.rsplit(".", 1)[-1]
        parts.append(f"{failure.name}: {kind}: {' '.join(message.split())}")
    line = (
        f"traitvec: error: {len(failures)} of {total} traits failed: {'; '.join(parts)}; the other traits' outputs "
        "are written, and a rerun redoes only what is missing"
    )
    status = 2 if all(isinstance(f.error, TraitvecError) for f in failures) else 1
    return line, status
