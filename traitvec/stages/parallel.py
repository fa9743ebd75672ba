"""The pipeline as executor tasks: one task per trait, run in this process or on a Ray cluster.

:func:`run_pipeline_tasks` checks everything cheap in the calling process (the experiments, every
trait, and the judge, built and checked with one request by
:func:`~traitvec.stages.preflight.prepare_judge`), then hands one :class:`~traitvec.executors.Task`
per trait to an executor (:class:`~traitvec.executors.LocalExecutor` by default,
:class:`~traitvec.executors.RayExecutor` for a cluster). Each task is
:func:`~traitvec.stages.pipeline.run_pipeline` for its one trait, with its
own model pool and its own judge, so it writes exactly the files the sequential run writes.

What travels to a task is plain data: the experiment configs, the validated :class:`~traitvec.traits.Trait`
objects (so the data a task uses is the data that was checked), the settings dataclasses, the
judge's :class:`~traitvec.judge.JudgeSettings` and the caller's working folder (relative paths in
configs and outputs mean the same there). The judge is rebuilt inside the task from its settings.
Its API key never travels: a task reads ``OPENAI_API_KEY`` from the environment of the worker
that runs it, and fails with a message naming the variable when the caller had a key and the
worker has none. The base URL and model the caller resolved from its environment are pinned in
the settings, so every task asks the judge the caller checked.

Example:
    >>> from traitvec.executors import RayExecutor
    >>> with RayExecutor(address="auto", num_gpus_per_task=1) as executor:
    ...     runs = run_pipeline_tasks("gemma-2-2b", ["states/optimism", "styles/formality"],
    ...                               steer_experiment="gemma-2-2b-it", executor=executor)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ..errors import ConfigError, JudgeError
from ..executors import Executor, LocalExecutor, Outcome, Resources, Task, resources_for
from ..experiments import DEFAULT_EXPERIMENTS_ROOT, ExperimentConfig
from ..judge import DEFAULT_JUDGE_MODEL, JudgeSettings
from ..traits import DEFAULT_TRAITS_ROOT, Trait
from .extract import ExtractionSettings
from .pipeline import DEFAULT_STEERING, TraitRun, load_traits, resolve_experiments, run_pipeline
from .preflight import prepare_judge
from .steer import SteeringSettings
from .vet import VetSettings

__all__ = ["API_KEY_ENV", "pipeline_tasks", "run_pipeline_tasks", "run_trait_task", "pin_judge"]

API_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable a task reads the judge's API key from, on the worker that runs it."""


def pin_judge(settings: JudgeSettings | None) -> tuple[JudgeSettings, bool]:
    """The judge settings a task rebuilds, with what the caller's environment chose fixed in them.

    ``make_judge`` reads ``OPENAI_BASE_URL``, ``TRAITVEC_JUDGE_MODEL`` and ``OPENAI_API_KEY`` when
    the judge is made; a worker's environment may differ from the caller's. The base URL and model
    are written into the settings; with neither a key nor a URL the local smoke-test judge is
    chosen explicitly. The key is not copied: the second value says whether the caller had one,
    so that a task on a worker without it fails clearly instead of sending unauthenticated requests.
    """
    settings = settings if settings is not None else JudgeSettings()
    if settings.local:
        return settings, False
    has_key = bool(os.environ.get(API_KEY_ENV))
    url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not has_key and not url:
        return dataclasses.replace(settings, local=True), False
    model = settings.model or os.environ.get("TRAITVEC_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
    return dataclasses.replace(settings, base_url=url, model=model), has_key


def run_trait_task(
    config: ExperimentConfig,
    trait: Trait,
    *,
    steer_config: ExperimentConfig | None,
    extraction: ExtractionSettings | None,
    steering: SteeringSettings | None,
    vetting: VetSettings | None,
    judge: JudgeSettings | None,
    needs_key: bool,
    vetted_only: bool,
    force: bool,
    cwd: str,
) -> TraitRun:
    """One pipeline task: :func:`~traitvec.stages.pipeline.run_pipeline` for one trait, from ``cwd``.

    Runs where the executor puts it (a Ray worker process, or this one). Relative paths are read
    from ``cwd``, the caller's working folder, which must exist there (a shared filesystem).

    Raises:
        JudgeError: the caller had an API key and this worker's environment has none.
        ConfigError: ``cwd`` does not exist on this machine.
    """
    if judge is not None and needs_key and not os.environ.get(API_KEY_ENV):
        raise JudgeError(
            f"the judge needs {API_KEY_ENV}, which is set where the run started but not on this worker "
            f"(host {os.uname().nodename}); export it before `ray start` on every node, or pass it in the "
            "Ray runtime_env's env_vars"
        )
    if not os.path.isdir(cwd):
        raise ConfigError(
            f"the run's working folder {cwd} does not exist on this worker (host {os.uname().nodename}); run "
            "from a folder every node sees at the same path (a shared filesystem)"
        )
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        [run] = run_pipeline(
            config,
            [trait],
            steer_experiment=steer_config,
            extraction=extraction,
            steering=steering,
            vetting=vetting,
            judge=judge.make if judge is not None else None,
            vetted_only=vetted_only,
            force=force,
        )
    finally:
        os.chdir(previous)
    return run


def pipeline_tasks(
    config: ExperimentConfig,
    traits: Sequence[Trait],
    *,
    steer_config: ExperimentConfig | None = None,
    extraction: ExtractionSettings | None = None,
    steering: SteeringSettings | None = DEFAULT_STEERING,
    vetting: VetSettings | None = None,
    judge: JudgeSettings | None = None,
    vetted_only: bool = False,
    force: bool = False,
    gpus: float | None = None,
) -> list[Task[TraitRun]]:
    """One :class:`~traitvec.executors.Task` per trait, named after it, with the resources its experiments need.

    GPUs per task: ``gpus`` when given, else :func:`~traitvec.executors.resources_for` of the
    experiments (``None`` for ``device = "auto"``: the executor's ``num_gpus_per_task`` decides).
    The judge settings are pinned (:func:`pin_judge`) when vetting or steering will run.
    """
    judging = vetting is not None or steering is not None
    pinned, needs_key = pin_judge(judge) if judging else (None, False)
    configs = [config] + ([steer_config] if steer_config is not None and steering is not None else [])
    resources: Resources = resources_for(*configs, gpus=gpus)
    common = {
        "steer_config": steer_config if steering is not None else None,
        "extraction": extraction,
        "steering": steering,
        "vetting": vetting,
        "judge": pinned,
        "needs_key": needs_key,
        "vetted_only": vetted_only,
        "force": force,
        "cwd": os.getcwd(),
    }
    return [Task(trait.name, run_trait_task, (config, trait), kwargs=common, resources=resources) for trait in traits]


def run_pipeline_tasks(
    experiment: str | ExperimentConfig,
    traits: Sequence[str | Trait],
    *,
    executor: Executor | None = None,
    steer_experiment: str | ExperimentConfig | None = None,
    extraction: ExtractionSettings | None = None,
    steering: SteeringSettings | None = DEFAULT_STEERING,
    vetting: VetSettings | None = None,
    judge: JudgeSettings | None = None,
    vetted_only: bool = False,
    traits_root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT,
    experiments_root: str | os.PathLike[str] = DEFAULT_EXPERIMENTS_ROOT,
    force: bool = False,
    gpus: float | None = None,
) -> list[Outcome[TraitRun]]:
    """Run the pipeline of every trait as one executor task each; one outcome per trait, in order.

    The arguments are :func:`~traitvec.stages.pipeline.run_pipeline`'s, except that the judge is
    given as settings (it is rebuilt in each task) and ``executor`` runs the tasks. Before any task
    starts, the experiments and every trait are loaded and validated, and the judge is built and
    checked here (one cheap request) when vetting or steering will run. A task that fails does not
    stop the others; its outcome holds the failure (use :func:`~traitvec.executors.values` to get
    the runs or an :class:`~traitvec.executors.ExecutorError` naming every failed trait).

    Args:
        executor: what runs the tasks (default: :class:`~traitvec.executors.LocalExecutor`, one
            after another in this process, each loading its own models).
        judge: the judge's settings (default ``JudgeSettings()``: the environment decides).
        gpus: GPUs per task, overriding what the experiments imply.

    Raises:
        TraitvecError: an unknown experiment or trait, bad trait data, or an unusable judge.
    """
    config, steer_config = resolve_experiments(experiment, steer_experiment, experiments_root, steering=steering)
    loaded = load_traits(traits, traits_root)
    names = [t.name for t in loaded]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"run_pipeline_tasks(traits=) names {', '.join(repeated)} more than once; name each trait once",
            setting="run_pipeline_tasks(traits=)",
        )
    tasks = pipeline_tasks(
        config,
        loaded,
        steer_config=steer_config,
        extraction=extraction,
        steering=steering,
        vetting=vetting,
        judge=judge,
        vetted_only=vetted_only,
        force=force,
        gpus=gpus,
    )
    pinned = tasks[0].kwargs["judge"] if tasks else None
    if isinstance(pinned, JudgeSettings):  # an unusable judge fails here, in seconds, before any task starts
        prepare_judge(pinned, loaded if steering is not None else ())
    return (executor if executor is not None else LocalExecutor()).run_all(tasks)
