"""The steering evaluations of several traits at once, sharing one ``generate`` per round.

:func:`run_steering_evals` runs :func:`~traitvec.stages.steer.run_steering_eval` for every trait
as a cooperative thread: exactly one trait runs at a time, in trait order, until it asks for a
generation (a search round, the baseline) or finishes. When every unfinished trait is waiting, their
requests are answered together: the rows of every trait × layer × question go through one
batched :func:`~traitvec.generation.generate`, each row with its own steering, and each trait gets
its rows back. Then each trait, in order, scores its answers, reads them back and picks its next
round. So the judge, the read-back passes and the search of a trait see exactly what they would
see alone; only the generation batches are shared.

Greedy rows are independent of their batch neighbours (left padding with the attention mask and
per-row steering), so a trait's answers are those it gets alone; ``tests/test_multi_trait.py``
compares every file. Sampled generation (``samples > 1``) is not shared: each trait's request runs
by itself with its own seed, since one random stream over a larger batch would draw other tokens.

The judge is shared; each trait sees it through a view whose :meth:`usage` counts only what was
asked during that trait's turns, so each ``results.json`` records its own usage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..experiments import ExperimentConfig
from ..generation import Generation, generate
from ..judge import Judge
from ..models import LoadedModel, ModelPool
from ..traits import Trait
from .extract import ExtractionResult
from .steer import SteeringSettings, run_steering_eval

__all__ = ["GenerationRequest", "run_steering_evals", "share_generate"]

GenerateFn = Callable[..., list[Generation]]
"""The signature of :func:`~traitvec.generation.generate`."""

_PER_CALL = frozenset({"show_progress", "desc", "steering"})
_SAMPLING = frozenset({"seed", "temperature", "top_p"})


@dataclass
class GenerationRequest:
    loaded: LoadedModel
    prompts: list[Any]
    options: dict[str, Any]
    result: list[Generation] | None = None
    error: BaseException | None = None

    def group(self) -> tuple[Any, ...] | None:
        """What must match for two requests to share one call; ``None`` for a sampled one (never shared)."""
        if self.options.get("do_sample"):
            return None
        kept = {k: v for k, v in self.options.items() if k not in _PER_CALL | _SAMPLING}
        return (id(self.loaded), tuple(sorted((k, repr(v)) for k, v in kept.items())))

    def rows(self) -> list[Any]:
        steering = self.options.get("steering")
        return list(steering) if steering is not None else [[] for _ in self.prompts]


def share_generate(requests: Sequence[GenerationRequest], real: GenerateFn | None = None) -> None:
    """Answer every request, those that can share in one ``generate`` call per group (results set in place)."""
    real = real or generate
    groups: dict[Any, list[GenerationRequest]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.group() or ("alone", index), []).append(request)
    for members in groups.values():
        try:
            if len(members) == 1:
                members[0].result = real(members[0].loaded, members[0].prompts, **members[0].options)
                continue
            first = members[0]
            options = {k: v for k, v in first.options.items() if k not in ("steering", "desc")}
            options["desc"] = f"{first.options.get('desc', 'generate')} ({len(members)} traits)"
            prompts = [p for m in members for p in m.prompts]
            rows = [r for m in members for r in m.rows()]
            out = real(first.loaded, prompts, steering=rows, **options)
            start = 0
            for member in members:
                member.result, start = out[start : start + len(member.prompts)], start + len(member.prompts)
        except BaseException as err:  # every trait of the group gets the error, raised in its own thread
            for member in members:
                member.error = err


@dataclass
class _Lane:
    """One trait's cooperative thread and what it is waiting for."""

    resume: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    request: GenerationRequest | None = None
    done: bool = False
    value: Any = None
    error: BaseException | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class _Scheduler:
    """Runs lanes one at a time; a lane gives control back when it asks for a generation or finishes."""

    def __init__(self, n: int, judge: Judge) -> None:
        self.lanes = [_Lane() for _ in range(n)]
        self.judge = judge
        self._yielded = threading.Semaphore(0)
        self._turn_start: dict[str, Any] = {}
        self._cancelled: BaseException | None = None

    def generate_for(self, index: int) -> GenerateFn:
        lane = self.lanes[index]

        def shared(loaded: LoadedModel, prompts: Sequence[Any], **options: Any) -> list[Generation]:
            lane.request = GenerationRequest(loaded, list(prompts), dict(options))
            self._yielded.release()
            lane.resume.acquire()
            request, lane.request = lane.request, None
            if request.error is not None:
                raise request.error
            assert request.result is not None
            return request.result

        return shared

    def start(self, index: int, work: Callable[[], Any]) -> threading.Thread:
        lane = self.lanes[index]

        def body() -> None:
            lane.resume.acquire()
            try:
                if self._cancelled is not None:
                    raise self._cancelled
                lane.value = work()
            except BaseException as err:  # re-raised by run_steering_evals, in trait order
                lane.error = err
            lane.done = True
            self._yielded.release()

        thread = threading.Thread(target=body, name=f"traitvec-steer-{index}", daemon=True)
        thread.start()
        return thread

    def turn(self, index: int) -> None:
        """Let lane ``index`` run until it yields; what the judge counted meanwhile is that lane's."""
        lane = self.lanes[index]
        self._turn_start = dict(self.judge.usage())
        lane.resume.release()
        self._yielded.acquire()
        lane.usage = _added(lane.usage, self._turn_start, self.judge.usage())
        self._turn_start = {}

    def usage_of(self, index: int) -> dict[str, Any]:
        """Lane ``index``'s usage so far, including its turn in progress (called from within it)."""
        lane = self.lanes[index]
        return _added(lane.usage, self._turn_start, self.judge.usage()) if self._turn_start else dict(lane.usage)

    def run(self) -> None:
        """Turns until every lane is done. An interrupt (``KeyboardInterrupt`` here or inside a lane)
        stops every lane: each waiting one gets the interrupt raised in its own thread."""
        active = list(range(len(self.lanes)))
        try:
            while active:
                for index in active:
                    self.turn(index)
                    error = self.lanes[index].error
                    if error is not None and not isinstance(error, Exception):
                        raise error
                active = [i for i in active if not self.lanes[i].done]
                waiting = [self.lanes[i].request for i in active]
                share_generate([r for r in waiting if r is not None])
        except BaseException as err:
            self.cancel(err)
            raise

    def cancel(self, err: BaseException) -> None:
        """Let every unfinished lane end by raising ``err`` (those not started never start)."""
        self._cancelled = err
        for lane in self.lanes:
            if not lane.done:
                if lane.request is not None:
                    lane.request.error = err
                lane.resume.release()


def _added(total: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``total`` plus what changed from ``before`` to ``after`` (numbers add; ``last_error`` as it changed)."""
    found = dict(total)
    for key, value in after.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            earlier = before.get(key, 0)
            found[key] = found.get(key, 0) + value - (earlier if isinstance(earlier, int | float) else 0)
        elif key == "last_error":
            if value != before.get(key):
                found[key] = value
            else:
                found.setdefault(key, None)
        else:
            found[key] = value
    return found


class _JudgeView:
    """The shared judge as one trait sees it: every call goes to it; :meth:`usage` is the trait's own."""

    def __init__(self, judge: Judge, usage: Callable[[], dict[str, Any]]) -> None:
        self._judge = judge
        self._usage = usage

    def usage(self) -> dict[str, Any]:
        return self._usage()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._judge, name)


def run_steering_evals(
    items: Sequence[tuple[Trait, ExtractionResult]],
    steer_config: ExperimentConfig,
    pool: ModelPool,
    judge: Judge,
    *,
    settings: SteeringSettings | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """:func:`~traitvec.stages.steer.run_steering_eval` of every trait, their generations shared per round.

    Returns each trait's ``results.json`` document, in the order given, as running each alone
    would. When a trait fails, the others still finish (and write their outputs); then the first
    failure, in trait order, is raised.

    Example:
        >>> results = run_steering_evals([(trait_a, extraction_a), (trait_b, extraction_b)],
        ...                              steer_config, ModelPool(), judge)
    """
    scheduler = _Scheduler(len(items), judge)

    def work(index: int) -> Callable[[], Any]:
        trait, extraction = items[index]
        view = cast(Judge, _JudgeView(judge, lambda: scheduler.usage_of(index)))
        return lambda: run_steering_eval(
            trait,
            extraction,
            steer_config,
            pool,
            view,
            settings=settings,
            force=force,
            show_progress=show_progress,
            generate_fn=scheduler.generate_for(index),
        )

    threads = [scheduler.start(index, work(index)) for index in range(len(items))]
    try:
        scheduler.run()
    finally:
        for thread in threads:
            thread.join(timeout=60)
    for lane in scheduler.lanes:
        if lane.error is not None:
            raise lane.error
    return [cast(dict[str, Any], lane.value) for lane in scheduler.lanes]
