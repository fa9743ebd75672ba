"""Batching and padding token sequences, the same way for capture, generation and the local judge.

- :func:`length_batches` groups sequences of similar length under a padded-token budget (little
  padding, longest batch first so an out-of-memory error shows up at once).
- :func:`pad_batch` pads one batch to a rectangle, left or right, with the attention mask and
  explicit position ids that count only real tokens, so a row's result never depends on its
  padding or on what else is in the batch.
- :class:`DeviceCache` keeps a batch's CPU tensors (position weights, masks) and their copy on
  every device that asks for one, made once per device: on a model split across devices
  (``device_map`` over several GPUs) each layer's hook combines them with ``hidden.device``'s copy.
- :class:`BatchReductions` is what capture computes from one layer's output ``[batch, tokens,
  width]`` of one padded batch: weighted means over selected positions, and optionally the sum of
  the states of chosen tokens and the states of a few sampled tokens (the per-token spread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = ["PaddedBatch", "length_batches", "pad_batch", "DeviceCache", "BatchReductions", "TOKEN_SUM", "SAMPLED"]
__all__ += ["release_freed_memory"]

Side = Literal["left", "right"]


def length_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group indices into batches of similar length whose padded size stays under the budget.

    A batch is sorted longest first and padded to its first member's length; a sequence longer
    than the budget gets a batch of its own. Batches come longest first.

    Example:
        >>> length_batches([5, 3, 4, 9], max_batch_tokens=10)
        [[3], [0, 2], [1]]
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


@dataclass(frozen=True)
class PaddedBatch:
    """A padded batch of token sequences (CPU tensors).

    Attributes:
        input_ids: ``[batch, width]`` token ids, padding filled with the pad id.
        attention_mask: ``[batch, width]`` 1 for real tokens, 0 for padding.
        position_ids: ``[batch, width]`` 0, 1, 2, … over each row's real tokens (0 on padding).
        offsets: where each row's first real token sits (0 for right padding).
        lengths: each row's number of real tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]

    @property
    def width(self) -> int:
        """Padded length of the batch."""
        return int(self.input_ids.shape[1])


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, *, side: Side = "right") -> PaddedBatch:
    """Pad ``sequences`` to one rectangle on the ``side`` given.

    Raises:
        ValueError: no sequences, an empty sequence, or an unknown side.

    Example:
        >>> batch = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
        >>> batch.input_ids.tolist(), batch.position_ids.tolist(), batch.offsets
        ([[5, 6, 7], [0, 0, 8]], [[0, 1, 2], [0, 0, 0]], (0, 2))
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side {side!r}; use 'left' or 'right'")
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = tuple(len(s) for s in sequences)
    if min(lengths) == 0:
        raise ValueError(f"sequence {lengths.index(0)} is empty")
    width = max(lengths)
    input_ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    offsets = []
    for row, ids in enumerate(sequences):
        offset = width - len(ids) if side == "left" else 0
        input_ids[row, offset : offset + len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, offset : offset + len(ids)] = 1
        offsets.append(offset)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return PaddedBatch(input_ids, attention, position_ids, tuple(offsets), lengths)


class DeviceCache:
    """CPU tensors and their copies on every device that asks for them, each copy made once.

    A model dispatched over several devices runs each decoder layer where its weights are; a hook
    that combines batch tensors with a layer's output asks for ``cache.on(hidden.device)``.

    Example:
        >>> cache = DeviceCache({"weights": torch.ones(2, 3)})
        >>> cache.on(torch.device("cpu"))["weights"].shape
        torch.Size([2, 3])
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = dict(tensors)
        self._copies: dict[torch.device, dict[str, torch.Tensor]] = {}

    def on(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The tensors on ``device`` (moved the first time that device asks)."""
        copies = self._copies.get(device)
        if copies is None:
            copies = {name: tensor.to(device) for name, tensor in self._tensors.items()}
            self._copies[device] = copies
        return copies

    @property
    def devices(self) -> tuple[torch.device, ...]:
        """The devices copies were made for, in the order they asked."""
        return tuple(self._copies)


TOKEN_SUM = "__token_sum__"
"""Key of :meth:`BatchReductions.reduce`'s ``[width]`` sum of the states of the counted tokens."""
SAMPLED = "__sampled__"
"""Key of :meth:`BatchReductions.reduce`'s ``[n_sampled, width]`` states of the sampled tokens."""


class BatchReductions:
    """Everything capture reads from one layer's output for one padded batch.

    Args:
        weights: per reduction name, ``[batch, tokens]`` float32 weights (each row sums to 1 over
            the positions it averages).
        counted: ``[batch, tokens]`` 1.0 at the tokens whose states are summed (``TOKEN_SUM``);
            ``None`` for none.
        sampled: ``(rows, columns)`` of the tokens whose states are kept (``SAMPLED``, in this
            order); ``None`` for none.

    Padding never enters a sum: positions no reduction reads are zeroed with ``where`` first, so
    NaN or inf there stays out. Sums are float32 whatever the model's dtype.
    """

    def __init__(
        self,
        weights: Mapping[str, torch.Tensor],
        counted: torch.Tensor | None = None,
        sampled: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.names = tuple(weights)
        masks = [w > 0 for w in weights.values()] + ([counted > 0] if counted is not None else [])
        tensors = {f"w.{name}": w for name, w in weights.items()}
        tensors["used"] = torch.stack(masks).any(0).unsqueeze(-1)
        if counted is not None:
            tensors["counted"] = counted
        if sampled is not None:
            tensors["rows"], tensors["columns"] = sampled
        self.cache = DeviceCache(tensors)

    def reduce(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: [batch, width]}`` weighted sums (plus ``TOKEN_SUM`` and ``SAMPLED``) on ``hidden.device``."""
        t = self.cache.on(hidden.device)
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        states = torch.where(t["used"], hidden, zero).float()
        out = {name: torch.einsum("bt,btd->bd", t[f"w.{name}"], states) for name in self.names}
        if "counted" in t:
            out[TOKEN_SUM] = torch.einsum("bt,btd->d", t["counted"], states)
        if "rows" in t:
            out[SAMPLED] = states[t["rows"], t["columns"]]
        return out


def release_freed_memory() -> None:
    """Hand memory that has been freed back to the operating system (glibc's ``malloc_trim``).

    glibc keeps freed blocks in its arenas for reuse, so after a group of batches the resident
    memory can stay above what is held. Called after each group of a long stream (monitoring
    many texts); on 1,000 texts it lowered the monitor's peak private memory from 116 to 99 MiB
    (one run each, benchmarks/monitor.py's memory child). A no-op where the C library has no
    ``malloc_trim`` (macOS, musl).
    """
    global _TRIM
    if _TRIM is None:
        import ctypes

        try:
            _TRIM = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None
