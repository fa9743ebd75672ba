"""Resumable stages: every output records the key of the inputs it was made from.

A stage describes its inputs as plain JSON data (trait files hash, model fingerprint, settings,
judge name and prompt hashes...), turns them into a short key with :func:`inputs_key`, and writes
that key into what it produces (a top-level ``"inputs_key"``, or ``"extra": {"inputs_key": ...}``
in a tensor file's JSON sidecar). On a rerun :func:`read_if_current` returns the recorded document
when its key still matches, so the stage skips that output; anything missing, unreadable or made
from other inputs is recomputed. Vetting, extraction and steering evaluation all use these helpers.

Corrupt state is recomputed, never a traceback: a file that exists but is not a JSON object
(binary garbage, a truncated write by another tool, a list) is logged as a warning naming the
file, and so is a document with the right key whose structure a stage's ``validate`` function
rejects (a hand-edited ``results.json`` whose ``runs`` is not a list); both read as "not current".

Example:
    >>> key = inputs_key({"trait_hash": trait.files_hash, "model": fingerprint})
    >>> previous = read_if_current(paths.vetting_json, key, force=force)
    >>> if previous is not None:
    ...     return previous
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._io import read_json_text, sha256_text

__all__ = ["inputs_key", "recorded_key", "read_json", "read_json_checked", "read_if_current", "KEY_LENGTH"]

logger = logging.getLogger(__name__)

Validator = Callable[[Mapping[str, Any]], str | None]
"""Checks a document's structure: ``None`` when it is sound, else what is wrong (for the warning)."""

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
    return read_json_checked(path)[0]


def read_json_checked(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``path`` and, when there is none although the file exists, why not.

    Returns:
        ``(document, None)``; ``(None, None)`` when the file is missing; ``(None, problem)`` when it
        exists but cannot be read, is not UTF-8 JSON (binary garbage, a truncated file), or holds
        something other than an object.

    Example:
        >>> read_json_checked("missing.json")
        (None, None)
    """
    target = Path(path)
    if not target.exists():
        return None, None
    try:
        data = read_json_text(target.read_bytes().decode("utf-8"), where=str(target))  # strict: see _io
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    except UnicodeDecodeError:
        return None, "is not UTF-8 text (binary garbage?)"
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; so are stricter parsers' errors
        return None, f"is not valid JSON ({_first_line(err)})"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    return data, None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def recorded_key(document: Mapping[str, Any] | None) -> str | None:
    """The inputs key a document records: its ``inputs_key``, else ``extra.inputs_key``; ``None`` when neither."""
    if not isinstance(document, Mapping):
        return None
    extra = document.get("extra")
    key = document.get("inputs_key") or (extra.get("inputs_key") if isinstance(extra, Mapping) else None)
    return key if isinstance(key, str) else None


def read_if_current(
    path: str | os.PathLike[str], key: str, *, force: bool = False, validate: Validator | None = None
) -> dict[str, Any] | None:
    """The JSON document at ``path`` when it records inputs key ``key``; else (or with ``force``) ``None``.

    For a tensor file pass its JSON sidecar (``path.with_suffix(".json")``). A file that exists
    but is not a JSON object, or whose structure ``validate`` rejects although its key matches, is
    reported with a warning naming the file and reads as ``None`` (the stage recomputes it).

    Args:
        path: the document.
        key: the inputs key the stage expects.
        force: always ``None`` (the caller recomputes), without reading.
        validate: optional structure check of a document whose key matches.
    """
    if force:
        return None
    document, problem = read_json_checked(path)
    if problem is not None:
        logger.warning("%s %s; recomputing it", path, problem)
        return None
    if document is None or recorded_key(document) != key:
        return None
    wrong = validate(document) if validate is not None else None
    if wrong is not None:
        logger.warning("%s has the expected inputs key but a wrong structure (%s); recomputing it", path, wrong)
        return None
    return document
