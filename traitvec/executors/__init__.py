"""Running independent tasks (one per trait × experiment) in this process or on a Ray cluster.

A :class:`Task` is a named call: a picklable function with its arguments, e.g. "run trait
``hum/optimism`` on experiments ``gemma-2-2b`` / ``gemma-2-2b-it`` with these settings". An
:class:`Executor` runs a list of them and hands back their results in the order given:

- :class:`LocalExecutor` (the default) runs them one after another in this process;
- :class:`RayExecutor` sends each one to a Ray cluster (an existing one at ``address``, or a
  local instance it starts), with the CPUs and GPUs each task asks for.

Failures. A task that raises does not stop the others: every task runs to its end, then
:meth:`Executor.run` raises :class:`ExecutorError`, which names every failed task with its error
and keeps the outcomes of the tasks that succeeded. :meth:`Executor.run_all` returns one
:class:`Outcome` per task instead of raising. Tasks write their own outputs, atomically
(:mod:`traitvec._io`), so a failed task leaves no half-written file behind and the files of the
others are whole.

Resources. A task's :class:`Resources` overrides the executor's per-task defaults field by field;
:func:`resources_for` derives them from the experiment configs a task uses (a ``cpu`` experiment
needs no GPU, a ``cuda`` one needs one; ``auto`` and ``device_map`` leave it to the executor).

Ray is optional (``pip install 'traitvec[cluster]'``) and imported only when a
:class:`RayExecutor` first runs something. The package: ``tasks`` (the shared types and
:class:`LocalExecutor`), ``ray_executor`` (:class:`RayExecutor`). ``docs/scale.md`` says how to
point it at a real cluster.
"""

from __future__ import annotations

from typing import Literal

from ..errors import ConfigError
from .ray_executor import RayExecutor
from .tasks import (
    Executor,
    ExecutorError,
    LocalExecutor,
    Outcome,
    Resources,
    Task,
    TaskFailure,
    resources_for,
    values,
)

__all__ = [
    "Task",
    "Resources",
    "Outcome",
    "TaskFailure",
    "ExecutorError",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "EXECUTORS",
    "make_executor",
    "resources_for",
    "values",
]

EXECUTORS: tuple[str, ...] = ("local", "ray")


def make_executor(
    kind: Literal["local", "ray"] | str = "local",
    *,
    address: str | None = None,
    num_gpus_per_task: float | None = None,
    num_cpus_per_task: float = 1.0,
) -> LocalExecutor | RayExecutor:
    """Build an executor by name (``"local"`` or ``"ray"``), as the command line's ``--executor`` does.

    ``address`` and the per-task resources apply to Ray only; ``num_gpus_per_task=None`` gives each
    task one GPU when the cluster has GPUs and none otherwise (the experiments' ``device = "auto"``
    then finds the GPU Ray assigned).

    Example:
        >>> make_executor("ray", address="auto", num_gpus_per_task=1)
        RayExecutor(address='auto', num_cpus_per_task=1.0, num_gpus_per_task=1, max_retries=0)
    """
    if kind == "local":
        if address is not None:
            raise ConfigError(
                f"make_executor(address=) = {address!r} only applies to the ray executor; drop it or use kind='ray'",
                setting="make_executor(address=)",
            )
        if num_gpus_per_task is not None:
            raise ConfigError(
                f"make_executor(num_gpus_per_task=) = {num_gpus_per_task!r} only applies to the ray executor; drop "
                "it or use kind='ray'",
                setting="make_executor(num_gpus_per_task=)",
            )
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, num_gpus_per_task=num_gpus_per_task, num_cpus_per_task=num_cpus_per_task)
    raise ConfigError(
        f"make_executor(kind=) = {kind!r} is not one of {', '.join(EXECUTORS)}", setting="make_executor(kind=)"
    )
