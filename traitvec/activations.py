"""Captured activations of a trait's pairs: the :class:`Activations` value and its file format.

File format (``{name}.safetensors`` + ``{name}.json``): the safetensors file holds two float32
tensors, ``positive`` and ``negative``, each ``[n_pairs, n_layers, width]`` and matched by row;
the JSON sidecar records the format (``traitvec.activations/1``), the layers, the position, the
model's description, the trait and its files' hash, each pair's line number and extra details.

:mod:`traitvec.capture` produces these; :mod:`traitvec.methods` and :mod:`traitvec.evaluation`
consume them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_path, read_json_text, write_json
from .errors import ConfigError, VectorError

__all__ = ["Activations", "FORMAT"]

FORMAT = "traitvec.activations/1"


@dataclass(frozen=True)
class Activations:
    """Activations of a trait's pairs at one position.

    Attributes:
        positive: ``[n_pairs, n_layers, width]`` float32 on CPU.
        negative: same shape, matched by row.
        layers: the layer index of each slice along dim 1.
        position: how each example was reduced to one vector per layer.
        model: the model's description (:meth:`LoadedModel.describe`).
        trait: ``category/trait``.
        trait_hash: the trait files' hash.
        lines: the line number of each pair in the trait files.
        extra: details such as the number of response tokens.

    Example:
        >>> acts = capture(loaded, trait)["prefill-mean"]
        >>> positive, negative = acts.at(6)          # [n_pairs, width] each
        >>> acts.save("activations/prefill-mean.safetensors")
    """

    positive: torch.Tensor
    negative: torch.Tensor
    layers: tuple[int, ...]
    position: str
    model: Mapping[str, Any]
    trait: str
    trait_hash: str
    lines: tuple[int, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return int(self.positive.shape[0])

    def at(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positive, negative)`` activations ``[n_pairs, width]`` at ``layer``.

        Raises:
            ConfigError: ``layer`` was not captured.
        """
        try:
            index = self.layers.index(layer)
        except ValueError:
            raise ConfigError(f"layer {layer} was not captured; captured layers are {list(self.layers)}") from None
        return self.positive[:, index], self.negative[:, index]

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (safetensors) with a JSON sidecar of the same name, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {
            "format": FORMAT,
            "layers": list(self.layers),
            "position": self.position,
            "model": dict(self.model),
            "trait": self.trait,
            "trait_hash": self.trait_hash,
            "lines": list(self.lines),
            "extra": dict(self.extra),
        }
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"positive": self.positive.contiguous(), "negative": self.negative.contiguous()}, str(tmp))
        write_json(path.with_suffix(".json"), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Activations:
        """Read activations written by :meth:`save`.

        Raises:
            VectorError: a missing or unreadable file, or one that is not a traitvec activations file.
        """
        from safetensors.torch import load_file

        path = Path(path)
        try:
            meta = read_json_text(path.with_suffix(".json").read_text(), where=str(path.with_suffix(".json")))
            tensors = load_file(str(path))
        except (OSError, ValueError) as err:
            raise VectorError(f"{path}: cannot read activations ({err}); delete it to recompute") from None
        if meta.get("format") != FORMAT:
            raise VectorError(f"{path}: not a traitvec activations file (format {meta.get('format')!r})")
        return cls(
            positive=tensors["positive"],
            negative=tensors["negative"],
            layers=tuple(meta["layers"]),
            position=meta["position"],
            model=meta["model"],
            trait=meta["trait"],
            trait_hash=meta["trait_hash"],
            lines=tuple(meta["lines"]),
            extra=meta.get("extra", {}),
        )
