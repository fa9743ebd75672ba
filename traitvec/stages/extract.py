"""The extraction stage for one trait: activations → vectors → per-layer evaluation, on disk.

Outputs (paths from :class:`~traitvec.stages.layout.OutputLayout`) under
``experiments/{E}/extraction/{category}/{trait}/``::

    activations/{position}.safetensors (+ .json)   captured activations, one file per position
    vectors/{method}-{position}.safetensors (+ .json)
    evaluation.json, evaluation.png                 per-layer validation/test metrics, recommended layers
    extraction.json                                 resolved settings, inputs, timings of the last run that computed

Every file records the key of its inputs (trait files and pairs, :meth:`ModelPool.model_key`,
capture format, layers, position, method, split): a rerun skips what is current and recomputes
the rest (:mod:`traitvec.stages.resume`); a corrupt or tampered file is recomputed with a warning
naming it; a current stage writes nothing; the model loads only when something must be captured;
activations stream to disk; every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import write_json
from ..capture import BACKENDS, CAPTURE_FORMAT, Activations, Backend, capture, resolve_layers
from ..errors import ConfigError, VectorError
from ..evaluation import Evaluation, check_fractions, evaluate
from ..methods import METHODS, get_method
from ..models import LoadedModel
from ..positions import POSITIONS, Position, check_positions
from ..render.plots import plot_evaluation
from ..traits import Trait
from ..vectors import TraitVector
from .layout import ExtractionPaths, OutputLayout
from .resume import inputs_key, read_json, recorded_key

__all__ = ["ExtractionSettings", "ExtractionResult", "extract_trait", "DEFAULT_METHODS", "DEFAULT_POSITIONS"]

logger = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("mean-diff", "probe", "pca")
DEFAULT_POSITIONS: tuple[Position, ...] = ("prefill-mean", "last-token")
"""The positions of a prefill trait when none are given (conversation traits: answer-mean, answer-first-k)."""
_TEMPLATE_KEYS = ("chat_template", "enable_thinking", "thinking")  # model-key parts that only change templated prompts


@dataclass(frozen=True)
class ExtractionSettings:
    """What to extract.

    Attributes:
        positions: capture positions (``None``: ``prefill-mean`` and ``last-token`` for prefill
            traits, ``answer-mean`` and ``answer-first-k`` for conversation traits).
        methods: vector methods.
        layers: layers (``None``: all).
        response_tokens: ``k`` for ``response-mean``.
        answer_tokens: ``k`` for ``answer-first-k``.
        validation_fraction: share of pairs that choose the recommended layer.
        test_fraction: share of pairs the reported metrics are measured on.
        seed: split seed.
        max_batch_tokens: capture batch budget (``None``: the capture default; the pipeline uses the
            experiment's ``max_batch_tokens``).
        backend: capture backend, ``hooks`` or ``nnsight`` (same numbers; not part of the inputs key).

    Raises:
        ConfigError: an unknown position, method or backend, no position or method at all, or a
            bad number.
    """

    positions: tuple[Position, ...] | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    layers: tuple[int, ...] | None = None
    response_tokens: int = 5
    answer_tokens: int = 5
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    max_batch_tokens: int | None = None
    backend: Backend = "hooks"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"ExtractionSettings.backend = {self.backend!r} is not one of {', '.join(BACKENDS)}",
                setting="ExtractionSettings.backend",
            )
        checks: tuple[tuple[str, tuple[str, ...], Any], ...] = (
            ("positions", tuple(self.positions or ()), POSITIONS),
            ("methods", self.methods, METHODS),
        )
        for name, values, known in checks:
            for value in values:
                if value not in known:
                    raise ConfigError(
                        f"ExtractionSettings.{name} = {value!r} is not one of {', '.join(known)}",
                        setting=f"ExtractionSettings.{name}",
                    )
        for name, given in (("positions", self.positions), ("methods", self.methods)):
            if given is not None and not given:
                raise ConfigError(
                    f"ExtractionSettings.{name} is empty; choose at least one position and one method",
                    setting=f"ExtractionSettings.{name}",
                )
        for name in ("response_tokens", "answer_tokens"):
            if getattr(self, name) < 1:
                value = getattr(self, name)
                raise ConfigError(
                    f"ExtractionSettings.{name} = {value}; use 1 or more", setting=f"ExtractionSettings.{name}"
                )
        check_fractions(self.validation_fraction, self.test_fraction)


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


def loaded_model_key(loaded: LoadedModel) -> dict[str, Any]:
    """The model part of the keys for a model given as a :class:`LoadedModel` (no config to ask)."""
    return {
        "fingerprint": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "chat_template": loaded.use_chat_template,
        "layers_path": loaded.layers_path,
    }


def extract_trait(
    trait: Trait,
    experiment_dir: str | os.PathLike[str],
    model: LoadedModel | Callable[[], LoadedModel],
    *,
    settings: ExtractionSettings | None = None,
    model_key: Mapping[str, Any] | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> ExtractionResult:
    """Capture, fit, evaluate and save the vectors of one trait, skipping what is already done.

    Args:
        trait: the trait (possibly restricted to vetted pairs with :meth:`Trait.select`).
        experiment_dir: ``experiments/{E}``.
        model: the loaded model, or a function that loads it (called only if needed).
        settings: positions, methods, layers and evaluation settings.
        model_key: what identifies the model and the settings that change its activations
            (:meth:`ModelPool.model_key`), known without loading it; default: read from the
            loaded model, which forces loading (as does a key whose weights fingerprint is not
            known yet, ``"unloaded:…"``).
        force: recompute everything.
        show_progress: progress bars.

    Example:
        >>> result = extract_trait(trait, "experiments/gemma-3-270m", lambda: pool.get(config),
        ...                        model_key=pool.model_key(config))
        >>> TraitVector.load(result.vectors["mean-diff-prefill-mean"]).layers
    """
    settings = settings or ExtractionSettings()
    positions = check_positions(settings.positions, trait, setting="ExtractionSettings.positions")
    paths = OutputLayout(experiment_dir).extraction(trait.name)
    lazy = _Model(model)
    key_of_model = dict(model_key) if model_key is not None else loaded_model_key(lazy.get())
    if str(key_of_model.get("fingerprint", "")).startswith("unloaded:"):  # the weights are unknown until loaded
        key_of_model["fingerprint"] = lazy.get().fingerprint
    if not trait.chat:
        key_of_model = {k: v for k, v in key_of_model.items() if k not in _TEMPLATE_KEYS}
    started = time.perf_counter()
    recomputed: list[str] = []
    keys = _activation_keys(trait, key_of_model, positions, settings)
    activations = _activations(trait, paths, keys, lazy, positions, settings, force, show_progress, recomputed)
    vectors: dict[str, Path] = {}
    fitted: dict[str, dict[str, TraitVector]] = {
        p: _vectors(p, activations[p], paths, keys[p], settings, force, vectors, recomputed) for p in positions
    }
    evaluations = _evaluations(trait, paths, keys, activations, fitted, positions, settings, force, recomputed)
    record = read_json(paths.extraction_json)
    if record is None and paths.extraction_json.is_file():
        logger.warning("%s is not a readable JSON object; writing it again", paths.extraction_json)
    if recomputed or record is None:
        write_json(
            paths.extraction_json,
            {
                "trait": trait.name,
                "trait_hash": trait.files_hash,
                "n_pairs": trait.n_pairs,
                "model": lazy.loaded.describe() if lazy.loaded is not None else key_of_model,
                "model_key": key_of_model,
                "settings": {**asdict(settings), "positions": list(positions), "layers": _layers(settings)},
                "recomputed": recomputed,
                "seconds": round(time.perf_counter() - started, 2),
                "traitvec_version": __version__,
            },
        )
    return ExtractionResult(paths.folder, vectors, evaluations, tuple(recomputed))


def _layers(settings: ExtractionSettings) -> list[int] | None:
    return list(settings.layers) if settings.layers is not None else None


def _activation_keys(
    trait: Trait, model_key: Mapping[str, Any], positions: tuple[Position, ...], settings: ExtractionSettings
) -> dict[str, str]:
    """The inputs key of each position's activations."""
    base = {
        "capture_format": CAPTURE_FORMAT,
        "trait_hash": trait.files_hash,
        "pairs": list(trait.lines),
        "model": dict(model_key),
        "layers": _layers(settings) or "all",
    }
    keys: dict[str, str] = {}
    for position in positions:
        inputs: dict[str, Any] = dict(base, position=position)
        if position == "response-mean":
            inputs["response_tokens"] = settings.response_tokens
        if position == "answer-first-k":
            inputs["answer_tokens"] = settings.answer_tokens
        keys[position] = inputs_key(inputs)
    return keys


def _current(path: Path, key: str, force: bool) -> bool:
    """Whether the JSON document at ``path`` records ``key``; a file there that is not a JSON object is reported."""
    if force or not path.is_file():
        return False
    document = read_json(path)
    if document is None:
        logger.warning("%s is not a readable JSON object; recomputing it", path)
        return False
    return recorded_key(document) == key


def _activations(
    trait: Trait,
    paths: ExtractionPaths,
    keys: dict[str, str],
    model: _Model,
    positions: tuple[Position, ...],
    settings: ExtractionSettings,
    force: bool,
    show_progress: bool,
    recomputed: list[str],
) -> dict[str, Activations]:
    """Each position's activations: read when current, else captured (all missing positions in one pass)."""
    activations: dict[str, Activations] = {}
    missing: list[Position] = []
    for position in positions:
        path = paths.activations(position)
        if path.is_file() and _current(path.with_suffix(".json"), keys[position], force):
            try:
                activations[position] = Activations.load(path)
                continue
            except VectorError as err:
                logger.warning("%s; recomputing it", err)
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
        answer_tokens=settings.answer_tokens,
        max_batch_tokens=settings.max_batch_tokens,
        show_progress=show_progress,
        backend=settings.backend,
        write_to={p: paths.activations(p) for p in missing},
    )
    for name, acts in captured.items():
        acts = Activations(**{**acts.__dict__, "extra": {**acts.extra, "inputs_key": keys[name]}})
        acts.write_sidecar(paths.activations(name))
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
        if path.is_file() and _current(path.with_suffix(".json"), key, force):
            try:
                fitted[name] = TraitVector.load(path)
                vectors[f"{name}-{position}"] = path
                continue
            except VectorError as err:
                logger.warning("%s; recomputing it", err)
        vector = get_method(name).fit(acts)
        vector = TraitVector(**{**vector.__dict__, "extra": {**vector.extra, "inputs_key": key}})
        vectors[f"{name}-{position}"] = vector.save(paths.vectors_dir)
        fitted[name] = vector
        recomputed.append(f"vectors/{name}-{position}")
    return fitted


def _evaluations(
    trait: Trait,
    paths: ExtractionPaths,
    keys: dict[str, str],
    activations: Mapping[str, Activations],
    fitted: Mapping[str, dict[str, TraitVector]],
    positions: tuple[Position, ...],
    settings: ExtractionSettings,
    force: bool,
    recomputed: list[str],
) -> dict[str, Evaluation]:
    """Each position's evaluation: read from ``evaluation.json`` when current, else computed; the file
    (and its plot) rewritten only when something changed or is missing."""
    split = {"methods": list(settings.methods), "validation_fraction": settings.validation_fraction}
    split |= {"test_fraction": settings.test_fraction, "seed": settings.seed}
    eval_keys: dict[str, str] = {p: inputs_key({"activations": keys[p], **split}) for p in positions}
    document = None
    if paths.evaluation_json.is_file() and not force:
        document = read_json(paths.evaluation_json)
        if document is None:
            logger.warning("%s is not a readable JSON object; recomputing it", paths.evaluation_json)
    evaluations: dict[str, Evaluation] = {}
    for position in positions:
        recorded = (document or {}).get("positions", {})
        entry = recorded.get(position) if isinstance(recorded, dict) else None
        if recorded_key(entry) == eval_keys[position]:
            try:
                evaluations[position] = Evaluation.from_dict(entry or {})
                continue
            except VectorError as err:
                logger.warning("%s: %s; recomputing it", paths.evaluation_json, err)
        evaluations[position] = evaluate(
            activations[position],
            fitted[position],
            validation_fraction=settings.validation_fraction,
            test_fraction=settings.test_fraction,
            seed=settings.seed,
        )
        recomputed.append(f"evaluation/{position}")
    if document is None or any(r.startswith("evaluation/") for r in recomputed):
        few = next(iter(evaluations.values())).few_pairs_warning()  # said once, when it is computed
        if few:
            logger.warning("%s: %s", trait.name, few)
        write_json(
            paths.evaluation_json,
            {
                "trait": trait.name,
                "traitvec_version": __version__,
                "positions": {p: {**ev.to_dict(), "inputs_key": eval_keys[p]} for p, ev in evaluations.items()},
            },
        )
    if document is None or any(r.startswith("evaluation/") for r in recomputed) or not paths.evaluation_png.is_file():
        plot_evaluation(list(evaluations.values()), paths.evaluation_png)
    return evaluations
