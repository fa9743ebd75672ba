"""The per-trait pipeline: (scenario vetting) → extraction (activations, vectors, evaluation) → steering evaluation.

Each stage skips itself when its outputs exist and their recorded inputs are unchanged, so an
interrupted run resumes where it stopped; models load only when a stage needs them, and the judge
is built only when vetting or steering needs it. Every trait is validated before any work starts.
``traitvec run`` and ``traitvec extract`` are this function behind flags.

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
from typing import Any

from ..errors import ConfigError, TraitvecError
from ..experiments import DEFAULT_EXPERIMENTS_ROOT, ExperimentConfig, load_experiment
from ..judge import Judge, make_judge
from ..models import ModelPool
from ..traits import DEFAULT_TRAITS_ROOT, Trait, load_trait
from .extract import ExtractionResult, ExtractionSettings, extract_trait
from .layout import ExtractionPaths, OutputLayout
from .resume import read_json
from .steer import SteeringSettings, run_steering_eval
from .vet import VetSettings, vet_trait

__all__ = ["TraitRun", "run_pipeline", "load_traits"]

logger = logging.getLogger(__name__)

DEFAULT_STEERING = SteeringSettings()
"""The default of :func:`run_pipeline`'s ``steering``: the protocol's defaults."""

JudgeSource = Judge | Callable[[], Judge] | None
"""A judge, a function that makes one (called once, when a stage first needs it), or None for :func:`make_judge`."""


@dataclass
class TraitRun:
    """What the pipeline produced for one trait (one row of the final tables).

    Attributes:
        trait: the trait's name.
        extraction: the extraction result.
        steering: the ``results.json`` document (``None`` without steering).
        vetting: the ``vetting.json`` document (``None`` without vetting).
        notes: remarks about the run.
    """

    trait: str
    extraction: ExtractionResult | None = None
    steering: dict[str, Any] | None = None
    vetting: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


class _LazyJudge:
    """Builds the judge the first time a stage asks for it."""

    def __init__(self, source: JudgeSource) -> None:
        self._judge: Judge | None = None
        self._factory: Callable[[], Judge] = make_judge
        if isinstance(source, Judge):
            self._judge = source
        elif source is not None:
            self._factory = source

    def get(self) -> Judge:
        if self._judge is None:
            self._judge = self._factory()
        return self._judge


def load_traits(traits: Sequence[str | Trait], root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> list[Trait]:
    """Load every named trait (Trait objects pass through); one error listing every trait that failed."""
    loaded, errors = [], []
    for item in traits:
        if isinstance(item, Trait):
            loaded.append(item)
            continue
        try:
            loaded.append(load_trait(item, root))
        except TraitvecError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError(" | ".join(errors))
    return loaded


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
        judge: the judge, a function that makes it, or ``None`` for :func:`~traitvec.judge.make_judge`;
            built only when vetting or steering first needs it.
        vetted_only: extract from the pairs whose both sides passed vetting (needs ``vetting.json``).
        traits_root: folder of ``category/trait`` folders.
        experiments_root: folder of experiment folders.
        force: recompute every stage even when its outputs are current.
        show_progress: progress bars.

    Raises:
        TraitvecError: an unknown experiment or trait, bad trait data, or missing vetting.
    """
    config = experiment if isinstance(experiment, ExperimentConfig) else load_experiment(experiment, experiments_root)
    steer_config = None
    if steering is not None:
        chosen = steer_experiment if steer_experiment is not None else config
        steer_config = chosen if isinstance(chosen, ExperimentConfig) else load_experiment(chosen, experiments_root)
    loaded_traits = load_traits(traits, traits_root)
    settings = _extraction_settings(extraction, config)
    pool = ModelPool()
    lazy_judge = _LazyJudge(judge)
    layout = OutputLayout(config.path)
    runs = []
    for trait in loaded_traits:
        run = TraitRun(trait.name)
        paths = layout.extraction(trait.name)
        if vetting is not None:
            run.vetting = vet_trait(
                trait, config, pool, lazy_judge.get(), settings=vetting, force=force, show_progress=show_progress
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
        if steering is not None and steer_config is not None:
            run.steering = run_steering_eval(
                trait,
                run.extraction,
                steer_config,
                pool,
                lazy_judge.get(),
                settings=steering,
                force=force,
                show_progress=show_progress,
            )
        runs.append(run)
    return runs


def _extraction_settings(extraction: ExtractionSettings | None, config: ExperimentConfig) -> ExtractionSettings:
    if extraction is None:
        return ExtractionSettings(layers=config.layers, max_batch_tokens=config.max_batch_tokens)
    if extraction.max_batch_tokens is None:
        return dataclasses.replace(extraction, max_batch_tokens=config.max_batch_tokens)
    return extraction


def _vetted(trait: Trait, paths: ExtractionPaths, model_key: Callable[[], dict[str, Any]]) -> Trait:
    """The pairs of ``trait`` whose both sides passed vetting on this model, as recorded in ``vetting.json``."""
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
