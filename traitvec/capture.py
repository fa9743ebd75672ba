"""Capturing residual-stream activations at every requested layer in one batched forward pass.

Positions (what one example's activation is, per layer):

- ``prefill-mean``: mean over the prefill's real tokens — padding and special tokens (BOS, chat
  markers) excluded, since their activations are huge and identical across prompts;
- ``last-token``: the prefill's last real token;
- ``response-mean``: mean over the first ``k`` tokens the model greedily generates after the
  prefill, read from the exact token ids it produced (tokens after an EOS are not used).

How it stays at the speed of the forward pass: hooks on the requested layers reduce each batch to
``[batch × width]`` per position as the activations stream past (nothing per-token is kept),
the hook on the deepest requested layer then stops the forward pass (no later layers, no output
head), batches are formed by length under a token budget (little padding) and halve on
out-of-memory. Position ids are passed explicitly so results do not depend on batch size or on
padding side. Sums are taken in float32 whatever the model's dtype.
"""

from __future__ import annotations

import logging
import math
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ._io import atomic_path, write_json
from .errors import ConfigError, ModelError, VectorError
from .hooks import HookSet, StopForward, hidden_of
from .models import LoadedModel
from .prompting import encode_prefill
from .traits import Trait

__all__ = [
    "POSITIONS",
    "Position",
    "BACKENDS",
    "Backend",
    "Activations",
    "Selection",
    "capture",
    "capture_sequences",
    "resolve_layers",
    "length_batches",
]

logger = logging.getLogger(__name__)

Position = Literal["prefill-mean", "last-token", "response-mean"]
POSITIONS: tuple[Position, ...] = ("prefill-mean", "last-token", "response-mean")
Backend = Literal["hooks", "nnsight"]
BACKENDS: tuple[Backend, ...] = ("hooks", "nnsight")


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
        """``(positive, negative)`` activations ``[n_pairs, width]`` at ``layer``."""
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
            "format": "traitvec.activations/1",
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
        """Read activations written by :meth:`save`."""
        import json

        from safetensors.torch import load_file

        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            tensors = load_file(str(path))
        except (OSError, ValueError) as err:
            raise VectorError(f"{path}: cannot read activations ({err}); delete it to recompute") from None
        if meta.get("format") != "traitvec.activations/1":
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


@dataclass(frozen=True)
class Selection:
    """Which token positions of one sequence each named reduction averages (0-based, unpadded)."""

    ids: tuple[int, ...]
    positions: Mapping[str, tuple[int, ...]]


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


def length_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group indices into batches of similar length whose padded size stays under the budget.

    Longest first, so an out-of-memory error shows up on the first batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * width > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


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
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown capture backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if not selections:
        raise ConfigError("nothing to capture: no sequences")
    names = tuple(selections[0].positions)
    layers = tuple(layers)
    for i, sel in enumerate(selections):
        if tuple(sel.positions) != names:
            raise ValueError(f"sequence {i} names reductions {tuple(sel.positions)}, expected {names}")
        if not sel.ids:
            raise ConfigError(f"sequence {i} is empty after tokenisation")
        for name, where in sel.positions.items():
            if not where:
                raise ValueError(f"sequence {i}: reduction {name!r} selects no token")
    width = loaded.hidden_size
    out = {name: torch.zeros(len(selections), len(layers), width, dtype=torch.float32) for name in names}
    budget = max_batch_tokens or default_budget(loaded)
    lengths = [len(s.ids) for s in selections]
    pending = length_batches(lengths, budget)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(lengths), unit="tok", desc="capture", leave=False)
    try:
        while pending:
            batch = pending.pop(0)
            try:
                _capture_batch(loaded, [selections[i] for i in batch], batch, layers, names, out, padding_side, backend)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise ModelError(
                        f"out of memory on a single sequence of {lengths[batch[0]]} tokens; use a smaller dtype, "
                        "device_map, or shorter prefills"
                    ) from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                budget = max(max(lengths[i] for i in batch), budget // 2)
                logger.warning("out of memory on a batch of %d; halving the token budget to %d", len(batch), budget)
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            if bar is not None:
                bar.update(sum(lengths[i] for i in batch))
    finally:
        if bar is not None:
            bar.close()
    return out


def _capture_batch(
    loaded: LoadedModel,
    selections: list[Selection],
    rows: list[int],
    layers: tuple[int, ...],
    names: tuple[str, ...],
    out: dict[str, torch.Tensor],
    padding_side: str,
    backend: Backend = "hooks",
) -> None:
    device = loaded.device
    pad_id = loaded.tokenizer.pad_token_id
    seq_len = max(len(s.ids) for s in selections)
    batch = len(selections)
    input_ids = torch.full((batch, seq_len), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, seq_len), dtype=torch.long)
    weights = {name: torch.zeros((batch, seq_len), dtype=torch.float32) for name in names}
    for b, sel in enumerate(selections):
        n = len(sel.ids)
        offset = seq_len - n if padding_side == "left" else 0
        input_ids[b, offset : offset + n] = torch.tensor(sel.ids, dtype=torch.long)
        attention[b, offset : offset + n] = 1
        for name in names:
            where = torch.tensor(sel.positions[name], dtype=torch.long) + offset
            weights[name][b, where] = 1.0 / len(where)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    input_ids, attention, position_ids = input_ids.to(device), attention.to(device), position_ids.to(device)
    weights = {name: w.to(device) for name, w in weights.items()}
    used = torch.stack([w > 0 for w in weights.values()]).any(0).unsqueeze(-1)
    deepest = layers[-1]
    slot = {layer: i for i, layer in enumerate(layers)}
    row_index = torch.tensor(rows, dtype=torch.long)
    if backend == "nnsight":
        inputs = {"input_ids": input_ids, "attention_mask": attention, "position_ids": position_ids}
        reduced = _nnsight_reduce(loaded, inputs, layers, weights, used)
        for layer in layers:
            for name in names:
                out[name][row_index, slot[layer]] = reduced[layer][name].to("cpu")
        return

    def hook(module: torch.nn.Module, args: Any, output: Any, *, layer: int) -> None:
        hidden = hidden_of(output)
        # where() keeps NaN/inf at unused (padding) positions out of the sums.
        hidden = torch.where(used, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).float()
        for name in names:
            reduced = torch.einsum("bt,btd->bd", weights[name], hidden)
            out[name][row_index, slot[layer]] = reduced.to("cpu")
        if layer == deepest:
            raise StopForward

    with HookSet() as hooks, torch.inference_mode():
        for layer in layers:
            hooks.forward(loaded.layers[layer], _bind(hook, layer), label=f"capture.layer{layer}")
        try:
            loaded.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=False)
        except StopForward:
            pass
        else:  # pragma: no cover - the deepest hook always raises
            raise RuntimeError("capture did not reach the deepest requested layer")


def _nnsight_reduce(
    loaded: LoadedModel,
    inputs: dict[str, torch.Tensor],
    layers: tuple[int, ...],
    weights: dict[str, torch.Tensor],
    used: torch.Tensor,
) -> dict[int, dict[str, torch.Tensor]]:
    """The same reductions as the hooks, written inside an nnsight trace (stopped after the deepest layer)."""
    try:
        from nnsight import LanguageModel
    except ImportError as err:  # pragma: no cover - nnsight is a core dependency
        raise ConfigError(f"the nnsight capture backend needs nnsight ({err}); pip install nnsight") from None
    wrapped = _NNSIGHT.get(loaded.model)
    if wrapped is None:
        # nnsight 0.8 deprecates LanguageModel for TransformersModel, which builds a pipeline from a repo
        # id; LanguageModel wraps the module already loaded here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LanguageModel is deprecated")
            wrapped = LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
        _NNSIGHT[loaded.model] = wrapped
    stack: Any = wrapped
    for part in loaded.layers_path.split("."):
        stack = getattr(stack, part)
    zero = torch.zeros((), dtype=loaded.model.dtype, device=loaded.device)
    with torch.inference_mode(), wrapped.trace(dict(inputs), use_cache=False) as tracer:
        saved = dict().save()
        for layer in layers:
            hidden = hidden_of(stack[layer].output)
            hidden = torch.where(used, hidden, zero).float()
            saved[layer] = {name: torch.einsum("bt,btd->bd", w, hidden) for name, w in weights.items()}
        tracer.stop()
    return saved


_NNSIGHT: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()


def _bind(hook: Any, layer: int) -> Any:
    def bound(module: torch.nn.Module, args: Any, output: Any) -> None:
        return hook(module, args, output, layer=layer)

    return bound


def _prefill_selection(ids: list[int], special: frozenset[int]) -> dict[str, tuple[int, ...]]:
    real = tuple(i for i, token in enumerate(ids) if token not in special)
    if not real:
        real = tuple(range(len(ids)))
    return {"prefill-mean": real, "last-token": (len(ids) - 1,)}


def capture(
    loaded: LoadedModel,
    trait: Trait,
    *,
    positions: Sequence[Position] | Position = ("prefill-mean",),
    layers: Sequence[int] | str | None = None,
    response_tokens: int = 5,
    max_batch_tokens: int | None = None,
    padding_side: Literal["left", "right"] = "right",
    show_progress: bool = False,
    backend: Backend = "hooks",
) -> dict[str, Activations]:
    """Capture a trait's positive and negative activations at every requested layer.

    Args:
        loaded: the model (:func:`traitvec.load_model`).
        trait: the trait (:func:`traitvec.load_trait`); jsonl traits go through the chat template.
        positions: any of ``prefill-mean``, ``last-token``, ``response-mean``. The first two
            come from one forward pass; ``response-mean`` adds a greedy generation of
            ``response_tokens`` tokens and one pass over prefill + response (which then also
            yields the other two).
        layers: 0-based layers, ``"all"`` or ``None`` (all).
        response_tokens: ``k`` for ``response-mean``.
        max_batch_tokens: padded tokens per batch.
        padding_side: ``"right"`` or ``"left"``; results agree to float tolerance.
        show_progress: show progress bars.
        backend: ``"hooks"`` (default, fastest) or ``"nnsight"``: the same reductions inside an
            nnsight trace, for cross-checking against the tool most research code uses.

    Returns:
        ``{position: Activations}``.

    Example:
        >>> acts = capture(loaded, trait, positions=["prefill-mean", "last-token"])
        >>> acts["prefill-mean"].positive.shape
        torch.Size([92, 18, 640])
    """
    wanted = (positions,) if isinstance(positions, str) else tuple(dict.fromkeys(positions))
    for position in wanted:
        if position not in POSITIONS:
            raise ConfigError(f"unknown position {position!r}; use one of {', '.join(POSITIONS)}")
    if not wanted:
        raise ConfigError("no position requested")
    if response_tokens < 1:
        raise ConfigError(f"response_tokens = {response_tokens}; use 1 or more")
    layer_list = resolve_layers(loaded, layers)
    prompts = list(trait.positive) + list(trait.negative)
    encoded = [encode_prefill(loaded, p, chat=trait.chat) for p in prompts]
    special = loaded.special_ids
    extra: dict[str, Any] = {}
    if "response-mean" in wanted:
        from .generation import generate

        generations = generate(
            loaded,
            encoded,
            max_new_tokens=response_tokens,
            max_batch_tokens=max_batch_tokens,
            show_progress=show_progress,
            desc="response tokens",
        )
        selections = []
        counts = []
        for ids, gen in zip(encoded, generations, strict=True):
            response = list(gen.tokens)
            if not response:  # the model ended at once: use the EOS it produced
                response = list(gen.raw_tokens[:1])
            if not response:
                raise ModelError("the model generated no token; cannot take a response-mean")
            full = ids + response
            where = _prefill_selection(ids, special)
            where["response-mean"] = tuple(range(len(ids), len(full)))
            counts.append(len(response))
            selections.append(Selection(tuple(full), where))
        extra = {"response_tokens": response_tokens, "mean_response_tokens": sum(counts) / len(counts)}
    else:
        selections = [Selection(tuple(ids), _prefill_selection(ids, special)) for ids in encoded]
    reduced = capture_sequences(
        loaded,
        selections,
        layer_list,
        max_batch_tokens=max_batch_tokens,
        padding_side=padding_side,
        show_progress=show_progress,
        backend=backend,
    )
    n = trait.n_pairs
    description = loaded.describe()
    result = {}
    for position in wanted:
        tensor = reduced[position]
        result[position] = Activations(
            positive=tensor[:n].clone(),
            negative=tensor[n:].clone(),
            layers=layer_list,
            position=position,
            model=description,
            trait=trait.name,
            trait_hash=trait.files_hash,
            lines=trait.lines,
            extra=extra if position == "response-mean" else {},
        )
        if not math.isfinite(float(tensor.abs().max())):
            raise ModelError(f'non-finite activations captured at {position}; try dtype = "float32"')
    return result
