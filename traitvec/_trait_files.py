"""Reading the files of a trait folder safely: UTF-8 text with line numbers, and ``steering.json``.

Split from :mod:`traitvec.traits` (which owns the prompt files and the pair rules) to keep both
modules short. Every file is checked before it is read (:func:`check_file`): it must resolve to a
regular file inside the traits root (a symlink to ``/etc/...`` or a FIFO named ``positive.txt``
is refused) and stay under :data:`MAX_TRAIT_FILE_BYTES`. Lines are limited to
:data:`MAX_LINE_CHARS` characters, steering questions to :data:`MAX_QUESTION_CHARS`. Every
problem raises :class:`~traitvec.errors.TraitDataError` naming file and line.
"""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any, Literal

from ._io import read_json_text
from .conversations import is_blank
from .errors import TraitDataError

__all__ = [
    "Direction",
    "check_file",
    "folder_files",
    "prompt_files",
    "read_definition",
    "DEFINITION_STUB",
    "decode",
    "read_lines",
    "read_steering",
    "MAX_TRAIT_FILE_BYTES",
    "MAX_LINE_CHARS",
    "MAX_QUESTION_CHARS",
]

logger = logging.getLogger("traitvec.traits")

Direction = Literal["positive", "negative"]
MAX_TRAIT_FILE_BYTES = 64 << 20
"""Largest file a trait folder may hold (64 MiB)."""
MAX_LINE_CHARS = 200_000
"""Longest line of a prefill or jsonl file (characters); longer than any model's context."""
MAX_QUESTION_CHARS = 8_000
"""Longest steering question (characters)."""
DEFINITION_STUB = "# traitvec: definition stub"  # first line of an unwritten rubric (read as no rubric)
_warned_stub: set[str] = set()
_KNOWN_STEERING_KEYS = ("questions", "eval_prompt", "direction")
_warned_unknown: set[tuple[str, tuple[str, ...]]] = set()


def check_file(path: Path, root: Path) -> None:
    """Refuse ``path`` unless it resolves to a regular file inside ``root`` and is not too large.

    Args:
        path: a file of a trait folder (possibly a symlink).
        root: the traits root, already resolved.

    Raises:
        TraitDataError: the file leaves the root through a symlink, is not a regular file
            (a directory, FIFO, device), or is larger than :data:`MAX_TRAIT_FILE_BYTES`.
    """
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise TraitDataError(
            f"{path} is a symlink to {resolved}, outside the traits root {root}; traitvec reads trait files only "
            "from inside the root (a linked definition.txt would be sent to the judge). Copy the file into the "
            "trait folder instead of linking it"
        )
    try:
        info = resolved.stat()
    except OSError as err:
        raise TraitDataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise TraitDataError(f"{path} is a folder, not a file; a trait's {path.name} must be a text file")
    if not stat.S_ISREG(info.st_mode):
        raise TraitDataError(f"{path} is not a regular file (a device, FIFO or socket); write it as a text file")
    if info.st_size > MAX_TRAIT_FILE_BYTES:
        raise TraitDataError(
            f"{path}: {info.st_size} bytes, more than the {MAX_TRAIT_FILE_BYTES} bytes (64 MiB) a trait file may "
            "have; split the trait or trim the file"
        )


def decode(path: Path) -> str:
    """The file's text (UTF-8, a leading byte-order mark dropped); a bad byte names line and column."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise TraitDataError(
            f"{path} line {line}: byte 0x{data[err.start]:02x} at column {column} is not UTF-8; save the file as UTF-8"
        ) from None
    return text


def read_lines(path: Path) -> list[str]:
    """The file's lines (CRLF or LF; a final newline is not a line), none longer than :data:`MAX_LINE_CHARS`."""
    text = decode(path).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n") if text else []
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise TraitDataError(
                f"{path} line {number}: {len(line)} characters, more than the {MAX_LINE_CHARS} a line may have "
                "(longer than any model's context); shorten it"
            )
    return lines


def read_steering(path: Path) -> tuple[tuple[str, ...], str | None, Direction, dict[str, Any]]:
    """``questions``, ``eval_prompt``, ``direction`` and the unknown keys of a ``steering.json``."""
    text = decode(path)
    data = read_json_text(text, where=str(path), error=TraitDataError)
    if not isinstance(data, dict):
        raise TraitDataError(f'{path} line 1: expected a JSON object like {{"questions": [...]}}')
    questions = data.get("questions")
    if questions is None:
        raise TraitDataError(f'{path} line 1: no "questions" key; add "questions": ["...", ...] (15–20 recommended)')
    line = _key_line(text, "questions")
    if not isinstance(questions, list):
        raise TraitDataError(f'{path} line {line}: "questions" must be a list of strings')
    if not questions:
        raise TraitDataError(f'{path} line {line}: "questions" is empty; add 15–20 questions')
    for index, question in enumerate(questions):
        if not isinstance(question, str) or is_blank(question):
            where = _item_line(text, "questions", index) or line
            raise TraitDataError(
                f'{path} line {where}: "questions" item {index + 1} is {_show(question)}; '
                "every question must be a non-empty string"
            )
        if len(question) > MAX_QUESTION_CHARS:
            where = _item_line(text, "questions", index) or line
            raise TraitDataError(
                f'{path} line {where}: "questions" item {index + 1} has {len(question)} characters, more than the '
                f"{MAX_QUESTION_CHARS} a steering question may have; shorten it"
            )
    eval_prompt = data.get("eval_prompt")
    if eval_prompt is not None:
        where = _key_line(text, "eval_prompt")
        if not isinstance(eval_prompt, str):
            raise TraitDataError(f'{path} line {where}: "eval_prompt" must be a string')
        missing = [p for p in ("{question}", "{answer}") if p not in eval_prompt]
        if missing:
            raise TraitDataError(
                f'{path} line {where}: "eval_prompt" lacks {" and ".join(missing)}; the judge must be shown '
                "both the question and the answer, so put both placeholders in it"
            )
    direction = data.get("direction", "positive")
    if direction not in ("positive", "negative"):
        raise TraitDataError(
            f'{path} line {_key_line(text, "direction")}: "direction" is {_show(direction)}; '
            'use "positive" or "negative"'
        )
    extra = {k: v for k, v in data.items() if k not in _KNOWN_STEERING_KEYS}
    if extra:
        key = (str(path.resolve()), tuple(sorted(extra)))
        if key not in _warned_unknown:
            _warned_unknown.add(key)
            logger.warning(
                "%s: unknown keys %s kept as they are (traitvec reads %s)",
                path,
                ", ".join(sorted(extra)[:10]),
                ", ".join(_KNOWN_STEERING_KEYS),
            )
    return tuple(questions), eval_prompt, direction, extra


def _show(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key_line(text: str, key: str) -> int:
    """1-based line of the first ``"key"`` in a JSON text (1 when absent)."""
    index = text.find(json.dumps(key))
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _item_line(text: str, key: str, item: int) -> int | None:
    """1-based line where element ``item`` of the array under ``"key"`` starts, if it can be found."""
    start = text.find(json.dumps(key))
    if start < 0:
        return None
    pos = text.find("[", start)
    if pos < 0:
        return None
    decoder = json.JSONDecoder()
    pos += 1
    for index in range(item + 1):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if index == item:
            return text.count("\n", 0, pos) + 1
        try:
            _, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError, ValueError):
            return None
    return None


_DATA_FILES = ("positive.txt", "negative.txt", "positive.jsonl", "negative.jsonl", "definition.txt", "steering.json")


def folder_files(folder: Path, root: Path) -> list[Path]:
    """The folder's files that the trait is made of (hashed), each checked by :func:`check_file`.

    Every entry that is a symlink, a data file, or a regular file is checked; other entries
    (sub-folders, hidden files) are not part of the trait.
    """
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_symlink() or path.name in _DATA_FILES or path.is_file():
            check_file(path, root)
            files.append(path)
    return files


def prompt_files(folder: Path) -> tuple[bool, Path, Path]:
    """Whether the trait is the jsonl (chat) form, and its positive and negative files."""
    txt = [(folder / f).exists() or (folder / f).is_symlink() for f in ("positive.txt", "negative.txt")]
    jsonl = [(folder / f).exists() or (folder / f).is_symlink() for f in ("positive.jsonl", "negative.jsonl")]
    if any(txt) and any(jsonl):
        raise TraitDataError(
            f"{folder}: holds both .txt and .jsonl prefills; keep one form (positive/negative.txt or .jsonl)"
        )
    chat = any(jsonl)
    suffix = ".jsonl" if chat else ".txt"
    paths = folder / f"positive{suffix}", folder / f"negative{suffix}"
    for path, present in zip(paths, jsonl if chat else txt, strict=True):
        if not present:
            raise TraitDataError(
                f"{path}: missing; a trait needs positive and negative prefills "
                "(positive.txt + negative.txt, or positive.jsonl + negative.jsonl)"
            )
    return chat, paths[0], paths[1]


def read_definition(path: Path) -> str | None:
    """The rubric in ``definition.txt`` (``None`` when absent or still the import stub)."""
    if not path.exists():
        return None
    definition = "\n".join(read_lines(path)).strip() or None
    if definition is None or is_blank(definition):
        raise TraitDataError(f"{path} line 1: file is empty; write the judge's rubric or delete the file")
    if definition.startswith(DEFINITION_STUB):
        if str(path) not in _warned_stub:
            _warned_stub.add(str(path))
            logger.warning("%s is still the import stub: no rubric until it is written", path)
        return None
    return definition
