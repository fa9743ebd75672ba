"""Capture positions: which tokens of each sequence a position averages, for both kinds of trait.

Prefill traits (``positive.txt``, or jsonl prompts rendered through the chat template):

- ``prefill-mean``: every real token — special ids (:attr:`LoadedModel.special_ids`: BOS, EOS,
  padding, chat markers) excluded;
- ``last-token``: the last real token, so an appended ``<eos>`` or end-of-turn marker is skipped;
- ``response-mean``: the first ``response_tokens`` tokens the model greedily generates after the
  prefill (the exact ids it produced; tokens after an EOS are not used).

Conversation traits (``{"messages": [...]}`` rows, pairs identical except the final answer):

- ``answer-mean``: every token of the final assistant message as given in the data (no
  generation), located by :func:`~traitvec.prompting.encode_conversation`;
- ``answer-first-k``: its first ``answer_tokens`` tokens (all of them when it is shorter);
- ``prefill-mean``: every real token of the rendered conversation, context included.

``last-token`` and ``response-mean`` are refused for conversations: the last token of a rendered
conversation is the template's end of turn, and generating after an answer that is already there
reads a continuation nobody wrote. ``answer-*`` is refused for prefill traits (no answer to read).

Every selection also lists the real tokens whose states the per-token spread is computed over
(:data:`SPREAD_SAMPLE` of them, drawn with a fixed seed by :func:`with_spread_sample`): the real
tokens of the prefill or conversation, never the generated ones, so the spread is the same
whichever positions are captured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from .batching import SAMPLED, TOKEN_SUM, BatchReductions
from .errors import ConfigError, ModelError
from .generation import generate
from .models import LoadedModel
from .prompting import encode_conversation, encode_prefill
from .traits import Trait

__all__ = [
    "Position",
    "POSITIONS",
    "PREFILL_POSITIONS",
    "CONVERSATION_POSITIONS",
    "Selection",
    "SPREAD_SAMPLE",
    "SPREAD_SEED",
    "default_positions",
    "check_positions",
    "trait_selections",
    "with_spread_sample",
    "batch_reductions",
    "TokenSpread",
    "position_extra",
]

Position = Literal["prefill-mean", "last-token", "response-mean", "answer-mean", "answer-first-k"]
POSITIONS: tuple[Position, ...] = ("prefill-mean", "last-token", "response-mean", "answer-mean", "answer-first-k")
PREFILL_POSITIONS: tuple[Position, ...] = ("prefill-mean", "last-token", "response-mean")
"""Positions a prefill trait can be captured at."""
CONVERSATION_POSITIONS: tuple[Position, ...] = ("answer-mean", "answer-first-k", "prefill-mean")
"""Positions a conversation trait can be captured at."""
_DEFAULTS: dict[bool, tuple[Position, ...]] = {
    False: ("prefill-mean", "last-token"),
    True: ("answer-mean", "answer-first-k"),
}

SPREAD_SAMPLE = 512
"""Token states kept per layer for the per-token spread (all of them when there are fewer)."""
SPREAD_SEED = 0
"""Seed of the draw of those tokens (part of the capture format: it fixes the numbers)."""


@dataclass(frozen=True)
class Selection:
    """Which token positions of one sequence each named reduction averages (0-based, unpadded).

    Attributes:
        ids: the token ids.
        positions: per reduction name, the positions it averages.
        spread: the real tokens whose states the per-token spread is taken over (empty: none).
        sample: the positions among ``spread`` whose states are kept for it.
    """

    ids: tuple[int, ...]
    positions: Mapping[str, tuple[int, ...]]
    spread: tuple[int, ...] = ()
    sample: tuple[int, ...] = ()


def default_positions(trait: Trait) -> tuple[Position, ...]:
    """``prefill-mean`` and ``last-token`` for prefill traits; ``answer-mean``, ``answer-first-k`` for conversations."""
    return _DEFAULTS[trait.conversation]


def check_positions(
    positions: Sequence[str] | str | None, trait: Trait, *, setting: str = "capture(positions=)"
) -> tuple[Position, ...]:
    """The positions to capture for ``trait`` (``None``: :func:`default_positions`), duplicates dropped.

    Raises:
        ConfigError: an unknown position, none at all, or one that does not fit the trait's form;
            the message names ``setting``.
    """
    if positions is None:
        return default_positions(trait)
    wanted = (positions,) if isinstance(positions, str) else tuple(dict.fromkeys(positions))
    if not wanted:
        raise ConfigError(f"{setting} is empty; choose at least one of {', '.join(POSITIONS)}", setting=setting)
    allowed = CONVERSATION_POSITIONS if trait.conversation else PREFILL_POSITIONS
    for position in wanted:
        if position not in POSITIONS:
            raise ConfigError(f"{setting} = {position!r} is not one of {', '.join(POSITIONS)}", setting=setting)
        if position not in allowed:
            raise ConfigError(_misfit(position, trait, setting, allowed), setting=setting)
    return tuple(p for p in POSITIONS if p in wanted)  # a fixed order: files and keys do not depend on it


def _misfit(position: str, trait: Trait, setting: str, allowed: tuple[Position, ...]) -> str:
    if trait.conversation:
        why = (
            "the last token of a rendered conversation is the template's end of turn, not the answer"
            if position == "last-token"
            else "a conversation already holds its answer; generating after it reads a continuation nobody wrote"
        )
        kind = 'a conversation trait ({"messages": [...]} rows)'
    else:
        why = "its prompts have no final assistant answer to read"
        kind = "a prefill trait"
    return f"{setting} = {position!r} does not fit {trait.name}, {kind}: {why}; use one of {', '.join(allowed)}"


def _real(ids: Sequence[int], special: frozenset[int], span: range | None = None) -> tuple[int, ...]:
    """Positions (within ``span``, default all) whose token is not special; all of them when every one is."""
    where = span if span is not None else range(len(ids))
    real = tuple(i for i in where if ids[i] not in special)
    return real or tuple(where)


def trait_selections(
    loaded: LoadedModel,
    trait: Trait,
    wanted: Sequence[Position],
    *,
    response_tokens: int = 5,
    answer_tokens: int = 5,
    max_batch_tokens: int | None = None,
    show_progress: bool = False,
) -> tuple[list[Selection], dict[str, Any]]:
    """One :class:`Selection` per prompt (positives, then negatives) naming the ``wanted`` positions.

    Returns:
        The selections and details to record (response token counts, ``answer_tokens``).
    """
    for name, value in (("response_tokens", response_tokens), ("answer_tokens", answer_tokens)):
        if value < 1:
            raise ConfigError(f"{name} = {value}; use 1 or more", setting=f"ExtractionSettings.{name}")
    prompts = (*trait.positive, *trait.negative)
    special = loaded.special_ids
    if trait.conversation:
        return _conversation_selections(loaded, prompts, wanted, special, answer_tokens)
    encoded = [encode_prefill(loaded, p, chat=trait.chat) for p in prompts]
    selections = []
    for ids in encoded:
        real = _real(ids, special)
        where = {"prefill-mean": real, "last-token": (real[-1],)}
        selections.append(Selection(tuple(ids), {p: where[p] for p in wanted if p in where}, spread=real))
    if "response-mean" not in wanted:
        return selections, {}
    return _with_responses(loaded, selections, response_tokens, max_batch_tokens, show_progress)


def _conversation_selections(
    loaded: LoadedModel,
    prompts: Sequence[Any],
    wanted: Sequence[Position],
    special: frozenset[int],
    answer_tokens: int,
) -> tuple[list[Selection], dict[str, Any]]:
    selections = []
    lengths = []
    for prompt in prompts:
        enc = encode_conversation(loaded, prompt.messages)
        ids = enc.input_ids
        answer = _real(ids, special, enc.answer_positions())
        where = {
            "answer-mean": answer,
            "answer-first-k": answer[:answer_tokens],
            "prefill-mean": _real(ids, special),
        }
        lengths.append(len(answer))
        selections.append(Selection(ids, {p: where[p] for p in wanted}, spread=_real(ids, special)))
    extra: dict[str, Any] = {"mean_answer_tokens": sum(lengths) / len(lengths)}
    if "answer-first-k" in wanted:
        extra["answer_tokens"] = answer_tokens
    return selections, extra


def _with_responses(
    loaded: LoadedModel,
    selections: list[Selection],
    response_tokens: int,
    max_batch_tokens: int | None,
    show_progress: bool,
) -> tuple[list[Selection], dict[str, Any]]:
    """Greedily generate ``response_tokens`` after each prefill and add the ``response-mean`` positions."""
    generations = generate(
        loaded,
        [list(s.ids) for s in selections],
        max_new_tokens=response_tokens,
        max_batch_tokens=max_batch_tokens,
        show_progress=show_progress,
        desc="response tokens",
    )
    out = []
    counts = []
    for sel, gen in zip(selections, generations, strict=True):
        response = list(gen.tokens) or list(gen.raw_tokens[:1])  # a model that ends at once: its EOS
        if not response:
            raise ModelError("the model generated no token; cannot take a response-mean")
        start = len(sel.ids)
        positions = {**sel.positions, "response-mean": tuple(range(start, start + len(response)))}
        counts.append(len(response))
        out.append(replace(sel, ids=sel.ids + tuple(response), positions=positions))
    return out, {"response_tokens": response_tokens, "mean_response_tokens": sum(counts) / len(counts)}


def with_spread_sample(
    selections: Sequence[Selection], size: int = SPREAD_SAMPLE, seed: int = SPREAD_SEED
) -> list[Selection]:
    """The selections with ``sample`` set: ``size`` of all their ``spread`` tokens, drawn uniformly with ``seed``.

    The draw depends only on the spread tokens (their count per sequence, in order), never on
    batching or on which positions are captured.
    """
    counts = np.array([len(s.spread) for s in selections], dtype=np.int64)
    total = int(counts.sum())
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for i, sel in enumerate(selections):
        lo, hi = np.searchsorted(chosen, [starts[i], starts[i + 1]])
        out.append(replace(sel, sample=tuple(sel.spread[int(j - starts[i])] for j in chosen[lo:hi])))
    return out


def batch_reductions(selections: list[Selection], offsets: Sequence[int], width: int) -> BatchReductions:
    """Per reduction ``[batch, width]`` weights ``1/len(selected)``; the spread tokens and the sampled ones."""
    names = tuple(selections[0].positions)
    weights = {name: torch.zeros((len(selections), width), dtype=torch.float32) for name in names}
    counted = torch.zeros((len(selections), width), dtype=torch.float32)
    rows: list[int] = []
    columns: list[int] = []
    for row, (sel, offset) in enumerate(zip(selections, offsets, strict=True)):
        for name in names:
            where = torch.tensor(sel.positions[name], dtype=torch.long) + offset
            weights[name][row, where] = 1.0 / len(where)
        if sel.spread:
            counted[row, torch.tensor(sel.spread, dtype=torch.long) + offset] = 1.0
        rows += [row] * len(sel.sample)
        columns += [offset + p for p in sel.sample]
    if not any(sel.spread for sel in selections):
        return BatchReductions(weights)
    sampled = (torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long))
    return BatchReductions(weights, counted, sampled)


class TokenSpread:
    """Per layer: the running sum of the spread tokens' states and the states of the sampled ones.

    Memory: ``SPREAD_SAMPLE × n_layers × width`` float32 (24 MiB for 18 layers of width 640, 1.3 GiB
    for 80 of width 8192) plus one float64 sum per layer, whatever the number of pairs.
    """

    def __init__(self, selections: Sequence[Selection], n_layers: int, width: int) -> None:
        self.count = sum(len(s.spread) for s in selections)
        self.sums = torch.zeros(n_layers, width, dtype=torch.float64)
        offsets = [0]
        for sel in selections:
            offsets.append(offsets[-1] + len(sel.sample))
        self.offsets = offsets
        self.samples = torch.zeros(offsets[-1], n_layers, width, dtype=torch.float32)

    def add(
        self, batch: Sequence[int], reduced: Mapping[int, Mapping[str, torch.Tensor]], layers: Sequence[int]
    ) -> None:
        ids = [j for i in batch for j in range(self.offsets[i], self.offsets[i + 1])]
        for slot, layer in enumerate(layers):
            self.sums[slot] += reduced[layer][TOKEN_SUM].double()
            if ids:
                self.samples[ids, slot] = reduced[layer][SAMPLED]

    def spreads(self, layers: Sequence[int]) -> dict[int, float]:
        """Per layer, mean ``‖h_t − μ‖`` over the sampled tokens, ``μ`` the mean of every spread token."""
        mean = self.sums / max(self.count, 1)
        return {
            layer: float((self.samples[:, slot].double() - mean[slot]).norm(dim=1).mean())
            for slot, layer in enumerate(layers)
        }

    def details(self) -> dict[str, Any]:
        return {
            "estimator": "mean ||h_t - mu|| over a seeded sample of real tokens; mu the exact mean of all of them",
            "n_tokens": self.count,
            "n_sampled": self.offsets[-1],
            "seed": SPREAD_SEED,
        }


def position_extra(position: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The details of ``extra`` that belong to ``position``'s activations."""
    keys = {
        "response-mean": ("response_tokens", "mean_response_tokens"),
        "answer-mean": ("mean_answer_tokens",),
        "answer-first-k": ("answer_tokens", "mean_answer_tokens"),
    }.get(position, ())
    return {k: extra[k] for k in keys if k in extra}
