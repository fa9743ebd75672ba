"""Resumable stages: every output records the key of the inputs it was made from.

A stage describes its inputs as plain JSON data (trait files hash, model fingerprint, settings,
judge name and prompt hashes...), turns them into a short key with :func:`inputs_key`, and writes
that key into what it produces (a top-level ``"inputs_key"``, or ``"extra": {"inputs_key": ...}``
in a tensor file's JSON sidecar). On a rerun :func:`read_if_current` returns the recorded document
when its key still matches, so the stage skips that output; anything missing, unreadable or made
from other inputs is recomputed. Vetting, extraction and steering evaluation all use these helpers.

Example:
    >>> key = inputs_key({"trait_hash": trait.files_hash, "model": fingerprint})
    >>> previous = read_if_current(paths.vetting_json, key, force=force)
    >>> if previous is not None:
    ...     return previous
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .._io import JSONError, load_json, sha256_text

__all__ = ["inputs_key", "recorded_key", "read_json", "read_if_current", "KEY_LENGTH"]

KEY_LENGTH = 24
"""Hex digits kept of the SHA-256 of the canonical inputs."""


def inputs_key(inputs: Mapping[str, Any]) -> str:
    """The key of ``inputs``: SHA-256 of their canonical JSON (sorted keys), first :data:`KEY_LENGTH` hex digits.

    Values JSON cannot hold are written as ``str(value)``.

    Example:
        >>> inputs_key({"b": 1, "a": [1, 2]}) == inputs_key({"a": [1, 2], "b": 1})
        True
    """
    return sha256_text(json.dumps(dict(inputs), sort_keys=True, default=str))[:KEY_LENGTH]


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable, not JSON or not an object."""
    try:
        data = load_json(path)
    except (OSError, JSONError):
        return None
    return data if isinstance(data, dict) else None


def recorded_key(document: Mapping[str, Any] | None) -> str | None:
    """The inputs key a document records: its ``inputs_key``, else ``extra.inputs_key``; ``None`` when neither."""
    if not isinstance(document, Mapping):
        return None
    extra = document.get("extra")
    key = document.get("inputs_key") or (extra.get("inputs_key") if isinstance(extra, Mapping) else None)
    return key if isinstance(key, str) else None


def read_if_current(path: str | os.PathLike[str], key: str, *, force: bool = False) -> dict[str, Any] | None:
    """The JSON document at ``path`` when it records inputs key ``key``; else (or with ``force``) ``None``.

    For a tensor file pass its JSON sidecar (``path.with_suffix(".json")``).
    """
    if force:
        return None
    document = read_json(path)
    return document if document is not None and recorded_key(document) == key else None
