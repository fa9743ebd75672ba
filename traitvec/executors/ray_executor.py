"""The Ray executor: each task becomes one Ray task, with the CPUs and GPUs it asks for.

Ray is optional (``pip install 'traitvec[cluster]'``) and imported only when a
:class:`RayExecutor` first runs something, never at import.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..errors import ConfigError
from .tasks import Outcome, Task, TaskFailure, _check_names, _execute, _failure, _log, _qualified, values

__all__ = ["RayExecutor"]

logger = logging.getLogger("traitvec.executors")

T = TypeVar("T")


class RayExecutor:
    """Runs each task as a Ray task on an existing cluster, or on a local Ray instance.

    Nothing happens at construction. The first :meth:`run_all` connects: to the cluster already
    joined in this process (``ray.init`` called before), else ``ray.init(address=address)``, which
    for ``None`` joins the cluster named by ``RAY_ADDRESS`` or started on this machine by ``ray
    start``, and otherwise starts a local instance. :meth:`close` shuts down only an instance this
    executor started. Before submitting, it checks that every task fits on one live node (a task
    asking for a GPU a cluster does not have would wait forever); ``check_resources=False`` skips
    that for autoscaling clusters.

    Args:
        address: ``None``, ``"auto"`` (a cluster started with ``ray start`` on this machine),
            ``"HOST:6379"`` (from a cluster node) or ``"ray://HOST:10001"`` (Ray Client).
        num_gpus_per_task: GPUs of a task whose :class:`Resources` leaves ``num_gpus`` unset;
            ``None``: 1 when a live node of the cluster has a GPU, else 0 (decided at connection).
        num_cpus_per_task: CPUs of a task whose :class:`Resources` leaves ``num_cpus`` unset.
        max_retries: times Ray reruns a task whose worker died (tasks resume, so this is safe);
            an exception raised by the task is never retried.
        runtime_env: Ray runtime environment for the job (``{"py_modules": [...]}``,
            ``{"working_dir": ...}``, ``{"pip": [...]}``) when workers lack traitvec or the data.
        init_options: more keyword arguments for ``ray.init`` (``num_cpus``, ``include_dashboard``…).
        check_resources: refuse tasks that fit on no live node.

    Example:
        >>> with RayExecutor(address="auto", num_gpus_per_task=1) as executor:
        ...     runs = executor.run(tasks)
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_gpus_per_task: float | None = 0.0,
        num_cpus_per_task: float = 1.0,
        max_retries: int = 0,
        runtime_env: Mapping[str, Any] | None = None,
        init_options: Mapping[str, Any] | None = None,
        check_resources: bool = True,
    ) -> None:
        for setting, value in (("num_gpus_per_task", num_gpus_per_task), ("num_cpus_per_task", num_cpus_per_task)):
            if value is None and setting == "num_gpus_per_task":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"RayExecutor({setting}=) = {value!r}; use a number >= 0"
                    + (" (or None: 1 when the cluster has GPUs)" if setting == "num_gpus_per_task" else ""),
                    setting=f"RayExecutor({setting}=)",
                )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(
                f"RayExecutor(max_retries=) = {max_retries!r}; use an integer >= 0", setting="RayExecutor(max_retries=)"
            )
        self.address = address
        self.num_gpus_per_task = num_gpus_per_task
        self.num_cpus_per_task = num_cpus_per_task
        self.max_retries = max_retries
        self.runtime_env = dict(runtime_env) if runtime_env is not None else None
        self.init_options = dict(init_options or {})
        self.check_resources = check_resources
        self._started = False
        self._gpus: float = 0.0 if num_gpus_per_task is None else num_gpus_per_task

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError as err:
            raise ConfigError(
                f"RayExecutor needs Ray ({err}); install it with pip install 'traitvec[cluster]' (or 'ray>=2.40')",
                setting="RayExecutor",
            ) from None
        if not ray.is_initialized():
            options = dict(self.init_options)
            if self.runtime_env is not None:
                options["runtime_env"] = self.runtime_env
            ray.init(address=self.address, **options)
            self._started = True
        if self.num_gpus_per_task is None:
            has_gpu = any(node.get("GPU", 0.0) > 0 for node in _live_nodes(ray))
            self._gpus = 1.0 if has_gpu else 0.0
            logger.info("RayExecutor: %g GPU per task (the cluster has %s)", self._gpus, "GPUs" if has_gpu else "none")
        return ray

    def _options(self, task: Task[Any]) -> dict[str, Any]:
        res = task.resources
        options: dict[str, Any] = {
            "name": task.name,
            "num_cpus": self.num_cpus_per_task if res.num_cpus is None else res.num_cpus,
            "num_gpus": self._gpus if res.num_gpus is None else res.num_gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
        }
        if res.memory is not None:
            options["memory"] = res.memory
        return options

    def _check_fits(self, ray: Any, tasks: Sequence[Task[Any]], options: list[dict[str, Any]]) -> None:
        nodes = _live_nodes(ray)
        for task, opts in zip(tasks, options, strict=True):
            need = {"CPU": opts["num_cpus"], "GPU": opts["num_gpus"], "memory": opts.get("memory", 0)}
            if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
                continue
            most = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in ("CPU", "GPU")}
            raise ConfigError(
                f"task {task.name!r} asks for {opts['num_cpus']:g} CPU and {opts['num_gpus']:g} GPU but the largest "
                f"live Ray node has {most['CPU']:g} CPU and {most['GPU']:g} GPU; lower "
                "RayExecutor(num_gpus_per_task=) or the task's Resources, add nodes, or pass check_resources=False "
                "on an autoscaling cluster",
                setting="RayExecutor(num_gpus_per_task=)",
            )

    def run_all(self, tasks: Sequence[Task[T]]) -> list[Outcome[T]]:
        """Submit every task, wait for all of them, and return their outcomes in task order."""
        _check_names(tasks)
        if not tasks:
            return []
        ray = self._ray()
        options = [self._options(task) for task in tasks]
        if self.check_resources:
            self._check_fits(ray, tasks, options)
        remote = ray.remote(_execute)
        outcomes: dict[int, Outcome[T]] = {}
        pending: dict[Any, int] = {}
        started = time.perf_counter()
        try:
            for index, (task, opts) in enumerate(zip(tasks, options, strict=True)):
                try:
                    ref = remote.options(**opts).remote(task.fn, task.args, dict(task.kwargs), task.name, index, True)
                except Exception as err:  # e.g. an argument Ray cannot serialise: this task fails, others run
                    text = traceback.format_exc()
                    failure = _failure(task.name, index, err, text, portable=False)
                    outcomes[index] = Outcome(task.name, index, None, failure, 0.0)
                    _log(outcomes[index])
                    continue
                pending[ref] = index
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    outcomes[index] = self._collect(ray, ref, tasks[index], index, started)
                    _log(outcomes[index])
        except BaseException:
            for ref in pending:  # interrupted: stop what is still queued or running
                ray.cancel(ref, force=True)
            raise
        return [outcomes[i] for i in range(len(tasks))]

    @staticmethod
    def _collect(ray: Any, ref: Any, task: Task[T], index: int, started: float) -> Outcome[T]:
        try:
            outcome: Outcome[T] = ray.get(ref)
        except ray.exceptions.RayError as err:  # the worker died, was cancelled or could not run the task
            text = str(err).strip()
            lines = [line for line in text.splitlines() if line.strip()]
            failure = TaskFailure(task.name, index, _qualified(err), lines[-1] if lines else "", text, err)
            return Outcome(task.name, index, None, failure, time.perf_counter() - started)
        return outcome

    def run(self, tasks: Sequence[Task[T]]) -> list[T]:
        """Run every task; their values in order, or :class:`ExecutorError` after all have finished."""
        return values(self.run_all(tasks))

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a cluster joined before is left alone)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_cpus_per_task={self.num_cpus_per_task!r}, "
            f"num_gpus_per_task={self.num_gpus_per_task!r}, max_retries={self.max_retries})"
        )


def _live_nodes(ray: Any) -> list[dict[str, float]]:
    """The resources of every live node of the cluster Ray is connected to."""
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
