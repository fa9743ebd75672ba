"""Capturing residual-stream activations at every requested layer in one batched forward pass.

:func:`capture` turns a trait's prompts into :class:`~traitvec.positions.Selection` s (which tokens
each position averages: :mod:`traitvec.positions`); :func:`capture_sequences` groups them by
length under a token budget (little padding; halved on out-of-memory) and pads each batch
(:mod:`traitvec.batching`); hooks on the requested layers reduce the batch to ``[batch × width]``
per position as the activations stream past (nothing per-token is kept) and the deepest one
stops the forward pass (no later layers, no output head) — or the same reductions run in an
nnsight trace (:mod:`traitvec.capture_nnsight`). Explicit position ids make results independent
of batch size and padding side; sums are float32.

Devices. Inputs go to the embedding's device; the position weights and masks of a batch are
moved to each layer's ``hidden.device`` inside the hook, once per device
(:class:`~traitvec.batching.DeviceCache`), so a model dispatched over several GPUs captures as
one on a single device does.

Memory. Each batch's reductions are written into their rows as soon as the batch is done: into
tensors in memory, or — with ``capture(write_to=...)``, as the extraction stage does — straight
into the activation files on disk (:class:`~traitvec.activations.ActivationsWriter`), so memory
does not grow with the number of pairs. The per-token spread keeps :data:`SPREAD_SAMPLE` token
states per layer (and one running sum), whatever the number of pairs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from ._io import atomic_path
from .activations import Activations, ActivationsWriter, MemoryRows, RowSink, map_tensors
from .batching import BatchReductions, DeviceCache, length_batches, pad_batch
from .errors import ConfigError, ModelError
from .hooks import HookSet, StopForward, hidden_of
from .models import LoadedModel
from .positions import (
    POSITIONS,
    SPREAD_SAMPLE,
    SPREAD_SEED,
    Position,
    Selection,
    TokenSpread,
    batch_reductions,
    check_positions,
    position_extra,
    trait_selections,
    with_spread_sample,
)
from .traits import Trait

__all__ = ["POSITIONS", "Position", "BACKENDS", "Backend", "Selection", "capture", "capture_sequences"]
__all__ += ["resolve_layers", "Activations", "length_batches", "DeviceCache", "CAPTURE_FORMAT"]

logger = logging.getLogger(__name__)

Backend = Literal["hooks", "nnsight"]
BACKENDS: tuple[Backend, ...] = ("hooks", "nnsight")

CAPTURE_FORMAT = 2
"""Version of what capture computes; part of every activations key, bumped when numbers change.

2: ``last-token`` skips trailing special tokens; per-token spreads; answer positions."""

Reduced = dict[int, dict[str, torch.Tensor]]  # one batch: {layer: {reduction: [batch, width] float32}}


def resolve_layers(loaded: LoadedModel, layers: Sequence[int] | str | None) -> tuple[int, ...]:
    """Validate a layer request (``None``/``"all"`` means every layer; negatives count from the end)."""
    n = loaded.num_layers
    if layers is None or layers == "all":
        return tuple(range(n))
    if isinstance(layers, str):
        raise ConfigError(f"layers = {layers!r}; use 'all' or a list of integers")
    out = []
    for layer in layers:
        index = layer + n if layer < 0 else layer
        if not 0 <= index < n:
            raise ConfigError(f"layer {layer} does not exist: {loaded.name} has layers 0..{n - 1}")
        out.append(index)
    if not out:
        raise ConfigError("no layers requested; pass 'all' or a non-empty list")
    return tuple(sorted(set(out)))


def default_budget(loaded: LoadedModel) -> int:
    """Padded tokens per capture batch: 32768 on GPU; 1024 on CPU, where small batches stay in cache
    (measured on gemma-3-270m, 2 cores: 530 tok/s at 1024 against 380 at 4096)."""
    return 32768 if loaded.device.type == "cuda" else 1024


def capture_sequences(
    loaded: LoadedModel,
    selections: Sequence[Selection],
    layers: Sequence[int],
    *,
    max_batch_tokens: int | None = None,
    padding_side: Literal["left", "right"] = "right",
    show_progress: bool = False,
    backend: Backend = "hooks",
) -> dict[str, torch.Tensor]:
    """Mean activations over selected positions of token sequences, at every layer in one pass.

    Args:
        loaded: the model.
        selections: per sequence, its token ids and the positions each reduction averages.
            Every sequence must name the same reductions.
        layers: 0-based decoder layers, sorted.
        max_batch_tokens: padded tokens per batch (default 1024 on CPU, 32768 on GPU); halves
            on out-of-memory.
        padding_side: where padding goes; results are the same either way.
        show_progress: show a tqdm bar.
        backend: ``"hooks"`` (traitvec's own forward hooks) or ``"nnsight"`` (the same reductions
            inside an nnsight trace); both give the same numbers.

    Returns:
        ``{reduction name: tensor [n_sequences, n_layers, width]}``, float32 on CPU.

    Example:
        >>> sel = Selection(ids=(2, 651, 3437), positions={"mean": (1, 2), "last": (2,)})
        >>> capture_sequences(loaded, [sel], layers=(3, 6))["mean"].shape
        torch.Size([1, 2, 640])
    """
    names = _check_selections(selections)
    layers = tuple(layers)
    sinks = {name: MemoryRows(len(selections), len(layers), loaded.hidden_size) for name in names}
    _run_batches(loaded, selections, layers, sinks, None, max_batch_tokens, padding_side, show_progress, backend)
    return {name: sink.tensor for name, sink in sinks.items()}


def _check_selections(selections: Sequence[Selection]) -> tuple[str, ...]:
    """The reduction names every selection shares; a clear error for an empty or uneven request."""
    if not selections:
        raise ConfigError("nothing to capture: no sequences")
    names = tuple(selections[0].positions)
    for i, sel in enumerate(selections):
        if tuple(sel.positions) != names:
            raise ValueError(f"sequence {i} names reductions {tuple(sel.positions)}, expected {names}")
        if not sel.ids:
            raise ConfigError(f"sequence {i} is empty after tokenisation")
        for name, where in sel.positions.items():
            if not where:
                raise ValueError(f"sequence {i}: reduction {name!r} selects no token")
    return names


def _run_batches(
    loaded: LoadedModel,
    selections: Sequence[Selection],
    layers: tuple[int, ...],
    sinks: Mapping[str, RowSink],
    spread: TokenSpread | None,
    max_batch_tokens: int | None,
    padding_side: Literal["left", "right"],
    show_progress: bool,
    backend: Backend,
) -> None:
    """Capture every batch and hand its rows to the sinks as soon as it is done."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown capture backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side = {padding_side!r}; use 'left' or 'right'")
    budget = max_batch_tokens or default_budget(loaded)
    lengths = [len(s.ids) for s in selections]
    pending = length_batches(lengths, budget)
    bar = tqdm(total=sum(lengths), unit="tok", desc="capture", leave=False, disable=not show_progress)
    try:
        while pending:
            batch = pending.pop(0)
            try:
                reduced = _reduce_batch(loaded, [selections[i] for i in batch], layers, padding_side, backend)
            except torch.OutOfMemoryError:
                budget = _smaller_budget(batch, lengths, budget)
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            for name, sink in sinks.items():
                values = torch.stack([reduced[layer][name] for layer in layers], dim=1)
                if not bool(torch.isfinite(values).all()):
                    raise ModelError(f'non-finite activations captured at {name}; try dtype = "float32"')
                sink.write(batch, values)
            if spread is not None:
                spread.add(batch, reduced, layers)
            bar.update(sum(lengths[i] for i in batch))
    finally:
        bar.close()


def _smaller_budget(batch: list[int], lengths: Sequence[int], budget: int) -> int:
    """After an out-of-memory error on ``batch``: the halved token budget (the batch is split in two)."""
    if len(batch) == 1:
        raise ModelError(
            f"out of memory on a single sequence of {lengths[batch[0]]} tokens; use a smaller dtype, "
            "device_map, or shorter prefills"
        ) from None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    budget = max(max(lengths[i] for i in batch), budget // 2)
    logger.warning("out of memory on a batch of %d; halving the token budget to %d", len(batch), budget)
    return budget


def _reduce_batch(
    loaded: LoadedModel,
    selections: list[Selection],
    layers: tuple[int, ...],
    padding_side: Literal["left", "right"],
    backend: Backend,
) -> Reduced:
    """Pad one batch, weight its selected positions, and reduce it at every requested layer."""
    padded = pad_batch([s.ids for s in selections], loaded.tokenizer.pad_token_id, side=padding_side)
    device = loaded.device
    inputs = {
        "input_ids": padded.input_ids.to(device),
        "attention_mask": padded.attention_mask.to(device),
        "position_ids": padded.position_ids.to(device),
    }
    reductions = batch_reductions(selections, padded.offsets, padded.width)
    if backend == "nnsight":
        from .capture_nnsight import nnsight_reduce

        return nnsight_reduce(loaded, inputs, layers, reductions)
    return _hooks_reduce(loaded, inputs, layers, reductions)


def _hooks_reduce(
    loaded: LoadedModel, inputs: Mapping[str, torch.Tensor], layers: tuple[int, ...], reductions: BatchReductions
) -> Reduced:
    """The reductions with traitvec's forward hooks; the deepest layer's hook stops the forward pass."""
    reduced: Reduced = {}
    deepest = layers[-1]

    def reducer(layer: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = reductions.reduce(hidden_of(output))  # on the layer's own device
            reduced[layer] = {name: tensor.to("cpu") for name, tensor in out.items()}
            if layer == deepest:
                raise StopForward

        return hook

    with HookSet() as hooks, torch.inference_mode():
        for layer in layers:
            hooks.forward(loaded.layers[layer], reducer(layer), label=f"capture.layer{layer}")
        try:
            loaded.model(**inputs, use_cache=False)
        except StopForward:
            pass
        else:  # pragma: no cover - the deepest hook always raises
            raise RuntimeError("capture did not reach the deepest requested layer")
    return reduced


def capture(
    loaded: LoadedModel,
    trait: Trait,
    *,
    positions: Sequence[Position] | Position | None = None,
    layers: Sequence[int] | str | None = None,
    response_tokens: int = 5,
    answer_tokens: int = 5,
    max_batch_tokens: int | None = None,
    padding_side: Literal["left", "right"] = "right",
    show_progress: bool = False,
    backend: Backend = "hooks",
    write_to: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Activations]:
    """Capture a trait's positive and negative activations at every requested layer.

    Args:
        loaded: the model (:func:`traitvec.load_model`).
        trait: the trait (:func:`traitvec.load_trait`); jsonl traits go through the chat template.
        positions: capture positions (:mod:`traitvec.positions`): ``prefill-mean``,
            ``last-token``, ``response-mean`` for prefill traits; ``answer-mean``,
            ``answer-first-k``, ``prefill-mean`` for conversation traits. Default: the first two
            of the trait's kind. All come from one forward pass; ``response-mean`` adds a greedy
            generation of ``response_tokens`` tokens first.
        layers: 0-based layers, ``"all"`` or ``None`` (all).
        response_tokens: ``k`` for ``response-mean``.
        answer_tokens: ``k`` for ``answer-first-k``.
        max_batch_tokens: padded tokens per batch.
        padding_side: ``"right"`` or ``"left"``; results agree to float tolerance.
        show_progress: show progress bars.
        backend: ``"hooks"`` (default, fastest) or ``"nnsight"``: the same reductions inside an
            nnsight trace, for cross-checking against the tool most research code uses.
        write_to: ``{position: path}``: stream each position's activations into that file (with
            its JSON sidecar) as batches finish, so memory does not grow with the number of
            pairs; the returned activations are then memory-mapped from the files.

    Returns:
        ``{position: Activations}``; every one records the per-token spreads of the layers.

    Example:
        >>> acts = capture(loaded, trait, positions=["prefill-mean", "last-token"])
        >>> acts["prefill-mean"].positive.shape
        torch.Size([92, 18, 640])
    """
    wanted = check_positions(positions, trait)
    if write_to is not None and set(write_to) != set(wanted):
        raise ConfigError(f"capture(write_to=) names {sorted(write_to)}; expected one path per position {wanted}")
    layer_list = resolve_layers(loaded, layers)
    selections, extra = trait_selections(
        loaded,
        trait,
        wanted,
        response_tokens=response_tokens,
        answer_tokens=answer_tokens,
        max_batch_tokens=max_batch_tokens,
        show_progress=show_progress,
    )
    selections = with_spread_sample(selections, SPREAD_SAMPLE, SPREAD_SEED)
    width, n_pairs = loaded.hidden_size, trait.n_pairs
    spread = TokenSpread(selections, len(layer_list), width)
    options = (max_batch_tokens, padding_side, show_progress, backend)
    if write_to is None:
        memory: dict[str, MemoryRows] = {p: MemoryRows(2 * n_pairs, len(layer_list), width) for p in wanted}
        _run_batches(loaded, selections, layer_list, memory, spread, *options)
        tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
            p: (m.tensor[:n_pairs], m.tensor[n_pairs:]) for p, m in memory.items()
        }
    else:
        with contextlib.ExitStack() as stack:  # on success each writer closes, then its file is renamed
            files: dict[str, RowSink] = {}
            for p in wanted:
                tmp = stack.enter_context(atomic_path(write_to[p], suffix=".safetensors"))
                files[p] = stack.enter_context(ActivationsWriter(tmp, n_pairs, len(layer_list), width))
            _run_batches(loaded, selections, layer_list, files, spread, *options)
        tensors = {p: map_tensors(write_to[p]) for p in wanted}
    result = _activations(loaded, trait, tensors, layer_list, spread, extra)
    for name, acts in result.items():
        if write_to is not None:
            acts.write_sidecar(Path(write_to[name]))
    return result


def _activations(
    loaded: LoadedModel,
    trait: Trait,
    tensors: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    layers: tuple[int, ...],
    spread: TokenSpread,
    extra: Mapping[str, Any],
) -> dict[str, Activations]:
    """One :class:`Activations` per position, each with the per-token spreads of the layers."""
    description = loaded.describe()
    spreads = spread.spreads(layers)
    for layer, value in spreads.items():
        if not math.isfinite(value):
            raise ModelError(f'non-finite per-token spread at layer {layer}; try dtype = "float32"')
    details = {"capture_format": CAPTURE_FORMAT, "token_spread": spread.details(), "traitvec_version": __version__}
    return {
        position: Activations(
            positive=positive,
            negative=negative,
            layers=layers,
            position=position,
            model=description,
            trait=trait.name,
            trait_hash=trait.files_hash,
            lines=trait.lines,
            extra={**details, **position_extra(position, extra)},
            token_spreads=spreads,
        )
        for position, (positive, negative) in tensors.items()
    }


class _CallableModule(types.ModuleType):
    """Calls :func:`capture`: once imported, this module replaces the function as ``traitvec.capture``."""

    __call__ = staticmethod(capture)


sys.modules[__name__].__class__ = _CallableModule
