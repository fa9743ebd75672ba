"""Batched generation with exact token bookkeeping and per-row steering.

Prompts are left-padded per call (position ids follow the real tokens), so a row's output does
not depend on what else is in its batch. Each result keeps the prompt's token ids and the
generated ids; text is decoded from those ids for display only, never re-tokenised.

Greedy by default; ``do_sample=True`` samples with ``temperature``/``top_p`` from ``seed``
(reproducible for the same prompts and batch size). With ``steering``, row ``i`` is steered by
``steering[i]``; when the prompts are split into sub-batches each sub-batch carries exactly its
own rows' configurations.

Context. A prompt longer than the model's context minus ``max_new_tokens``
(:func:`context_length`) is cut to fit before it reaches the model (:func:`fit_context`), so a
pasted megabyte never generates for minutes or runs past the position embeddings. The **end** is
kept — it holds the chat template's generation prompt and the end of the question, which is what
the model answers — together with a leading BOS token; the tokens cut from the start are counted
in :attr:`Generation.dropped`, and one warning per call names the prompts that were cut.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

import torch

from .batching import length_batches, pad_batch
from .errors import ConfigError
from .models import LoadedModel
from .prompting import encode_chat
from .steering import Steer, SteeringHandle

__all__ = ["Generation", "generate", "eos_ids", "context_length", "fit_context"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One generated continuation.

    Attributes:
        prompt_ids: the prompt's token ids (no padding).
        tokens: generated ids before the first end-of-sequence token.
        raw_tokens: generated ids up to and including the first end-of-sequence token.
        text: ``tokens`` decoded, special tokens skipped (for display and judging).
        stopped: True when the model produced an end-of-sequence token.
        dropped: prompt tokens cut from the start to fit the model's context (``prompt_ids`` is
            what the model read).
    """

    prompt_ids: tuple[int, ...]
    tokens: tuple[int, ...]
    raw_tokens: tuple[int, ...]
    text: str
    stopped: bool
    dropped: int = 0


def eos_ids(loaded: LoadedModel) -> set[int]:
    """Token ids that end a generation (the tokenizer's EOS and the generation config's)."""
    ids: set[int] = set()
    config_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    for value in (loaded.tokenizer.eos_token_id, config_eos):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


_CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_NO_LIMIT = 10**8  # tokenizers without a known limit report ~1e30 as model_max_length


def context_length(loaded: LoadedModel) -> int | None:
    """The most tokens the model reads at once: its config's position limit, else the tokenizer's
    ``model_max_length``; ``None`` when neither says.

    Example:
        >>> context_length(loaded)
        32768
    """
    config: Any = getattr(loaded.model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in _CONTEXT_ATTRIBUTES:
        value = getattr(text_config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _NO_LIMIT:
            return value
    value = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        return value
    return None


def fit_context(loaded: LoadedModel, ids: Sequence[int], max_new_tokens: int) -> tuple[list[int], int]:
    """``ids`` cut to fit the context with ``max_new_tokens`` to spare, and how many tokens were cut.

    The end is kept (the generation prompt and the end of the question), and a leading BOS token.

    Raises:
        ConfigError: ``max_new_tokens`` leaves no room for a prompt in the model's context.

    Example:
        >>> ids, dropped = fit_context(loaded, encode_chat(loaded, very_long_question), 48)
    """
    ids = [int(t) for t in ids]
    limit = context_length(loaded)
    if limit is None:
        return ids, 0
    room = limit - max_new_tokens
    if room < 2:
        raise ConfigError(
            f"generate(max_new_tokens=) = {max_new_tokens} leaves no room for a prompt in the context of "
            f"{loaded.name} ({limit} tokens); ask for at most {limit - 2} new tokens",
            setting="generate(max_new_tokens=)",
        )
    if len(ids) <= room:
        return ids, 0
    bos = loaded.tokenizer.bos_token_id
    head = ids[:1] if bos is not None and ids[0] == bos else []
    kept = head + ids[len(ids) - (room - len(head)) :]
    return kept, len(ids) - len(kept)


def generate(
    loaded: LoadedModel,
    prompts: Sequence[Sequence[int]] | Sequence[str],
    *,
    max_new_tokens: int = 64,
    min_new_tokens: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    steering: Sequence[Sequence[Steer]] | None = None,
    max_batch_size: int = 32,
    max_batch_tokens: int | None = None,
    stop_strings: Sequence[str] = (),
    show_progress: bool = False,
    desc: str = "generate",
) -> list[Generation]:
    """Generate continuations for many prompts in length-sorted, left-padded batches.

    Args:
        loaded: the model.
        prompts: token id lists, or question strings (encoded with the chat template or the
            plain question/answer frame, see :mod:`traitvec.prompting`).
        max_new_tokens: tokens to generate per prompt.
        min_new_tokens: tokens generated before an end-of-sequence token may end a row (for
            fixed-length timing).
        do_sample: sample instead of greedy decoding.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        seed: sampling seed.
        steering: per-prompt lists of :class:`~traitvec.steering.Steer` (``[]`` for none).
        max_batch_size: rows per batch.
        max_batch_tokens: padded tokens (prompt + new) per batch; default 16384 on CPU, 65536 on GPU.
        stop_strings: texts that end a generation (e.g. ``"\nQuestion:"`` for the plain frame); the
            tokens that spell the stop string are not part of ``tokens``.
        show_progress: show a progress bar.
        desc: progress-bar label.

    Returns:
        One :class:`Generation` per prompt, in the order given.

    Example:
        >>> [g.text for g in generate(loaded, ["What causes rain?"], max_new_tokens=32)]
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens = {max_new_tokens}; use 1 or more")
    if steering is not None and len(steering) != len(prompts):
        raise ConfigError(f"steering has {len(steering)} rows for {len(prompts)} prompts; give one list per prompt")
    encoded, dropped = _encode(loaded, prompts, max_new_tokens)
    budget = max_batch_tokens or (65536 if loaded.device.type == "cuda" else 16384)
    lengths = [len(ids) + max_new_tokens for ids in encoded]
    batches = [
        b[i : i + max_batch_size] for b in length_batches(lengths, budget) for i in range(0, len(b), max_batch_size)
    ]
    results: list[Generation | None] = [None] * len(encoded)
    stop = eos_ids(loaded)
    steered = steering is not None and any(steering)
    handle = SteeringHandle(loaded) if steered else None
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoded), unit="prompt", desc=desc, leave=False)
    try:
        if handle is not None:
            handle.attach()
        for number, batch in enumerate(batches):
            if handle is not None and steering is not None:
                handle.set_rows([steering[i] for i in batch])
            outputs = _generate_batch(
                loaded,
                [encoded[i] for i in batch],
                max_new_tokens,
                do_sample,
                temperature,
                top_p,
                seed + number,
                stop,
                tuple(stop_strings),
                min_new_tokens,
            )
            for i, out in zip(batch, outputs, strict=True):
                results[i] = replace(out, dropped=dropped[i]) if dropped[i] else out
            if bar is not None:
                bar.update(len(batch))
    finally:
        if handle is not None:
            handle.remove()
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


def _encode(
    loaded: LoadedModel, prompts: Sequence[Sequence[int]] | Sequence[str], max_new_tokens: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of every prompt, cut to fit the context (one warning naming the prompts cut)."""
    encoded, dropped = [], []
    for p in prompts:
        ids = encode_chat(loaded, p) if isinstance(p, str) else [int(t) for t in p]
        if not ids:
            raise ConfigError("a prompt is empty after tokenisation")
        kept, cut = fit_context(loaded, ids, max_new_tokens)
        encoded.append(kept)
        dropped.append(cut)
    cut_rows = [i for i, n in enumerate(dropped) if n]
    if cut_rows:
        shown = ", ".join(map(str, cut_rows[:10])) + (" …" if len(cut_rows) > 10 else "")
        logger.warning(
            "%s: %d prompt(s) longer than the context (%s tokens) minus max_new_tokens (%d); kept the last "
            "tokens of each (prompt index %s; the first lost %d tokens)",
            loaded.name,
            len(cut_rows),
            context_length(loaded),
            max_new_tokens,
            shown,
            dropped[cut_rows[0]],
        )
    return encoded, dropped


class _Generates(Protocol):
    """transformers' ``GenerationMixin.generate`` as called here: ids in, a ``[batch, tokens]`` tensor out."""

    def generate(self, **kwargs: Any) -> torch.Tensor: ...


def _trim_stop(tokenizer: Any, tokens: list[int], stop_strings: tuple[str, ...]) -> list[int] | None:
    """The longest token prefix whose text holds none of ``stop_strings``, if one of them occurs."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if not any(s in text for s in stop_strings):
        return None
    end = len(tokens)
    while end > 0 and any(s in tokenizer.decode(tokens[:end], skip_special_tokens=True) for s in stop_strings):
        end -= 1
    # drop the partial stop string the kept prefix may end with (e.g. a lone "\n" before "Question:")
    while end > 0:
        tail = tokenizer.decode(tokens[:end], skip_special_tokens=True)
        if any(tail.endswith(s[:k]) for s in stop_strings for k in range(1, len(s))):
            end -= 1
            continue
        break
    return tokens[:end]


def _generate_batch(
    loaded: LoadedModel,
    prompts: list[list[int]],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    stop: set[int],
    stop_strings: tuple[str, ...] = (),
    min_new_tokens: int = 0,
) -> list[Generation]:
    from transformers import GenerationConfig

    pad = loaded.tokenizer.pad_token_id
    padded = pad_batch(prompts, pad, side="left")
    width = padded.width
    settings: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens or None,
        do_sample=do_sample,
        pad_token_id=pad,
        eos_token_id=sorted(stop) or None,
    )
    if do_sample:
        settings.update(temperature=temperature, top_p=top_p, top_k=0)
        torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if stop_strings:
        settings["stop_strings"] = list(stop_strings)
        extra["tokenizer"] = loaded.tokenizer
    config = GenerationConfig(**settings)
    device = loaded.device
    with torch.inference_mode():
        out = cast(_Generates, loaded.model).generate(
            input_ids=padded.input_ids.to(device),
            attention_mask=padded.attention_mask.to(device),
            generation_config=config,
            **extra,
        )
    new = out[:, width:].tolist()
    results = []
    for ids, row in zip(prompts, new, strict=True):
        cut = next((k for k, token in enumerate(row) if token in stop), None)
        tokens = row if cut is None else row[:cut]
        raw = row if cut is None else row[: cut + 1]
        stopped = cut is not None
        if stop_strings:
            trimmed = _trim_stop(loaded.tokenizer, tokens, stop_strings)
            if trimmed is not None:
                tokens, raw, stopped = trimmed, row[: len(trimmed)], True
        text = loaded.tokenizer.decode(tokens, skip_special_tokens=True)
        results.append(Generation(tuple(ids), tuple(tokens), tuple(raw), text, stopped))
    return results
