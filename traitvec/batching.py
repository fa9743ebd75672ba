"""Batching and padding token sequences, the same way for capture, generation and the local judge.

- :func:`length_batches` groups sequences of similar length under a padded-token budget (little
  padding, longest batch first so an out-of-memory error shows up at once).
- :func:`pad_batch` pads one batch to a rectangle, left or right, with the attention mask and
  explicit position ids that count only real tokens, so a row's result never depends on its
  padding or on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["PaddedBatch", "length_batches", "pad_batch"]

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
