"""Texts as the model reads them: exact token ids, their strings and character ranges, special flags.

:func:`encode_texts` tokenises plain texts (with the tokenizer's special tokens, as a prefill is);
:func:`encode_messages` renders a conversation ending with the assistant's answer as
:func:`~traitvec.prompting.encode_conversation` does, its summary range being the answer;
:func:`encode_generated` takes a prompt and an answer as the exact ids a generation produced
(never re-tokenised) and decodes them token by token for the text and the offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..conversations import Message
from ..errors import ConfigError
from ..models import LoadedModel
from ..prompting import encode_conversation

__all__ = ["MonitorText", "encode_texts", "encode_messages", "encode_generated"]


@dataclass(frozen=True)
class MonitorText:
    """A text as the model reads it.

    Attributes:
        text: the text the tokens come from (a conversation: its chat-template rendering).
        ids: token ids, exactly as run through the model.
        tokens: each id's vocabulary string.
        offsets: each token's ``(start, end)`` character range in ``text`` (``None`` when the
            tokenizer cannot tell).
        special: True for special tokens (excluded from summaries).
        span: the token range ``[start, end)`` the summaries cover.
        source: where the text came from (``{"line": 3}``...), written with the results.
    """

    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...] | None
    special: tuple[bool, ...]
    span: tuple[int, int]
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not n:
            raise ConfigError(f"a text is empty after tokenisation ({dict(self.source) or 'no source'})")
        if len(self.tokens) != n or len(self.special) != n or (self.offsets is not None and len(self.offsets) != n):
            raise ValueError("MonitorText: ids, tokens, special and offsets must have one entry per token")
        if not 0 <= self.span[0] < self.span[1] <= n:
            raise ValueError(f"MonitorText: span {self.span} is not a token range of a {n}-token text")

    @property
    def summarised(self) -> list[int]:
        """Token indices the summaries cover: the non-special tokens of :attr:`span`."""
        return [i for i in range(*self.span) if not self.special[i]]


def encode_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    sources: Sequence[Mapping[str, Any]] | None = None,
    add_special_tokens: bool = True,
) -> list[MonitorText]:
    """Tokenise plain texts (with the tokenizer's own special tokens, e.g. BOS, as a prefill is).

    Example:
        >>> [t.tokens for t in encode_texts(loaded, ["Hello world."])]
        [('<bos>', 'Hello', '▁world', '.')]
    """
    tokenizer = loaded.tokenizer
    sources = sources if sources is not None else [{} for _ in texts]
    if not texts:  # a fast tokenizer fails on an empty batch (a group of conversations only)
        return []
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        rows = zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
        pairs: list[tuple[list[int], list[tuple[int, int]] | None]] = [
            ([int(i) for i in ids], [(int(s), int(e)) for s, e in offs]) for ids, offs in rows
        ]
    else:
        pairs = []
        for text in texts:
            ids = [int(i) for i in tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]]
            pairs.append((ids, _decoded_offsets(tokenizer, ids, text)))
    return [
        _monitor_text(loaded, text, ids, offsets, None, source)
        for text, (ids, offsets), source in zip(texts, pairs, sources, strict=True)
    ]


def encode_messages(
    loaded: LoadedModel, messages: Sequence[Message], *, source: Mapping[str, Any] | None = None
) -> MonitorText:
    """A conversation ending with the assistant's answer, rendered as :func:`~traitvec.prompting.encode_conversation`
    renders it (chat template, or the plain transcript); its summary covers the answer's tokens."""
    enc = encode_conversation(loaded, messages)
    offsets: list[tuple[int, int]] | None = None
    tokenizer = loaded.tokenizer
    if getattr(tokenizer, "is_fast", False):
        again = tokenizer(enc.text, add_special_tokens=not enc.templated, return_offsets_mapping=True)
        if [int(i) for i in again["input_ids"]] == list(enc.input_ids):
            offsets = [(int(s), int(e)) for s, e in again["offset_mapping"]]
    if offsets is None:
        offsets = _decoded_offsets(tokenizer, list(enc.input_ids), enc.text)
    span = (enc.answer_start, enc.answer_end)
    return _monitor_text(loaded, enc.text, list(enc.input_ids), offsets, span, source or {})


def encode_generated(
    loaded: LoadedModel,
    prompt_ids: Sequence[int],
    answer_ids: Sequence[int],
    *,
    source: Mapping[str, Any] | None = None,
) -> MonitorText:
    """A prompt and the answer generated for it, from their exact token ids (never re-tokenised):
    the text is decoded token by token, and the summary covers the answer."""
    ids = [int(i) for i in (*prompt_ids, *answer_ids)]
    text, offsets = _decode_with_offsets(loaded.tokenizer, ids)
    span = (len(prompt_ids), len(ids)) if answer_ids else None
    return _monitor_text(loaded, text, ids, offsets, span, source or {})


def _monitor_text(
    loaded: LoadedModel,
    text: str,
    ids: list[int],
    offsets: Sequence[tuple[int, int]] | None,
    span: tuple[int, int] | None,
    source: Mapping[str, Any],
) -> MonitorText:
    if not ids:
        raise ConfigError(f"a text is empty after tokenisation ({dict(source) or 'no source'}): {text[:60]!r}")
    special_ids = loaded.special_ids
    return MonitorText(
        text=text,
        ids=tuple(ids),
        tokens=tuple(str(t) for t in loaded.tokenizer.convert_ids_to_tokens(ids)),
        offsets=None if offsets is None else tuple(offsets),
        special=tuple(i in special_ids for i in ids),
        span=span or (0, len(ids)),
        source=dict(source),
    )


def _decode_with_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode ``ids`` one token at a time: the text, and each token's character range in it.

    A token that completes a character begun by earlier tokens (a multi-byte character split over
    byte tokens) takes the whole character; the earlier pieces get empty ranges.
    """
    text, offsets = "", list[tuple[int, int]]()
    for i in range(len(ids)):
        new = tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        keep = len(text) if new.startswith(text) else _common_prefix(text, new)
        offsets = [(min(s, keep), min(e, keep)) for s, e in offsets]
        offsets.append((keep, len(new)))
        text = new
    return text, offsets


def _decoded_offsets(tokenizer: Any, ids: Sequence[int], text: str) -> list[tuple[int, int]] | None:
    """Offsets of ``ids`` in ``text`` for a tokenizer without offset mapping, when decoding gives ``text`` back."""
    decoded, offsets = _decode_with_offsets(tokenizer, ids)
    return offsets if decoded == text else None


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
