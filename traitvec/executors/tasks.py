"""Tasks, their outcomes and failures, and the in-process executor.

The types every executor shares: a :class:`Task` (a named call), the :class:`Resources` it asks
for, the :class:`Outcome` it produced, a :class:`TaskFailure` and :class:`ExecutorError`; the
:class:`Executor` protocol; :class:`LocalExecutor`; and :func:`resources_for`, which reads a
task's GPU needs from the experiment configs it uses.
"""

from __future__ import annotations

import logging
import pickle
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from ..errors import ConfigError
from ..experiments import ExperimentConfig

__all__ = [
    "Task",
    "Resources",
    "Outcome",
    "TaskFailure",
    "ExecutorError",
    "Executor",
    "LocalExecutor",
    "values",
    "resources_for",
]

logger = logging.getLogger("traitvec.executors")

T = TypeVar("T")


@dataclass(frozen=True)
class Resources:
    """What one task needs from the machine that runs it; ``None`` means the executor's default.

    Attributes:
        num_cpus: CPU cores reserved for the task.
        num_gpus: GPUs reserved (fractions share a GPU); Ray sets ``CUDA_VISIBLE_DEVICES`` to them.
        memory: bytes of host memory reserved (Ray schedules by it; nothing enforces it).
    """

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus", "memory"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ConfigError(
                    f"Resources.{name} = {value!r} is not a number >= 0; use a count such as 1 (or None for the "
                    "executor's default)",
                    setting=f"Resources.{name}",
                )


@dataclass(frozen=True)
class Task(Generic[T]):
    """One named call: ``fn(*args, **kwargs)``.

    For :class:`RayExecutor` the function, its arguments and its result must be picklable (a
    module-level function with plain-data arguments such as experiment configs and settings
    dataclasses; not a loaded model or an open judge client).

    Args:
        name: unique among the tasks of one run; failures are reported by it.
        fn: the function to call.
        args: positional arguments.
        kwargs: keyword arguments.
        resources: what the task needs; fields left ``None`` take the executor's defaults.

    Example:
        >>> Task("hum/optimism@gemma-2-2b", run_trait, kwargs={"trait": "hum/optimism"},
        ...      resources=resources_for(base, steer))
    """

    name: str
    fn: Callable[..., T]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"Task.name = {self.name!r}; give every task a non-empty name", setting="Task.name")
        if not callable(self.fn):
            raise ConfigError(f"Task {self.name!r}: fn = {self.fn!r} is not callable", setting="Task.fn")


@dataclass(frozen=True)
class TaskFailure:
    """Why one task failed.

    Attributes:
        name: the task's name.
        index: its position in the list given to the executor.
        error_type: the exception's qualified class name (``traitvec.errors.ConfigError``).
        message: the exception's message.
        traceback: the formatted traceback, from the process that ran the task.
        error: the exception itself where it survived the trip back (``None`` if it did not pickle).
    """

    name: str
    index: int
    error_type: str
    message: str
    traceback: str = ""
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"task {self.name!r} failed: {self.error_type}: {self.message}"


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one task produced: its value, or its failure.

    Attributes:
        name: the task's name.
        index: its position in the list given to the executor.
        value: the function's return value (``None`` when it failed).
        failure: why it failed, or ``None``.
        seconds: wall time of the call, measured where it ran.
    """

    name: str
    index: int
    value: T | None
    failure: TaskFailure | None
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the task returned normally."""
        return self.failure is None


class ExecutorError(RuntimeError):
    """One or more tasks failed; raised after every task has finished.

    Attributes:
        failures: one :class:`TaskFailure` per failed task, in task order.
        outcomes: every task's :class:`Outcome` (the successful ones keep their values).
    """

    def __init__(self, failures: Sequence[TaskFailure], outcomes: Sequence[Outcome[Any]]) -> None:
        self.failures = tuple(failures)
        self.outcomes = tuple(outcomes)
        lines = [f"{len(self.failures)} of {len(self.outcomes)} tasks failed:"] + [f"  {f}" for f in self.failures]
        super().__init__("\n".join(lines))
        for failure in self.failures:
            if failure.traceback:
                self.add_note(f"--- {failure.name} ---\n{failure.traceback.rstrip()}")

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the failed tasks."""
        return tuple(f.name for f in self.failures)


class Executor(Protocol):
    """Runs named tasks and returns their results in the order given."""

    def run_all(self, tasks: Sequence[Task[T]]) -> list[Outcome[T]]:
        """Run every task; one :class:`Outcome` per task, failures included, in task order."""
        ...

    def run(self, tasks: Sequence[Task[T]]) -> list[T]:
        """Run every task and return their values in order; :class:`ExecutorError` if any failed."""
        ...


def values(outcomes: Sequence[Outcome[T]]) -> list[T]:
    """The values of ``outcomes`` in order, or :class:`ExecutorError` naming every failed task."""
    failures = [o.failure for o in outcomes if o.failure is not None]
    if failures:
        raise ExecutorError(failures, outcomes)
    return [cast(T, o.value) for o in outcomes]  # nothing failed, so every value is set


def _check_names(tasks: Sequence[Task[Any]]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if not isinstance(task, Task):
            raise ConfigError(f"executors run Task objects, got {type(task).__name__}; wrap the call in Task(name, fn)")
        if task.name in seen:
            raise ConfigError(f"two tasks are named {task.name!r}; task names must be unique within one run")
        seen.add(task.name)


def _qualified(error: BaseException) -> str:
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _failure(name: str, index: int, error: BaseException, text: str, *, portable: bool) -> TaskFailure:
    kept: BaseException | None = error
    if portable:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # an exception that cannot make the trip back is reported by type and text
            kept = None
    return TaskFailure(name, index, _qualified(error), str(error), text, kept)


def _execute(
    fn: Callable[..., T], args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, index: int, portable: bool
) -> Outcome[T]:
    """Call one task, timing it; an exception becomes the outcome's failure (runs where the task runs)."""
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as err:  # a task's failure is data; KeyboardInterrupt and SystemExit still propagate
        failure = _failure(name, index, err, traceback.format_exc(), portable=portable)
        return Outcome(name, index, None, failure, time.perf_counter() - start)
    return Outcome(name, index, value, None, time.perf_counter() - start)


def _log(outcome: Outcome[Any]) -> None:
    if outcome.failure is None:
        logger.info("task %s finished in %.1f s", outcome.name, outcome.seconds)
    else:
        logger.warning("%s (after %.1f s)", outcome.failure, outcome.seconds)


class LocalExecutor:
    """Runs tasks one after another in this process (the default executor).

    Example:
        >>> LocalExecutor().run([Task("a", len, ("abc",)), Task("b", len, ("de",))])
        [3, 2]
    """

    def run_all(self, tasks: Sequence[Task[T]]) -> list[Outcome[T]]:
        """Run every task in order; a failing task is recorded and the next one starts."""
        _check_names(tasks)
        outcomes = []
        for index, task in enumerate(tasks):
            outcome = _execute(task.fn, task.args, task.kwargs, task.name, index, False)
            _log(outcome)
            outcomes.append(outcome)
        return outcomes

    def run(self, tasks: Sequence[Task[T]]) -> list[T]:
        """Run every task; their values in order, or :class:`ExecutorError` after all have run."""
        return values(self.run_all(tasks))

    def close(self) -> None:
        """Nothing to release (for symmetry with :meth:`RayExecutor.close`)."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "LocalExecutor()"


def resources_for(*configs: ExperimentConfig, gpus: float | None = None, cpus: float | None = None) -> Resources:
    """The resources a task using these experiments needs.

    GPUs: ``gpus`` when given; else 1 when any experiment names a ``cuda`` device; else ``None`` (the
    executor's ``num_gpus_per_task``) when any uses ``device = "auto"`` or a ``device_map`` (a sharded
    model needs as many GPUs as its map spreads it over, which only you know: pass ``gpus=``); else
    0 (every experiment on ``cpu``/``mps``). Under Ray a task sees only the GPUs it was given, as
    ``cuda:0``, ``cuda:1``…: an experiment pinned to ``cuda:3`` would not find its device.

    Args:
        configs: the experiments the task loads models for (base and steer).
        gpus: GPUs per task, overriding what the configs imply.
        cpus: CPU cores per task (``None``: the executor's ``num_cpus_per_task``).

    Example:
        >>> resources_for(load_experiment("llama-3.1-8b"), load_experiment("llama-3.1-8b-instruct"), gpus=1)
        Resources(num_cpus=None, num_gpus=1, memory=None)
    """
    if gpus is not None:
        return Resources(num_cpus=cpus, num_gpus=gpus)
    needs: list[float | None] = []
    for config in configs:
        if config.device_map is not None or config.device == "auto":
            needs.append(None)
        else:
            needs.append(1.0 if config.device.startswith("cuda") else 0.0)
    known = [n for n in needs if n is not None]
    if known and max(known) > 0:
        return Resources(num_cpus=cpus, num_gpus=max(known))
    return Resources(num_cpus=cpus, num_gpus=None if None in needs or not needs else 0.0)
