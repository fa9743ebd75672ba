"""The extraction stage for one trait: activations → vectors → per-layer evaluation, on disk.

Layout under ``experiments/{E}/extraction/{category}/{trait}/``::

    activations/{position}.safetensors (+ .json)   captured activations, one file per position
    vectors/{method}-{position}.safetensors (+ .json)
    evaluation.json, evaluation.png                 per-layer held-out metrics, recommended layers
    extraction.json                                 resolved settings, inputs, timings

Every file records the key of the inputs it was made from (trait files, model fingerprint, layers,
position, method, settings); a rerun skips each file whose key matches and recomputes the rest, so
an interrupted run resumes where it stopped. The model is only loaded when something must be
captured. Every file is written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from ._io import sha256_text, write_json
from .capture import BACKENDS, POSITIONS, Activations, capture, resolve_layers
from .errors import ConfigError, VectorError
from .evaluation import Evaluation, evaluate, plot_evaluation
from .methods import METHODS, get_method
from .models import LoadedModel
from .traits import Trait
from .vectors import TraitVector, vector_path

__all__ = ["ExtractionSettings", "ExtractionResult", "extract_trait", "extraction_dir", "DEFAULT_METHODS"]

logger = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("mean-diff", "probe", "pca")
DEFAULT_POSITIONS: tuple[str, ...] = ("prefill-mean", "last-token")


def extraction_dir(experiment_dir: str | Path, trait_name: str) -> Path:
    """``experiments/{E}/extraction/{category}/{trait}``."""
    return Path(experiment_dir) / "extraction" / trait_name


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
        max_batch_tokens: capture batch budget.
        backend: capture backend, ``hooks`` or ``nnsight`` (same numbers; not part of the inputs key).
    """

    positions: tuple[str, ...] = DEFAULT_POSITIONS
    methods: tuple[str, ...] = DEFAULT_METHODS
    layers: tuple[int, ...] | None = None
    response_tokens: int = 5
    test_fraction: float = 0.25
    seed: int = 0
    max_batch_tokens: int | None = None
    backend: str = "hooks"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        for position in self.positions:
            if position not in POSITIONS:
                raise ConfigError(f"--position {position!r} is not one of {', '.join(POSITIONS)}")
        for method in self.methods:
            if method not in METHODS:
                raise ConfigError(f"--methods {method!r} is not one of {', '.join(METHODS)}")
        if not self.positions or not self.methods:
            raise ConfigError("choose at least one position and one method")


@dataclass(frozen=True)
class ExtractionResult:
    """Paths and summaries produced for one trait."""

    folder: Path
    vectors: dict[str, Path]
    evaluations: dict[str, Evaluation]
    recomputed: tuple[str, ...]

    def vector(self, method: str = "mean-diff", position: str | None = None) -> TraitVector:
        """Load one saved vector (default position: the first extracted)."""
        pos = position or next(iter(self.evaluations))
        return TraitVector.load(self.vectors[f"{method}-{pos}"])


def _key(data: dict[str, Any]) -> str:
    return sha256_text(json.dumps(data, sort_keys=True))[:24]


def _read_key(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    extra = meta.get("extra", {}) if isinstance(meta, dict) else {}
    return meta.get("inputs_key") or extra.get("inputs_key")


def extract_trait(
    trait: Trait,
    experiment_dir: str | Path,
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
        >>> result.vector("mean-diff", "prefill-mean").layers
    """
    settings = settings or ExtractionSettings()
    folder = extraction_dir(experiment_dir, trait.name)
    loaded: LoadedModel | None = model if isinstance(model, LoadedModel) else None

    def get_model() -> LoadedModel:
        nonlocal loaded
        if loaded is None:
            assert callable(model)
            loaded = model()
        return loaded

    fingerprint = model_fingerprint or get_model().fingerprint
    started = time.perf_counter()
    recomputed: list[str] = []
    activations: dict[str, Activations] = {}
    base_inputs = {
        "format": 1,
        "trait_hash": trait.files_hash,
        "pairs": list(trait.lines),
        "model": fingerprint,
        "layers": list(settings.layers) if settings.layers is not None else "all",
    }
    keys = {}
    missing = []
    for position in settings.positions:
        inputs = dict(base_inputs, position=position)
        if position == "response-mean":
            inputs["response_tokens"] = settings.response_tokens
        keys[position] = _key(inputs)
        path = folder / "activations" / f"{position}.safetensors"
        if not force and path.is_file() and _read_key(path.with_suffix(".json")) == keys[position]:
            try:
                activations[position] = Activations.load(path)
                continue
            except VectorError as err:
                logger.warning("%s; recomputing", err)
        missing.append(position)
    if missing:
        lm = get_model()
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
            backend=settings.backend,  # type: ignore[arg-type]
        )
        for position, acts in captured.items():
            acts = Activations(**{**acts.__dict__, "extra": {**acts.extra, "inputs_key": keys[position]}})
            acts.save(folder / "activations" / f"{position}.safetensors")
            activations[position] = acts
            recomputed.append(f"activations/{position}")

    vectors: dict[str, Path] = {}
    evaluations: dict[str, Evaluation] = {}
    evaluation_inputs = {
        "methods": list(settings.methods),
        "test_fraction": settings.test_fraction,
        "seed": settings.seed,
    }
    eval_path = folder / "evaluation.json"
    previous = _read_json(eval_path) if not force else None
    for position in settings.positions:
        acts = activations[position]
        fitted: dict[str, TraitVector] = {}
        for name in settings.methods:
            path = vector_path(folder / "vectors", name, position)
            key = _key({"activations": keys[position], "method": name})
            if not force and path.is_file() and _read_key(path.with_suffix(".json")) == key:
                try:
                    fitted[name] = TraitVector.load(path)
                    vectors[f"{name}-{position}"] = path
                    continue
                except VectorError as err:
                    logger.warning("%s; recomputing", err)
            vector = get_method(name).fit(acts)
            vector = TraitVector(**{**vector.__dict__, "extra": {**vector.extra, "inputs_key": key}})
            vectors[f"{name}-{position}"] = vector.save(folder / "vectors")
            fitted[name] = vector
            recomputed.append(f"vectors/{name}-{position}")
        eval_key = _key({"activations": keys[position], **evaluation_inputs})
        if previous and previous.get("positions", {}).get(position, {}).get("inputs_key") == eval_key:
            evaluations[position] = _evaluation_from_dict(previous["positions"][position])
        else:
            evaluations[position] = evaluate(acts, fitted, test_fraction=settings.test_fraction, seed=settings.seed)
            recomputed.append(f"evaluation/{position}")
    if any(r.startswith("evaluation") for r in recomputed) or not eval_path.is_file():
        document = {
            "trait": trait.name,
            "traitvec_version": __version__,
            "positions": {
                position: {**ev.to_dict(), "inputs_key": _key({"activations": keys[position], **evaluation_inputs})}
                for position, ev in evaluations.items()
            },
        }
        write_json(eval_path, document)
        plot_evaluation(list(evaluations.values()), str(folder / "evaluation.png"))
    write_json(
        folder / "extraction.json",
        {
            "trait": trait.name,
            "trait_hash": trait.files_hash,
            "n_pairs": trait.n_pairs,
            "model": loaded.describe() if loaded is not None else {"fingerprint": fingerprint},
            "settings": {**settings.__dict__, "layers": list(settings.layers) if settings.layers else None},
            "recomputed": recomputed,
            "seconds": round(time.perf_counter() - started, 2),
            "traitvec_version": __version__,
        },
    )
    return ExtractionResult(folder=folder, vectors=vectors, evaluations=evaluations, recomputed=tuple(recomputed))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    from .evaluation import LayerMetrics

    ints = lambda d: {int(k): float(v) for k, v in d.items()}  # noqa: E731
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


def parse_list(value: str | Sequence[str] | None, kind: str) -> tuple[str, ...] | None:
    """Split a comma-separated flag value (``--methods mean-diff,probe``)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out = tuple(x.strip() for item in items for x in item.split(",") if x.strip())
    if not out:
        raise ConfigError(f"--{kind} is empty")
    return out
