"""The extraction stage for one trait: activations → vectors → per-layer evaluation, on disk.

Outputs (paths from :class:`~traitvec.stages.layout.OutputLayout`) under
``experiments/{E}/extraction/{category}/{trait}/``::

    activations/{position}.safetensors (+ .json)   captured activations, one file per position
    vectors/{method}-{position}.safetensors (+ .json)
    evaluation.json, evaluation.png                 per-layer held-out metrics, recommended layers
    extraction.json                                 resolved settings, inputs, timings

Every file records the key of the inputs it was made from (trait files, model fingerprint, layers,
position, method, settings); a rerun skips each file whose key matches and recomputes the rest, so
an interrupted run resumes where it stopped (:mod:`traitvec.stages.resume`). The model is only
loaded when something must be captured. Every file is written atomically.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import write_json
from ..capture import BACKENDS, POSITIONS, Activations, Backend, Position, capture, resolve_layers
from ..errors import ConfigError, VectorError
from ..evaluation import Evaluation, LayerMetrics, evaluate
from ..methods import METHODS, get_method
from ..models import LoadedModel
from ..render.plots import plot_evaluation
from ..traits import Trait
from ..vectors import TraitVector
from .layout import ExtractionPaths, OutputLayout
from .resume import inputs_key, read_if_current, read_json, recorded_key

__all__ = ["ExtractionSettings", "ExtractionResult", "extract_trait", "DEFAULT_METHODS", "DEFAULT_POSITIONS"]

logger = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("mean-diff", "probe", "pca")
DEFAULT_POSITIONS: tuple[Position, ...] = ("prefill-mean", "last-token")


@dataclass(frozen=True)
class ExtractionSettings:
    """What to extract.

    Attributes:
        positions: capture positions.
        methods: vector methods.
        layers: layers (``None``: all).
        response_tokens: ``k`` for ``response-mean``.
        test_fraction: share of pairs held out for evaluation.
        seed: split seed.
        max_batch_tokens: capture batch budget (``None``: the capture default; the pipeline uses the
            experiment's ``max_batch_tokens``).
        backend: capture backend, ``hooks`` or ``nnsight`` (same numbers; not part of the inputs key).

    Raises:
        ConfigError: an unknown position, method or backend, or no position or method at all.
    """

    positions: tuple[Position, ...] = DEFAULT_POSITIONS
    methods: tuple[str, ...] = DEFAULT_METHODS
    layers: tuple[int, ...] | None = None
    response_tokens: int = 5
    test_fraction: float = 0.25
    seed: int = 0
    max_batch_tokens: int | None = None
    backend: Backend = "hooks"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"ExtractionSettings.backend = {self.backend!r} is not one of {', '.join(BACKENDS)}",
                setting="ExtractionSettings.backend",
            )
        for position in self.positions:
            if position not in POSITIONS:
                raise ConfigError(
                    f"ExtractionSettings.positions = {position!r} is not one of {', '.join(POSITIONS)}",
                    setting="ExtractionSettings.positions",
                )
        for method in self.methods:
            if method not in METHODS:
                raise ConfigError(
                    f"ExtractionSettings.methods = {method!r} is not one of {', '.join(METHODS)}",
                    setting="ExtractionSettings.methods",
                )
        for name, chosen in (("positions", self.positions), ("methods", self.methods)):
            if not chosen:
                raise ConfigError(
                    f"ExtractionSettings.{name} is empty; choose at least one position and one method",
                    setting=f"ExtractionSettings.{name}",
                )


@dataclass(frozen=True)
class ExtractionResult:
    """What extraction produced for one trait.

    Attributes:
        folder: the trait's extraction folder.
        vectors: ``{"{method}-{position}": vector file}``.
        evaluations: ``{position: evaluation}`` (what ``evaluation.json`` holds).
        recomputed: what this run computed (``activations/{position}``, ``vectors/{name}``,
            ``evaluation/{position}``); empty when everything was current.
    """

    folder: Path
    vectors: dict[str, Path]
    evaluations: dict[str, Evaluation]
    recomputed: tuple[str, ...]


@dataclass
class _Model:
    """The model, loaded only when first needed."""

    source: LoadedModel | Callable[[], LoadedModel]
    loaded: LoadedModel | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.source, LoadedModel):
            self.loaded = self.source

    def get(self) -> LoadedModel:
        if self.loaded is None:
            assert not isinstance(self.source, LoadedModel)
            self.loaded = self.source()
        return self.loaded


def extract_trait(
    trait: Trait,
    experiment_dir: str | os.PathLike[str],
    model: LoadedModel | Callable[[], LoadedModel],
    *,
    settings: ExtractionSettings | None = None,
    model_fingerprint: str | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> ExtractionResult:
    """Capture, fit, evaluate and save the vectors of one trait, skipping what is already done.

    Args:
        trait: the trait (possibly restricted to vetted pairs with :meth:`Trait.select`).
        experiment_dir: ``experiments/{E}``.
        model: the loaded model, or a function that loads it (called only if needed).
        settings: positions, methods, layers and evaluation settings.
        model_fingerprint: identifies the model without loading it (for skipping); default:
            the loaded model's fingerprint, which forces loading.
        force: recompute everything.
        show_progress: progress bars.

    Example:
        >>> result = extract_trait(trait, "experiments/gemma-3-270m", lambda: load_model(config))
        >>> TraitVector.load(result.vectors["mean-diff-prefill-mean"]).layers
    """
    settings = settings or ExtractionSettings()
    paths = OutputLayout(experiment_dir).extraction(trait.name)
    lazy = _Model(model)
    fingerprint = model_fingerprint or lazy.get().fingerprint
    started = time.perf_counter()
    recomputed: list[str] = []
    keys = _activation_keys(trait, fingerprint, settings)
    activations = _activations(trait, paths, keys, lazy, settings, force, show_progress, recomputed)
    vectors: dict[str, Path] = {}
    evaluations: dict[str, Evaluation] = {}
    previous = None if force else read_json(paths.evaluation_json)
    eval_keys: dict[str, str] = {
        position: inputs_key({"activations": keys[position], **_evaluation_inputs(settings)})
        for position in settings.positions
    }
    for position in settings.positions:
        fitted = _vectors(position, activations[position], paths, keys[position], settings, force, vectors, recomputed)
        recorded = (previous or {}).get("positions", {}).get(position)
        if previous and recorded_key(recorded) == eval_keys[position]:
            evaluations[position] = _evaluation_from_dict(recorded)
        else:
            acts = activations[position]
            evaluations[position] = evaluate(acts, fitted, test_fraction=settings.test_fraction, seed=settings.seed)
            recomputed.append(f"evaluation/{position}")
    if any(r.startswith("evaluation") for r in recomputed) or not paths.evaluation_json.is_file():
        _write_evaluation(trait, paths, evaluations, eval_keys)
    write_json(
        paths.extraction_json,
        {
            "trait": trait.name,
            "trait_hash": trait.files_hash,
            "n_pairs": trait.n_pairs,
            "model": lazy.loaded.describe() if lazy.loaded is not None else {"fingerprint": fingerprint},
            "settings": {**asdict(settings), "layers": list(settings.layers) if settings.layers else None},
            "recomputed": recomputed,
            "seconds": round(time.perf_counter() - started, 2),
            "traitvec_version": __version__,
        },
    )
    return ExtractionResult(paths.folder, vectors, evaluations, tuple(recomputed))


def _activation_keys(trait: Trait, fingerprint: str, settings: ExtractionSettings) -> dict[str, str]:
    """The inputs key of each position's activations."""
    base = {
        "format": 1,
        "trait_hash": trait.files_hash,
        "pairs": list(trait.lines),
        "model": fingerprint,
        "layers": list(settings.layers) if settings.layers is not None else "all",
    }
    keys: dict[str, str] = {}
    for position in settings.positions:
        inputs: dict[str, Any] = dict(base, position=position)
        if position == "response-mean":
            inputs["response_tokens"] = settings.response_tokens
        keys[position] = inputs_key(inputs)
    return keys


def _evaluation_inputs(settings: ExtractionSettings) -> dict[str, Any]:
    return {"methods": list(settings.methods), "test_fraction": settings.test_fraction, "seed": settings.seed}


def _activations(
    trait: Trait,
    paths: ExtractionPaths,
    keys: dict[str, str],
    model: _Model,
    settings: ExtractionSettings,
    force: bool,
    show_progress: bool,
    recomputed: list[str],
) -> dict[str, Activations]:
    """Each position's activations: read when current, else captured (all missing positions in one pass)."""
    activations: dict[str, Activations] = {}
    missing: list[Position] = []
    for position in settings.positions:
        path = paths.activations(position)
        if path.is_file() and read_if_current(path.with_suffix(".json"), keys[position], force=force) is not None:
            try:
                activations[position] = Activations.load(path)
                continue
            except VectorError as err:
                logger.warning("%s; recomputing", err)
        missing.append(position)
    if not missing:
        return activations
    lm = model.get()
    layers = resolve_layers(lm, settings.layers)
    logger.info("%s: capturing %s at %d layers of %s", trait.name, ", ".join(missing), len(layers), lm.name)
    captured = capture(
        lm,
        trait,
        positions=missing,
        layers=layers,
        response_tokens=settings.response_tokens,
        max_batch_tokens=settings.max_batch_tokens,
        show_progress=show_progress,
        backend=settings.backend,
    )
    for name, acts in captured.items():
        acts = Activations(**{**acts.__dict__, "extra": {**acts.extra, "inputs_key": keys[name]}})
        acts.save(paths.activations(name))
        activations[name] = acts
        recomputed.append(f"activations/{name}")
    return activations


def _vectors(
    position: str,
    acts: Activations,
    paths: ExtractionPaths,
    activations_key: str,
    settings: ExtractionSettings,
    force: bool,
    vectors: dict[str, Path],
    recomputed: list[str],
) -> dict[str, TraitVector]:
    """Every method's vector at one position: read when current, else fitted and saved."""
    fitted: dict[str, TraitVector] = {}
    for name in settings.methods:
        path = paths.vector(name, position)
        key = inputs_key({"activations": activations_key, "method": name})
        if path.is_file() and read_if_current(path.with_suffix(".json"), key, force=force) is not None:
            try:
                fitted[name] = TraitVector.load(path)
                vectors[f"{name}-{position}"] = path
                continue
            except VectorError as err:
                logger.warning("%s; recomputing", err)
        vector = get_method(name).fit(acts)
        vector = TraitVector(**{**vector.__dict__, "extra": {**vector.extra, "inputs_key": key}})
        vectors[f"{name}-{position}"] = vector.save(paths.vectors_dir)
        fitted[name] = vector
        recomputed.append(f"vectors/{name}-{position}")
    return fitted


def _write_evaluation(
    trait: Trait, paths: ExtractionPaths, evaluations: dict[str, Evaluation], keys: dict[str, str]
) -> None:
    document = {
        "trait": trait.name,
        "traitvec_version": __version__,
        "positions": {position: {**ev.to_dict(), "inputs_key": keys[position]} for position, ev in evaluations.items()},
    }
    write_json(paths.evaluation_json, document)
    plot_evaluation(list(evaluations.values()), paths.evaluation_png)


def _evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    """An :class:`Evaluation` read back from ``evaluation.json`` (a null Cohen's d becomes NaN)."""

    def ints(d: dict[str, Any]) -> dict[int, float]:
        return {int(k): float(v) for k, v in d.items()}

    return Evaluation(
        trait=data["trait"],
        position=data["position"],
        layers=tuple(data["layers"]),
        n_layers_model=int(data["n_layers_model"]),
        metrics=tuple(
            LayerMetrics(**{**m, "cohens_d": math.nan if m["cohens_d"] is None else m["cohens_d"]})
            for m in data["metrics"]
        ),
        method_cosines={k: ints(v) for k, v in data["method_cosines"].items()},
        neighbour_cosines={k: ints(v) for k, v in data["neighbour_cosines"].items()},
        recommended={k: int(v) for k, v in data["recommended_layer"].items()},
        best_any_depth={k: int(v) for k, v in data["best_layer_any_depth"].items()},
        n_train_pairs=int(data["split"]["n_train_pairs"]),
        n_test_pairs=int(data["split"]["n_test_pairs"]),
        seed=int(data["split"]["seed"]),
    )
