"""Reading the files of a trait folder: UTF-8 text with line numbers, and ``steering.json``.

Split from :mod:`traitvec.traits` (which owns the prompt files and the pair rules) to keep both
modules short. Every problem raises :class:`~traitvec.errors.TraitDataError` naming file and line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from .errors import TraitDataError

__all__ = ["Direction", "decode", "read_lines", "read_steering"]

logger = logging.getLogger("traitvec.traits")

Direction = Literal["positive", "negative"]
_KNOWN_STEERING_KEYS = ("questions", "eval_prompt", "direction")
_warned_unknown: set[tuple[str, tuple[str, ...]]] = set()


def decode(path: Path) -> str:
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
    text = decode(path).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def read_steering(path: Path) -> tuple[tuple[str, ...], str | None, Direction, dict[str, Any]]:
    text = decode(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TraitDataError(f"{path} line {err.lineno} column {err.colno}: invalid JSON ({err.msg})") from None
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
        if not isinstance(question, str) or not question.strip():
            where = _item_line(text, "questions", index) or line
            raise TraitDataError(
                f'{path} line {where}: "questions" item {index + 1} is {json.dumps(question)}; '
                "every question must be a non-empty string"
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
            f'{path} line {_key_line(text, "direction")}: "direction" is {json.dumps(direction)}; '
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
                ", ".join(sorted(extra)),
                ", ".join(_KNOWN_STEERING_KEYS),
            )
    return tuple(questions), eval_prompt, direction, extra


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
        except json.JSONDecodeError:
            return None
    return None
