"""Reading texts with trait vectors: the projection of every token on every requested trait.

- :mod:`~traitvec.monitor.texts`: :class:`MonitorText`, a text as the model reads it (exact ids,
  token strings, character offsets, special flags, the token range its summaries cover), and the
  encoders of plain texts, conversations and generated answers;
- :mod:`~traitvec.monitor.readings`: :class:`Readout` (a trait direction at a layer, its centre and
  unit), :func:`project_texts` (one batched forward pass per group, hooks on the requested layers
  only, stopped after the deepest), :func:`read_tokens` (streaming, in input order) and
  :class:`Reading` (per-token values and their summaries).

Example:
    >>> readout = Readout.from_vector(TraitVector.load(path), layer=6)
    >>> for reading in read_tokens(loaded, encode_texts(loaded, texts), [readout]):
    ...     print(reading.summary("styles/formality"))
"""

from __future__ import annotations

from .readings import CHUNK_TEXTS, CHUNK_TOKENS, DIGITS, Reading, Readout, chunked, project_texts, read_tokens
from .texts import MonitorText, encode_generated, encode_messages, encode_texts

__all__ = [
    "CHUNK_TEXTS",
    "CHUNK_TOKENS",
    "DIGITS",
    "MonitorText",
    "Reading",
    "Readout",
    "chunked",
    "encode_generated",
    "encode_messages",
    "encode_texts",
    "project_texts",
    "read_tokens",
]
