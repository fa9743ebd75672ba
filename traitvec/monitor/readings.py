"""Reading texts with trait vectors: the projection of every token on every requested trait.

A :class:`Readout` is one trait direction at one layer with the unit its values are written in
(the vector's spread at that layer, :meth:`~traitvec.vectors.TraitVector.spread`) and a centre
subtracted first, so a token's value is ``(h · v − centre) / spread`` where ``h`` is the residual
stream at that token (the output of decoder block ``layer``).

:func:`project_texts` runs one group of texts through the model: length-sorted batches under a
token budget (:mod:`traitvec.batching`, halved on out-of-memory), padded with explicit position
ids so a text's values do not depend on its batch, with a forward hook (through
:class:`~traitvec.hooks.HookSet`, the only registrant) on every layer some readout needs. Each hook
multiplies the layer's output by that layer's stacked directions — every readout of the layer in
one matrix product, float32 — and the deepest one stops the forward pass, so no later layer and
no output head is computed. Nothing but ``[tokens × readouts]`` values leaves the hooks.
:func:`read_tokens` streams any number of texts through :func:`project_texts` in groups of at most
:data:`CHUNK_TEXTS` texts (or :data:`CHUNK_TOKENS` tokens), yielding results in input order, so
memory does not grow with the number of texts.

Summaries (:meth:`Reading.summary`): ``mean``, ``max`` and ``last`` over the non-special tokens of
the text's summary range; special tokens (BOS, chat markers:
:attr:`~traitvec.models.LoadedModel.special_ids`) keep their values in ``per_token`` but are
flagged and excluded, since their activations are huge and shared by every text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..batching import length_batches, pad_batch, release_freed_memory
from ..errors import ConfigError, ModelError
from ..hooks import HookSet, StopForward, hidden_of
from ..models import LoadedModel
from ..vectors import TraitVector
from .texts import MonitorText

__all__ = ["CHUNK_TEXTS", "CHUNK_TOKENS", "DIGITS", "Reading", "Readout", "chunked", "project_texts", "read_tokens"]

logger = logging.getLogger(__name__)

CHUNK_TEXTS = 256
"""Texts per group of :func:`read_tokens` (a group is also cut at :data:`CHUNK_TOKENS` tokens)."""
CHUNK_TOKENS = 65536
"""Tokens per group of :func:`read_tokens`: bounds memory whatever the texts' lengths."""
DIGITS = 4
"""Decimal places of the values written by :meth:`Reading.to_dict` (1e-4 of a spread)."""


@dataclass(frozen=True)
class Readout:
    """One trait direction at one layer: ``value = (h · direction − centre) / scale``.

    Attributes:
        name: the key its values go under (``"cat/trait"``).
        layer: 0-based decoder layer whose output is read.
        direction: unit direction ``[width]``, float32 on CPU.
        scale: the unit of the values (the vector's spread at ``layer``).
        centre: subtracted from the raw projection before scaling (0: none).
    """

    name: str
    layer: int
    direction: torch.Tensor = field(repr=False)
    scale: float
    centre: float = 0.0

    def __post_init__(self) -> None:
        if self.direction.dim() != 1:
            raise ConfigError(
                f"Readout {self.name!r}: direction must be 1-D [width], got {tuple(self.direction.shape)}"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"Readout {self.name!r}: scale = {self.scale!r}; expected a positive finite number")
        if not math.isfinite(self.centre):
            raise ConfigError(f"Readout {self.name!r}: centre = {self.centre!r}; expected a finite number")
        norm = float(self.direction.norm())
        if not math.isclose(norm, 1.0, rel_tol=1e-3):
            raise ConfigError(f"Readout {self.name!r}: direction has norm {norm:.4g}; pass a unit direction")

    @classmethod
    def from_vector(cls, vector: TraitVector, layer: int, *, name: str | None = None, centre: float = 0.0) -> Readout:
        """The vector's direction at ``layer``, in units of its spread there.

        Example:
            >>> readout = Readout.from_vector(vector, layer=6)
        """
        return cls(name or vector.trait, layer, vector.direction(layer).float(), vector.spread(layer), centre)


@dataclass(frozen=True)
class Reading:
    """The values of one text on every readout.

    Attributes:
        text: the text.
        names: readout names, in column order.
        values: ``[tokens × readouts]`` float32 values.
    """

    text: MonitorText
    names: tuple[str, ...]
    values: np.ndarray = field(repr=False)

    def per_token(self, name: str) -> np.ndarray:
        """Every token's value on readout ``name``."""
        return self.values[:, self.names.index(name)]

    def summary(self, name: str) -> dict[str, float | None]:
        """``mean``, ``max`` and ``last`` over the summarised tokens (``None`` when there are none)."""
        where = self.text.summarised
        if not where:
            return {"mean": None, "max": None, "last": None}
        column = self.per_token(name)[where].astype(np.float64)
        return {"mean": float(column.mean()), "max": float(column.max()), "last": float(column[-1])}

    def to_dict(self, digits: int = DIGITS) -> dict[str, Any]:
        """The ``projections.json`` entry of this text (values rounded to ``digits`` places)."""
        text = self.text
        traits = {}
        for name in self.names:
            summary = {k: None if v is None else round(v, digits) for k, v in self.summary(name).items()}
            traits[name] = {"per_token": [round(float(v), digits) for v in self.per_token(name)], **summary}
        return {
            **dict(text.source),
            "text": text.text,
            "ids": list(text.ids),
            "tokens": list(text.tokens),
            "offsets": None if text.offsets is None else [list(o) for o in text.offsets],
            "special": list(text.special),
            "span": list(text.span),
            "traits": traits,
        }


# --------------------------------------------------------------------------------------------
# the forward pass


class _Plan:
    """The readouts grouped by layer: one ``[width × k]`` matrix per layer, moved once per device."""

    def __init__(self, readouts: Sequence[Readout], width: int) -> None:
        if not readouts:
            raise ConfigError("nothing to read: pass at least one Readout")
        names = [r.name for r in readouts]
        if len(set(names)) != len(names):
            raise ConfigError(f"readout names must be unique, got {names}")
        for r in readouts:
            if r.direction.shape[0] != width:
                raise ConfigError(f"readout {r.name!r} has width {r.direction.shape[0]}; the model's width is {width}")
        self.names = tuple(names)
        self.layers = tuple(sorted({r.layer for r in readouts}))
        self.columns = {layer: [i for i, r in enumerate(readouts) if r.layer == layer] for layer in self.layers}
        self.matrix = {
            layer: torch.stack([readouts[i].direction.float() for i in cols], dim=1)
            for layer, cols in self.columns.items()
        }
        self.centre = {layer: torch.tensor([readouts[i].centre for i in cols]) for layer, cols in self.columns.items()}
        self.scale = {layer: torch.tensor([readouts[i].scale for i in cols]) for layer, cols in self.columns.items()}
        self._moved: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def on(self, layer: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (layer, str(device))
        if key not in self._moved:
            self._moved[key] = (
                self.matrix[layer].to(device),
                self.centre[layer].to(device),
                self.scale[layer].to(device),
            )
        return self._moved[key]


def project_texts(
    loaded: LoadedModel,
    texts: Sequence[MonitorText],
    readouts: Sequence[Readout],
    *,
    max_batch_tokens: int | None = None,
    padding_side: Literal["left", "right"] = "right",
) -> list[Reading]:
    """Every token's value on every readout, for a group of texts held in memory.

    Args:
        loaded: the model.
        texts: the texts (:func:`encode_texts`, :func:`encode_messages`, :func:`encode_generated`).
        readouts: what to read; their layers are hooked, the deepest stops the pass.
        max_batch_tokens: padded tokens per batch (default 1024 on CPU, 32768 on GPU); halves on
            out-of-memory.
        padding_side: where padding goes; the values are the same either way.

    Returns:
        One :class:`Reading` per text, in the order given.

    Example:
        >>> readings = project_texts(loaded, encode_texts(loaded, ["Dear Sir,"]), [Readout.from_vector(v, 6)])
        >>> readings[0].summary("styles/formality")["mean"]
    """
    if padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side = {padding_side!r}; use 'left' or 'right'")
    plan = _Plan(readouts, loaded.hidden_size)
    for layer in plan.layers:
        if not 0 <= layer < loaded.num_layers:
            raise ConfigError(f"layer {layer} does not exist: {loaded.name} has layers 0..{loaded.num_layers - 1}")
    budget = max_batch_tokens or (32768 if loaded.device.type == "cuda" else 1024)
    lengths = [len(t.ids) for t in texts]
    pending = length_batches(lengths, budget)
    out: list[np.ndarray | None] = [None] * len(texts)
    while pending:
        batch = pending.pop(0)
        try:
            values = _project_batch(loaded, [texts[i].ids for i in batch], plan, padding_side)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise ModelError(
                    f"out of memory on a single text of {lengths[batch[0]]} tokens; use a smaller dtype, "
                    "device_map, or shorter texts"
                ) from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            logger.warning("out of memory on a batch of %d texts; splitting it", len(batch))
            pending[:0] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
            continue
        for i, value in zip(batch, values, strict=True):
            out[i] = value
    readings = []
    for text, v in zip(texts, out, strict=True):
        assert v is not None  # every index is in exactly one batch
        readings.append(Reading(text, plan.names, v))
    return readings


def _project_batch(
    loaded: LoadedModel, ids: Sequence[Sequence[int]], plan: _Plan, padding_side: Literal["left", "right"]
) -> list[np.ndarray]:
    padded = pad_batch(ids, loaded.tokenizer.pad_token_id, side=padding_side)
    device = loaded.device
    inputs = {
        "input_ids": padded.input_ids.to(device),
        "attention_mask": padded.attention_mask.to(device),
        "position_ids": padded.position_ids.to(device),
    }
    values = torch.zeros(len(ids), padded.width, len(plan.names), dtype=torch.float32)
    deepest = plan.layers[-1]

    def reader(layer: int) -> Callable[[nn.Module, Any, Any], None]:
        columns = plan.columns[layer]

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            hidden = hidden_of(output)
            matrix, centre, scale = plan.on(layer, hidden.device)
            values[:, :, columns] = ((hidden.float() @ matrix - centre) / scale).to("cpu")
            if layer == deepest:
                raise StopForward

        return hook

    with HookSet() as hooks, torch.inference_mode():
        for layer in plan.layers:
            hooks.forward(loaded.layers[layer], reader(layer), label=f"monitor.layer{layer}")
        try:
            loaded.model(**inputs, use_cache=False)
        except StopForward:
            pass
        else:  # pragma: no cover - the deepest hook always raises
            raise RuntimeError("monitor did not reach the deepest requested layer")
    rows = []
    for row, (offset, length) in enumerate(zip(padded.offsets, padded.lengths, strict=True)):
        chunk = values[row, offset : offset + length].numpy()
        if not np.isfinite(chunk).all():
            raise ModelError(f'non-finite activations while monitoring {loaded.name}; try dtype = "float32"')
        rows.append(chunk)
    return rows


def read_tokens(
    loaded: LoadedModel,
    texts: Iterable[MonitorText],
    readouts: Sequence[Readout],
    *,
    max_batch_tokens: int | None = None,
    show_progress: bool = False,
) -> Iterator[Reading]:
    """Stream texts through :func:`project_texts` in groups, yielding readings in input order.

    Memory holds one group (at most :data:`CHUNK_TEXTS` texts or :data:`CHUNK_TOKENS` tokens),
    whatever the number of texts.

    Example:
        >>> for reading in read_tokens(loaded, (encode_texts(loaded, [t])[0] for t in lines), readouts):
        ...     print(reading.summary("styles/formality")["mean"])
    """
    bar = tqdm(unit="tok", desc="monitor", leave=False, disable=not show_progress)
    try:
        for group in chunked(texts):
            yield from project_texts(loaded, group, readouts, max_batch_tokens=max_batch_tokens)
            bar.update(sum(len(t.ids) for t in group))
            release_freed_memory()
    finally:
        bar.close()


def chunked(texts: Iterable[MonitorText]) -> Iterator[list[MonitorText]]:
    """Groups of at most :data:`CHUNK_TEXTS` texts and (unless one text is longer) :data:`CHUNK_TOKENS` tokens."""
    group: list[MonitorText] = []
    tokens = 0
    for text in texts:
        if group and (len(group) >= CHUNK_TEXTS or tokens + len(text.ids) > CHUNK_TOKENS):
            yield group
            group, tokens = [], 0
        group.append(text)
        tokens += len(text.ids)
    if group:
        yield group
