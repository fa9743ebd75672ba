"""The per-trait pipeline: (scenario vetting) → extraction (activations, vectors, evaluation) → steering evaluation.

Each stage skips itself when its outputs exist and their recorded inputs are unchanged, so an
interrupted run resumes where it stopped. Everything that can fail cheaply fails before any model
loads, in this order: the experiments and every trait are loaded and validated; the judge (only
when vetting or steering will run) is built — so a smoke-test judge says so first — and checked
with one cheap request (:func:`~traitvec.stages.preflight.prepare_judge`); an experiment's folder
is checked writable just before its model loads (:class:`CheckedPool`). Models load only when a
stage must compute something, the local judge's model only when something must be scored.
``traitvec run`` and ``traitvec extract`` are this function behind flags; each
:class:`TraitRun` says where its outputs went.

Example:
    >>> import traitvec as tv
    >>> runs = tv.run_pipeline(
    ...     "gemma-3-270m",
    ...     ["styles/formality"],
    ...     extraction=tv.ExtractionSettings(methods=("mean-diff",)),
    ...     steering=tv.SteeringSettings(questions=10, search_steps=4),
    ... )
    >>> runs[0].steering["best"]["layer"]
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..experiments import DEFAULT_EXPERIMENTS_ROOT, ExperimentConfig, load_experiment
from ..models import LoadedModel, ModelPool
from ..traits import DEFAULT_TRAITS_ROOT, Trait
from .extract import ExtractionResult, ExtractionSettings, extract_trait
from .layout import STEERING_FILES, ExtractionPaths, OutputLayout
from .multi_steer import run_steering_evals
from .preflight import JudgeSource, check_writable, load_traits, prepare_judge, resolve_trait
from .resume import read_json
from .steer import SteeringSettings, run_steering_eval
from .vet import VetSettings, vet_trait

__all__ = ["TraitRun", "run_pipeline", "load_traits", "resolve_trait", "CheckedPool", "JudgeSource"]

logger = logging.getLogger(__name__)

DEFAULT_STEERING = SteeringSettings()
"""The default of :func:`run_pipeline`'s ``steering``: the protocol's defaults."""


@dataclass
class TraitRun:
    """What the pipeline produced for one trait (one row of the final tables).

    Attributes:
        trait: the trait's name.
        extraction: the extraction result.
        steering: the ``results.json`` document (``None`` without steering).
        vetting: the ``vetting.json`` document (``None`` without vetting).
        notes: remarks about the run.
        outputs: where each stage's outputs are, ``{"vetting" | "extraction" | "steering": paths}``
            (the files that exist after the run; the vectors as their folder).
    """

    trait: str
    extraction: ExtractionResult | None = None
    steering: dict[str, Any] | None = None
    vetting: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, tuple[Path, ...]] = field(default_factory=dict)


class CheckedPool(ModelPool):
    """A :class:`~traitvec.models.ModelPool` that checks an experiment's folder is writable before loading its model.

    A model is loaded only to compute outputs of its experiment, so a read-only experiment whose
    outputs are all current is still usable, and one that is not fails before a model loads.
    """

    def __init__(self, setting: str = "run_pipeline(experiments_root=)") -> None:
        super().__init__()
        self._setting = setting
        self._checked: set[Path] = set()

    def get(self, config: ExperimentConfig) -> LoadedModel:
        """The model of ``config``, loaded on the first call after checking ``config.path`` is writable."""
        if config.path not in self._checked:
            check_writable(config.path, self._setting)
            self._checked.add(config.path)
        return super().get(config)


def run_pipeline(
    experiment: str | ExperimentConfig,
    traits: Sequence[str | Trait],
    *,
    steer_experiment: str | ExperimentConfig | None = None,
    extraction: ExtractionSettings | None = None,
    steering: SteeringSettings | None = DEFAULT_STEERING,
    vetting: VetSettings | None = None,
    judge: JudgeSource = None,
    vetted_only: bool = False,
    traits_root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT,
    experiments_root: str | os.PathLike[str] = DEFAULT_EXPERIMENTS_ROOT,
    force: bool = False,
    show_progress: bool = False,
    batch_traits: bool = True,
) -> list[TraitRun]:
    """Run every stage for every trait and return what each produced.

    Args:
        experiment: the experiment whose model extracts the vectors (a name under
            ``experiments_root``, or a loaded config).
        traits: trait names (``category/trait`` under ``traits_root``) or loaded traits.
        steer_experiment: the experiment whose model is steered (default: ``experiment``).
        extraction: what to extract; ``None``: the defaults with the experiment's ``layers``. Given
            settings are used as they are, except that ``max_batch_tokens=None`` takes the
            experiment's ``max_batch_tokens``.
        steering: steering-evaluation settings; ``None`` stops after extraction.
        vetting: scenario-vetting settings; ``None`` skips vetting.
        judge: the judge, its settings, a function that makes it, or ``None`` for
            :func:`~traitvec.judge.make_judge`; built and checked
            (:func:`~traitvec.stages.preflight.prepare_judge`) before any model loads, and only when
            vetting or steering will run.
        vetted_only: extract from the pairs whose both sides passed vetting (needs ``vetting.json``).
        traits_root: folder of ``category/trait`` folders.
        experiments_root: folder of experiment folders.
        force: recompute every stage even when its outputs are current.
        show_progress: progress bars.
        batch_traits: with several traits, vet and extract each, then run their steering
            evaluations together, sharing one ``generate`` per search round
            (:func:`~traitvec.stages.multi_steer.run_steering_evals`; the results are those of
            each trait alone). ``False``: every stage of one trait, then the next trait.

    Raises:
        TraitvecError: an unknown experiment or trait, bad trait data, missing vetting, an
            unreachable judge, or an experiment folder that cannot be written.
    """
    config, steer_config = resolve_experiments(experiment, steer_experiment, experiments_root, steering=steering)
    loaded_traits = load_traits(traits, traits_root)
    settings = _extraction_settings(extraction, config)
    the_judge = (
        prepare_judge(judge, loaded_traits if steering is not None else ())
        if vetting is not None or steering is not None
        else None
    )
    pool = CheckedPool()
    layout = OutputLayout(config.path)
    runs = []
    for trait in loaded_traits:
        run = TraitRun(trait.name)
        paths = layout.extraction(trait.name)
        if vetting is not None:
            assert the_judge is not None
            run.vetting = vet_trait(
                trait, config, pool, the_judge, settings=vetting, force=force, show_progress=show_progress
            )
        run.extraction = extract_trait(
            _vetted(trait, paths, lambda: pool.model_key(config)) if vetted_only else trait,
            config.path,
            lambda: pool.get(config),
            settings=settings,
            model_key=pool.model_key(config),
            force=force,
            show_progress=show_progress,
        )
        if steering is not None and steer_config is not None and not (batch_traits and len(loaded_traits) > 1):
            assert the_judge is not None
            run.steering = run_steering_eval(
                trait,
                run.extraction,
                steer_config,
                pool,
                the_judge,
                settings=steering,
                force=force,
                show_progress=show_progress,
            )
        runs.append(run)
    if steering is not None and steer_config is not None and batch_traits and len(loaded_traits) > 1:
        assert the_judge is not None
        items = [(trait, run.extraction) for trait, run in zip(loaded_traits, runs, strict=True) if run.extraction]
        shared = run_steering_evals(
            items, steer_config, pool, the_judge, settings=steering, force=force, show_progress=show_progress
        )
        for run, results in zip(runs, shared, strict=True):
            run.steering = results
    steer_layout = OutputLayout(steer_config.path) if steer_config is not None else None
    for run in runs:
        run.outputs = _outputs(run, layout, steer_layout)
    return runs


def _outputs(run: TraitRun, layout: OutputLayout, steer_layout: OutputLayout | None) -> dict[str, tuple[Path, ...]]:
    """Where each stage of ``run`` left its outputs (existing files only; the vectors as their folder)."""
    paths = layout.extraction(run.trait)
    found: dict[str, tuple[Path, ...]] = {}
    if run.vetting is not None:
        found["vetting"] = (paths.vetting_json,)
    if run.extraction is not None:
        found["extraction"] = (paths.vectors_dir, paths.evaluation_json, paths.evaluation_png)
    if run.steering is not None and steer_layout is not None:
        steering = steer_layout.steering(run.trait)
        plots = [steering.folder / name for name in STEERING_FILES if name.endswith(".png")]
        run_folder = run.steering.get("run_folder")  # the run's own folder, of which these are a copy
        extra = (steering.folder / run_folder,) if isinstance(run_folder, str) else ()
        found["steering"] = (steering.results_md, steering.results_json, *plots, *extra)
    return {stage: tuple(p for p in files if p.exists()) for stage, files in found.items()}


def resolve_experiments(
    experiment: str | ExperimentConfig,
    steer_experiment: str | ExperimentConfig | None,
    experiments_root: str | os.PathLike[str],
    *,
    steering: object | None,
) -> tuple[ExperimentConfig, ExperimentConfig | None]:
    """The extracting experiment, and the steered one (``None`` without ``steering``; default: the same)."""
    config = experiment if isinstance(experiment, ExperimentConfig) else load_experiment(experiment, experiments_root)
    if steering is None:
        return config, None
    chosen = steer_experiment if steer_experiment is not None else config
    return config, chosen if isinstance(chosen, ExperimentConfig) else load_experiment(chosen, experiments_root)


def _extraction_settings(extraction: ExtractionSettings | None, config: ExperimentConfig) -> ExtractionSettings:
    if extraction is None:
        return ExtractionSettings(layers=config.layers, max_batch_tokens=config.max_batch_tokens)
    if extraction.max_batch_tokens is None:
        return dataclasses.replace(extraction, max_batch_tokens=config.max_batch_tokens)
    return extraction


def _vetted(trait: Trait, paths: ExtractionPaths, model_key: Callable[[], dict[str, Any]]) -> Trait:
    """The pairs of ``trait`` whose both sides passed vetting on this model, as recorded in ``vetting.json``.

    ``model_key`` is asked only once ``vetting.json`` is there (for a hub model it may load the model).
    """
    path = paths.vetting_json
    data = read_json(path)
    if data is None:
        raise ConfigError(
            f"run_pipeline(vetted_only=) needs {path}, which is missing or unreadable; vet the trait first "
            "(run_pipeline(vetting=), or `traitvec vet`)",
            setting="run_pipeline(vetted_only=)",
        )
    if data.get("trait_hash") != trait.files_hash:
        raise ConfigError(
            f"{path} was made from other trait files; rerun vetting (run_pipeline(vetting=))",
            setting="run_pipeline(vetting=)",
        )
    if data.get("model_key") != model_key():  # after the file checks: a missing file is named before any hub lookup
        made_on = (data.get("model") or {}).get("name", "an unrecorded model")
        raise ConfigError(
            f"{path} was vetted on another model than the experiment's model now (it names {made_on}, and its "
            "model key differs or is missing); rerun vetting on this model (run_pipeline(vetting=))",
            setting="run_pipeline(vetting=)",
        )
    keep = [i for i, ok in enumerate(data["pair_passed"]) if ok]
    if len(keep) < 3:
        raise ConfigError(f"{path}: only {len(keep)} pairs passed vetting; fix the failing scenarios listed there")
    logger.info("%s: using %d of %d pairs that passed vetting", trait.name, len(keep), trait.n_pairs)
    return trait.select(keep)
