"""Trait vectors: one unit direction per layer, with where it came from.

File format (``vectors/{method}-{position}.safetensors`` + ``{method}-{position}.json``):

- the safetensors file holds one float32 tensor per layer named ``layer.{i}``, unit norm;
- the JSON sidecar records the format (``traitvec.vector/2``), the model (name, fingerprint,
  family, width, depth), the layer convention, position, method, layers, number of pairs, the
  trait files' hash, raw norms, activation norms, the per-token spreads (``spreads``, the
  steering unit) and the spreads of the position's activations (``position_spreads``) per layer,
  the traitvec version and the creation time.

A vector built in code is normalised at construction (a zero or non-finite direction is refused),
so every direction a :class:`TraitVector` holds has unit norm. Loading checks the format; format 1
files still load, with a warning: their ``spreads`` are the position spread, so their steering
unit differs from a format 2 vector's. :meth:`TraitVector.check_model` refuses a vector applied to
a model of another width. :meth:`TraitVector.to_gguf` writes a llama.cpp control vector.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._io import JSONError, atomic_path, read_json_text, write_json
from .errors import ConfigError, VectorError

if TYPE_CHECKING:
    from .models import LoadedModel

__all__ = ["TraitVector", "LAYER_CONVENTION", "FORMAT", "vector_path"]

logger = logging.getLogger(__name__)

FORMAT = "traitvec.vector/2"
_FORMAT_1 = "traitvec.vector/1"
SPREAD_UNITS = ("per-token", "position")
LAYER_CONVENTION = (
    "layer i (0-based) = residual stream at the output of decoder block i, before any final norm "
    "(transformers hidden_states[i + 1], except the last layer, whose hidden_states entry has the final norm applied)"
)


def _by_layer(values: Mapping[str, float]) -> dict[int, float]:
    """A JSON ``{"layer": number}`` object with integer keys."""
    return {int(k): float(v) for k, v in values.items()}


def _unit(layer: int, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a unit float32 CPU direction; a zero or non-finite one is refused."""
    direction = tensor.detach().to("cpu", torch.float32)
    norm = float(direction.double().norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise VectorError(
            f"the direction at layer {layer} has norm {norm}; a trait direction must be finite and non-zero"
        )
    return direction / norm if abs(norm - 1.0) > 1e-6 else direction


def vector_path(folder: str | Path, method: str, position: str) -> Path:
    """``{folder}/{method}-{position}.safetensors``."""
    return Path(folder) / f"{method}-{position}.safetensors"


@dataclass(frozen=True)
class TraitVector:
    """A trait direction at each of several layers.

    Attributes:
        directions: ``{layer: unit tensor [width]}``, float32 on CPU.
        method: ``mean-diff``, ``probe`` or ``pca``.
        position: the capture position the vector was fitted on.
        model: the extraction model's description (name, fingerprint, model_type, width, depth).
        trait: ``category/trait``.
        trait_hash: hash of the trait's files.
        n_pairs: pairs the vector was fitted on.
        raw_norms: the direction's norm before normalising, per layer.
        activation_norms: mean ``‖h‖`` of the layer's activations (positives and negatives).
        spreads: the unit of steering coefficients per layer: the per-token spread, mean
            ``‖h_t − μ‖`` over the real tokens of the trait's prompts (``spread_unit="per-token"``),
            or, for vectors fitted on hand-built activations and format 1 files, the position spread.
        position_spreads: mean ``‖h − mean h‖`` over the examples at the vector's position.
        spread_unit: ``"per-token"`` or ``"position"``: what ``spreads`` holds.
        created: ISO-8601 UTC time.
        traitvec_version: version that wrote it.
        extra: method details (for example the probe's regularisation).
    """

    directions: Mapping[int, torch.Tensor]
    method: str
    position: str
    model: Mapping[str, Any]
    trait: str
    trait_hash: str
    n_pairs: int
    raw_norms: Mapping[int, float]
    activation_norms: Mapping[int, float]
    spreads: Mapping[int, float]
    position_spreads: Mapping[int, float] = field(default_factory=dict)
    spread_unit: str = "per-token"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    traitvec_version: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise VectorError("a trait vector needs at least one layer")
        widths = {int(t.shape[-1]) for t in self.directions.values()}
        if len(widths) != 1 or any(t.dim() != 1 for t in self.directions.values()):
            raise VectorError(f"directions must be 1-D tensors of one width, got widths {sorted(widths)}")
        if self.spread_unit not in SPREAD_UNITS:
            raise VectorError(f"spread_unit = {self.spread_unit!r} is not one of {', '.join(SPREAD_UNITS)}")
        object.__setattr__(self, "directions", {int(k): _unit(k, t) for k, t in self.directions.items()})
        if not self.traitvec_version:
            from . import __version__

            object.__setattr__(self, "traitvec_version", __version__)

    @property
    def layers(self) -> tuple[int, ...]:
        """Layers the vector has a direction for, ascending."""
        return tuple(sorted(self.directions))

    @property
    def hidden_size(self) -> int:
        """Width of the directions."""
        return int(next(iter(self.directions.values())).shape[-1])

    @property
    def name(self) -> str:
        """``{method}-{position}``, the file stem."""
        return f"{self.method}-{self.position}"

    def direction(self, layer: int) -> torch.Tensor:
        """The unit direction at ``layer``.

        Raises:
            ConfigError: the vector has no direction at that layer.
        """
        if layer not in self.directions:
            raise ConfigError(f"{self.name} of {self.trait} has no layer {layer}; it has layers {list(self.layers)}")
        return self.directions[layer]

    def spread(self, layer: int) -> float:
        """The steering unit at ``layer``: the per-token spread (see :attr:`spread_unit`).

        Example:
            >>> vector.spread(6) * 1.5   # the length coefficient 1.5 adds at layer 6
        """
        if layer not in self.spreads:
            raise ConfigError(f"{self.name} of {self.trait} records no spread at layer {layer}")
        return float(self.spreads[layer])

    # ------------------------------------------------------------------ files

    def save(self, folder: str | Path) -> Path:
        """Write ``{folder}/{method}-{position}.safetensors`` and its JSON sidecar atomically.

        Example:
            >>> vector.save("experiments/gemma-3-270m/extraction/states/optimism/vectors")
        """
        from safetensors.torch import save_file

        path = vector_path(folder, self.method, self.position)
        tensors = {f"layer.{i}": self.directions[i].detach().float().cpu().contiguous() for i in self.layers}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        write_json(path.with_suffix(".json"), self.metadata())
        return path

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's content."""
        return {
            "format": FORMAT,
            "trait": self.trait,
            "trait_hash": self.trait_hash,
            "method": self.method,
            "position": self.position,
            "layer_convention": LAYER_CONVENTION,
            "layers": list(self.layers),
            "hidden_size": self.hidden_size,
            "n_pairs": self.n_pairs,
            "model": dict(self.model),
            "raw_norms": {str(k): float(v) for k, v in sorted(self.raw_norms.items())},
            "activation_norms": {str(k): float(v) for k, v in sorted(self.activation_norms.items())},
            "spreads": {str(k): float(v) for k, v in sorted(self.spreads.items())},
            "spread_unit": self.spread_unit,
            "position_spreads": {str(k): float(v) for k, v in sorted(self.position_spreads.items())},
            "traitvec_version": self.traitvec_version,
            "created": self.created,
            "extra": dict(self.extra),
        }

    @classmethod
    def load(cls, path: str | Path) -> TraitVector:
        """Read a vector written by :meth:`save` (``path`` may name the .safetensors or the .json).

        Format 1 files load with a warning: their ``spreads`` are position spreads.

        Raises:
            VectorError: missing file, wrong format, a sidecar of another structure, or tensors
                that disagree with the sidecar; the message names the file.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        sidecar = path.with_suffix(".json")
        for p in (path, sidecar):
            if not p.is_file():
                raise VectorError(f"{p} does not exist; a vector is a .safetensors file with a .json sidecar")
        try:
            meta = read_json_text(sidecar.read_text(encoding="utf-8"), where=str(sidecar))
        except (JSONError, UnicodeDecodeError) as err:
            raise VectorError(f"{sidecar}: not valid JSON ({err}); re-extract the vector") from None
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        if found not in (FORMAT, _FORMAT_1):
            raise VectorError(f"{sidecar}: format is {found!r}, expected {FORMAT!r}")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise VectorError(f"{path}: cannot read safetensors ({err}); re-extract the vector") from None
        try:
            return cls._from_files(path, meta, tensors)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if isinstance(err, VectorError):
                raise
            raise VectorError(f"{sidecar}: the sidecar's structure is wrong ({type(err).__name__}: {err})") from None

    @classmethod
    def _from_files(cls, path: Path, meta: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> TraitVector:
        directions: dict[int, torch.Tensor] = {}
        for layer in meta["layers"]:
            key = f"layer.{int(layer)}"
            if key not in tensors:
                raise VectorError(f"{path}: no tensor {key!r} although the sidecar lists layer {layer}")
            tensor = tensors[key].float()
            if tensor.dim() != 1 or tensor.shape[0] != meta["hidden_size"]:
                raise VectorError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected ({meta['hidden_size']},)")
            if not math.isclose(float(tensor.norm()), 1.0, rel_tol=1e-3):
                raise VectorError(f"{path}: {key} has norm {float(tensor.norm()):.4f}; saved directions are unit norm")
            directions[int(layer)] = tensor
        old = meta["format"] == _FORMAT_1
        if old:
            logger.warning(
                "%s is a format 1 vector: its steering unit is the spread of its %s activations, not the "
                "per-token spread format 2 records; coefficients do not carry over to re-extracted vectors",
                path,
                meta.get("position"),
            )
        spreads = _by_layer(meta["spreads"])
        return cls(
            directions=directions,
            method=str(meta["method"]),
            position=str(meta["position"]),
            model=dict(meta["model"]),
            trait=str(meta["trait"]),
            trait_hash=str(meta["trait_hash"]),
            n_pairs=int(meta["n_pairs"]),
            raw_norms=_by_layer(meta["raw_norms"]),
            activation_norms=_by_layer(meta["activation_norms"]),
            spreads=spreads,
            position_spreads=spreads if old else _by_layer(meta["position_spreads"]),
            spread_unit="position" if old else str(meta["spread_unit"]),
            created=str(meta["created"]),
            traitvec_version=str(meta["traitvec_version"]),
            extra=dict(meta.get("extra", {})),
        )

    # ------------------------------------------------------------------ compatibility

    def check_model(self, loaded: LoadedModel) -> list[str]:
        """Check the vector fits ``loaded`` (a :class:`~traitvec.models.LoadedModel`).

        Returns:
            Warnings (different depth or model family) — transfer is allowed but worth knowing.

        Raises:
            VectorError: the widths differ, or a layer does not exist in the target model.
        """
        if loaded.hidden_size != self.hidden_size:
            raise VectorError(
                f"{self.trait} {self.name} has width {self.hidden_size} (extracted on {self.model.get('name')}) but "
                f"{loaded.name} has width {loaded.hidden_size}; a vector only applies to models of the same width"
            )
        missing = [i for i in self.layers if i >= loaded.num_layers]
        if missing and len(missing) == len(self.layers):
            raise VectorError(f"{self.trait} {self.name}: layers {missing} do not exist in {loaded.name}")
        warnings = []
        depth = self.model.get("num_layers")
        if depth is not None and depth != loaded.num_layers:
            warnings.append(
                f"{self.trait} {self.name} was extracted on a model with {depth} layers; {loaded.name} has "
                f"{loaded.num_layers}; layer indices are used as they are"
            )
        family = self.model.get("model_type")
        if family is not None and family != loaded.model_type:
            warnings.append(
                f"{self.trait} {self.name} was extracted on a {family} model and is applied to a {loaded.model_type} "
                "model; the directions may not mean the same there"
            )
        for message in warnings:
            logger.warning(message)
        return warnings

    # ------------------------------------------------------------------ llama.cpp

    def to_gguf(
        self,
        path: str | Path,
        *,
        layers: Sequence[int] | None = None,
        coefficient: float = 1.0,
        scale: str = "spread",
    ) -> Path:
        """Export as a llama.cpp control vector (``llama-cli --control-vector file.gguf``).

        llama.cpp adds tensor ``direction.{k}`` to the output of block ``k`` (0-based), the same
        convention as traitvec's layer ``k``; it rejects ``direction.0``, so layer 0 is skipped.
        Each exported tensor is ``coefficient × unit`` (× the layer's spread when
        ``scale="spread"``), so ``--control-vector-scaled file 1.0`` applies ``coefficient``.

        Args:
            path: output ``.gguf`` file (written atomically).
            layers: layers to export (default: all of the vector's layers except 0).
            coefficient: steering strength in ``scale`` units.
            scale: ``"spread"`` (default) or ``"absolute"``.
        """
        import gguf

        if scale not in ("spread", "absolute"):
            raise ConfigError(f"scale = {scale!r}; use 'spread' or 'absolute'")
        chosen = list(layers) if layers is not None else list(self.layers)
        if 0 in chosen:
            logger.warning("llama.cpp control vectors cannot steer layer 0 (direction.0 is rejected); skipping it")
            chosen = [i for i in chosen if i != 0]
        if not chosen:
            raise ConfigError("no layer left to export; llama.cpp control vectors start at layer 1")
        arch = "controlvector"
        with atomic_path(path, suffix=".gguf") as tmp:
            writer = gguf.GGUFWriter(str(tmp), arch)
            writer.add_string(f"{arch}.model_hint", str(self.model.get("model_type", "unknown")))
            writer.add_uint32(f"{arch}.layer_count", len(chosen))
            for layer in chosen:
                amount = coefficient * (self.spread(layer) if scale == "spread" else 1.0)
                data = (self.direction(layer) * amount).float().numpy()
                writer.add_tensor(f"direction.{layer}", data)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
        return Path(path)
