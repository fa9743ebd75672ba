"""Captured activations of a trait's pairs: the :class:`Activations` value and its file format.

File format 2 (``{name}.safetensors`` + ``{name}.json``): the safetensors file holds two float32
tensors, ``positive`` and ``negative``, each ``[n_layers, n_pairs, width]`` (layer-major, so one
layer of every pair is one contiguous block) and matched by row; the JSON sidecar records the
format (``traitvec.activations/2``), the layers, the position, the model's description, the trait
and its files' hash, each pair's line number, the per-token spread of every layer and extra
details. Format 1 files (``[n_pairs, n_layers, width]``, no per-token spreads) still load.

Files are written a batch at a time by :class:`ActivationsWriter` and read back memory-mapped,
so neither capture nor the methods that read them (:mod:`traitvec.methods`,
:mod:`traitvec.evaluation`, which go through :meth:`Activations.chunks`) hold every pair in
memory at once.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import torch

from ._io import atomic_path, read_json_text, write_json
from .errors import ConfigError, VectorError

__all__ = ["Activations", "ActivationsWriter", "MemoryRows", "RowSink", "map_tensors", "FORMAT", "CHUNK_BYTES"]

FORMAT = "traitvec.activations/2"
_FORMAT_1 = "traitvec.activations/1"
CHUNK_BYTES = 1 << 25
"""Bytes of float64 activations read at a time by :meth:`Activations.chunks` (32 MiB)."""
_MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class Activations:
    """Activations of a trait's pairs at one position.

    Attributes:
        positive: ``[n_pairs, n_layers, width]`` float32 on CPU (possibly memory-mapped).
        negative: same shape, matched by row.
        layers: the layer index of each slice along dim 1.
        position: how each example was reduced to one vector per layer.
        model: the model's description (:meth:`LoadedModel.describe`).
        trait: ``category/trait``.
        trait_hash: the trait files' hash.
        lines: the line number of each pair in the trait files.
        extra: details such as the number of response tokens.
        token_spreads: per layer, the mean ``‖h_t − μ‖`` over the real tokens of the prompts
            (:mod:`traitvec.capture`); empty for activations built by hand.

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
    token_spreads: Mapping[int, float] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return int(self.positive.shape[0])

    @property
    def width(self) -> int:
        """Width of the activations."""
        return int(self.positive.shape[-1])

    def _index(self, layer: int) -> int:
        try:
            return self.layers.index(layer)
        except ValueError:
            raise ConfigError(f"layer {layer} was not captured; captured layers are {list(self.layers)}") from None

    def at(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positive, negative)`` activations ``[n_pairs, width]`` at ``layer`` (views, not copies).

        Raises:
            ConfigError: ``layer`` was not captured.
        """
        index = self._index(layer)
        return self.positive[:, index], self.negative[:, index]

    def chunks(
        self, layer: int, rows: Sequence[int] | np.ndarray | None = None, size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(positive, negative)`` float64 chunks ``[≤ size, width]`` of the pairs ``rows`` (default all) at ``layer``.

        ``size`` defaults to what fits :data:`CHUNK_BYTES`, so a pass over a layer holds one chunk
        at a time, however many pairs there are.

        Example:
            >>> total = sum(p.sum(0) - n.sum(0) for p, n in acts.chunks(6))
        """
        positive, negative = self.at(layer)
        index = np.arange(self.n_pairs) if rows is None else np.asarray(rows, dtype=np.int64)
        step = size or max(1, CHUNK_BYTES // (16 * max(self.width, 1)))
        for start in range(0, len(index), step):
            part = torch.from_numpy(index[start : start + step])
            yield positive[part].double(), negative[part].double()

    # ------------------------------------------------------------------ files

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's content."""
        return {
            "format": FORMAT,
            "layers": list(self.layers),
            "position": self.position,
            "model": dict(self.model),
            "trait": self.trait,
            "trait_hash": self.trait_hash,
            "lines": list(self.lines),
            "token_spreads": {str(k): float(v) for k, v in sorted(self.token_spreads.items())},
            "extra": dict(self.extra),
        }

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (safetensors, format 2) with a JSON sidecar of the same name, atomically."""
        path = Path(path)
        n_layers = len(self.layers)
        with (
            atomic_path(path, suffix=".safetensors") as tmp,
            ActivationsWriter(tmp, self.n_pairs, n_layers, self.width) as w,
        ):
            for start in range(0, self.n_pairs, 1024):
                rows = list(range(start, min(start + 1024, self.n_pairs)))
                w.write(rows, self.positive[start : start + len(rows)])
                w.write([self.n_pairs + r for r in rows], self.negative[start : start + len(rows)])
        return self.write_sidecar(path)

    def write_sidecar(self, path: str | Path) -> Path:
        """Write only the JSON sidecar of ``path`` (the tensors already there), atomically."""
        path = Path(path)
        write_json(path.with_suffix(".json"), self.metadata())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Activations:
        """Read activations written by :meth:`save` or by capture, memory-mapped.

        Raises:
            VectorError: a missing, unreadable or corrupt file, a sidecar of another structure, or
                one that is not a traitvec activations file; the message names the file.
        """
        path = Path(path)
        sidecar = path.with_suffix(".json")
        try:
            meta = read_json_text(sidecar.read_text(encoding="utf-8"), where=str(sidecar))
        except (OSError, ValueError) as err:
            raise VectorError(
                f"{sidecar}: cannot read the activations sidecar ({err}); delete it to recompute"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, _FORMAT_1):
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise VectorError(f"{sidecar}: not a traitvec activations file (format {found!r})")
        if meta["format"] == FORMAT:
            positive, negative = map_tensors(path)
        else:
            positive, negative = _load_format_1(path)
        try:
            acts = cls(
                positive=positive,
                negative=negative,
                layers=tuple(int(i) for i in meta["layers"]),
                position=str(meta["position"]),
                model=dict(meta["model"]),
                trait=str(meta["trait"]),
                trait_hash=str(meta["trait_hash"]),
                lines=tuple(int(i) for i in meta["lines"]),
                extra=dict(meta.get("extra", {})),
                token_spreads={int(k): float(v) for k, v in meta.get("token_spreads", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise VectorError(f"{sidecar}: the sidecar's structure is wrong ({type(err).__name__}: {err})") from None
        if positive.shape[1] != len(acts.layers) or positive.shape[0] != len(acts.lines):
            raise VectorError(
                f"{path}: tensors of shape {tuple(positive.shape)} do not match the sidecar's "
                f"{len(acts.lines)} pairs and {len(acts.layers)} layers"
            )
        return acts


def _load_format_1(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        positive, negative = tensors["positive"], tensors["negative"]
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise VectorError(f"{path}: cannot read activations ({err}); delete it to recompute") from None
    if positive.dim() != 3 or positive.shape != negative.shape:
        raise VectorError(
            f"{path}: positive and negative tensors of shapes {tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    return positive.float(), negative.float()


class RowSink(Protocol):
    """Where captured rows go: ``write(rows, values [len(rows), n_layers, width])`` (a file or memory)."""

    def write(self, rows: Sequence[int], values: torch.Tensor) -> None: ...


class MemoryRows:
    """Captured rows kept in one float32 tensor ``[n_rows, n_layers, width]`` in memory."""

    def __init__(self, n_rows: int, n_layers: int, width: int) -> None:
        self.tensor = torch.zeros(n_rows, n_layers, width, dtype=torch.float32)

    def write(self, rows: Sequence[int], values: torch.Tensor) -> None:
        self.tensor[torch.tensor(list(rows), dtype=torch.long)] = values


class ActivationsWriter:
    """Writes the rows of one activations file (safetensors, format 2) as they come, holding none of them.

    The file is laid out in full when it opens (header, then zeros); :meth:`write` puts rows in
    place with positioned writes. Rows ``0..n_pairs-1`` are the positives, ``n_pairs..2·n_pairs-1``
    the negatives. Write into a temporary path and rename it when done
    (:func:`traitvec._io.atomic_path`).

    Example:
        >>> with atomic_path(path, suffix=".safetensors") as tmp, ActivationsWriter(tmp, 170, 18, 640) as w:
        ...     w.write([0, 5], values)              # values [2, 18, 640]
    """

    def __init__(self, path: str | os.PathLike[str], n_pairs: int, n_layers: int, width: int) -> None:
        self.n_pairs, self.n_layers, self.width = n_pairs, n_layers, width
        block = n_layers * n_pairs * width * 4
        shape = [n_layers, n_pairs, width]
        header = {
            "__metadata__": {"format": FORMAT},
            "positive": {"dtype": "F32", "shape": shape, "data_offsets": [0, block]},
            "negative": {"dtype": "F32", "shape": shape, "data_offsets": [block, 2 * block]},
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self._start = 8 + len(text)
        self._block = block
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.pwrite(self._fd, struct.pack("<Q", len(text)) + text, 0)
            os.ftruncate(self._fd, self._start + 2 * block)
        except BaseException:  # a full disk: no descriptor outlives the failed file
            os.close(self._fd)
            self._fd = -1
            raise

    def write(self, rows: Sequence[int], values: torch.Tensor) -> None:
        """Put ``values[i]`` (``[n_layers, width]``) at row ``rows[i]`` for every ``i``."""
        data = values.detach().to("cpu", torch.float32).contiguous().numpy()
        if data.shape != (len(rows), self.n_layers, self.width):
            raise ValueError(f"rows of shape {data.shape}; expected ({len(rows)}, {self.n_layers}, {self.width})")
        order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")
        runs: list[list[int]] = []  # positions in ``order`` of consecutive rows on one side
        for i in order:
            row = int(rows[i])
            if runs and int(rows[runs[-1][-1]]) == row - 1 and row != self.n_pairs:
                runs[-1].append(int(i))
            else:
                runs.append([int(i)])
        row_bytes = self.width * 4
        for run in runs:
            first = int(rows[run[0]])
            side, pair = divmod(first, self.n_pairs)
            for layer in range(self.n_layers):
                offset = self._start + side * self._block + (layer * self.n_pairs + pair) * row_bytes
                os.pwrite(self._fd, data[run, layer].tobytes(), offset)

    def close(self) -> None:
        """Flush the file to disk and close it (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            finally:  # closed even when the flush fails (a full disk)
                os.close(fd)

    def __enter__(self) -> ActivationsWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def map_tensors(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` ``[n_pairs, n_layers, width]`` memory-mapped from a format-2 file.

    Raises:
        VectorError: the file is missing, truncated, or its header is not the expected one.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= min(_MAX_HEADER, size - 8):
                raise ValueError(f"a header of {length} bytes in a file of {size}")
            header = json.loads(handle.read(length))
        shape = [int(x) for x in header["positive"]["shape"]]
        block = int(np.prod(shape)) * 4
        expected = {"dtype": "F32", "shape": shape, "data_offsets": [block, 2 * block]}
        if len(shape) != 3 or header["negative"] != expected or header["positive"]["data_offsets"] != [0, block]:
            raise ValueError("the tensors are not two float32 blocks [layers, pairs, width]")
        if size != 8 + length + 2 * block:
            raise ValueError(f"{size} bytes where the header needs {8 + length + 2 * block}")
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise VectorError(f"{path}: corrupt activations file ({err}); delete it to recompute") from None
    mapped = np.memmap(path, dtype=np.float32, mode="c", offset=8 + length, shape=(2, *shape))
    both = torch.from_numpy(mapped)
    return both[0].permute(1, 0, 2), both[1].permute(1, 0, 2)
