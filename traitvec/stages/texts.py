"""The texts a monitor or comparison reads, from an input file, streamed.

Input files (UTF-8, a byte-order mark and CRLF are fine):

- ``.txt``: one text per line; blank lines are skipped (each text keeps its line number);
- ``.jsonl``: one object per line, ``{"text": "..."}`` (read as it is, with the tokenizer's own
  special tokens) or ``{"messages": [...]}`` (a conversation ending with the assistant's answer,
  rendered through the model's chat template; its summary covers the answer); blank lines are
  skipped, a string or number ``"id"`` is kept with the text, other keys are ignored.

With generation (``--generate``) every line or row is a prompt instead: ``.txt`` one question per
line, ``.jsonl`` rows ``{"prompt": "...", "system_prompt": "..."}`` (or ``{"text": ...}``); the
model answers each (greedy, optionally steered) and the monitor reads prompt + answer from the
exact token ids, the summary covering the answer.

:func:`check_input` reads the whole file once before any model work, so a malformed row is
reported (with its line number) before anything is computed; :func:`iter_rows` then streams the
rows again, so memory does not grow with the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._io import sha256_file
from ..conversations import Message, check_answer, parse_messages
from ..errors import ConfigError, TraitDataError
from ..generation import generate
from ..models import LoadedModel
from ..monitor import MonitorText, encode_generated, encode_messages, encode_texts
from ..prompting import PLAIN_STOP, encode_chat
from ..steering import Steer

__all__ = ["InputFile", "Row", "check_input", "iter_rows", "monitor_texts", "generated_texts", "MAX_SHOWN"]

Kind = Literal["txt", "jsonl"]
MAX_SHOWN = 8  # malformed rows spelled out in one error message
_SETTING = "run_monitor(input=)"


@dataclass(frozen=True)
class InputFile:
    """A checked input file: its path, form, content hash and number of texts."""

    path: Path
    kind: Kind
    sha256: str
    rows: int
    prompts: bool

    def describe(self) -> dict[str, Any]:
        """Plain data for outputs (and their inputs key, without the path)."""
        return {"path": str(self.path), "kind": self.kind, "sha256": self.sha256, "texts": self.rows}


@dataclass(frozen=True)
class Row:
    """One text (or prompt) of an input file: its line, and either text or messages."""

    index: int
    line: int
    text: str | None = None
    messages: tuple[Message, ...] = ()
    system: str | None = None
    id: str | int | None = None

    def source(self) -> dict[str, Any]:
        """Where it came from, as written beside its results."""
        out: dict[str, Any] = {"index": self.index, "line": self.line}
        if self.id is not None:
            out["id"] = self.id
        return out


def check_input(path: str | os.PathLike[str], *, prompts: bool = False) -> InputFile:
    """Validate an input file in one streaming pass.

    Raises:
        ConfigError: not a file, an unknown suffix, no texts, or malformed rows (every one with its
            line number, up to :data:`MAX_SHOWN`).
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(
            f"{_SETTING} = {str(source)!r} is not a file (relative paths start at {os.getcwd()}); "
            "give a .txt (one text per line) or .jsonl file",
            setting=_SETTING,
        )
    if source.suffix not in (".txt", ".jsonl"):
        raise ConfigError(
            f"{_SETTING} = {str(source)!r}: unknown suffix {source.suffix!r}; use .txt (one text per line) or "
            '.jsonl ({"text": ...} or {"messages": [...]} rows)',
            setting=_SETTING,
        )
    kind: Kind = "txt" if source.suffix == ".txt" else "jsonl"
    bad: list[str] = []
    count = 0
    for item in _parse(source, kind, prompts):
        if isinstance(item, str):
            bad.append(item)
        else:
            count += 1
    if bad:
        shown = "; ".join(bad[:MAX_SHOWN]) + (f"; … and {len(bad) - MAX_SHOWN} more" if len(bad) > MAX_SHOWN else "")
        raise ConfigError(f"{source}: {len(bad)} malformed row(s): {shown}", setting=_SETTING)
    if count == 0:
        raise ConfigError(f"{source}: no texts (the file is empty or blank)", setting=_SETTING)
    return InputFile(source, kind, sha256_file(source), count, prompts)


def iter_rows(input: InputFile) -> Iterator[Row]:
    """The rows of a checked file, streamed (a file changed since :func:`check_input` is an error)."""
    for item in _parse(input.path, input.kind, input.prompts):
        if isinstance(item, str):
            raise ConfigError(f"{input.path} changed while it was read: {item}", setting=_SETTING)
        yield item


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None


def _parse(path: Path, kind: Kind, prompts: bool) -> Iterator[Row | str]:
    """Rows, or a one-line description of each malformed one."""
    index = 0
    for number, line in _lines(path):
        if not line.strip():
            continue
        if kind == "txt":
            yield Row(index, number, text=line)
            index += 1
            continue
        try:
            row = _json_row(line, prompts)
        except (TraitDataError, ValueError) as err:
            yield f"line {number}: {' '.join(str(err).split())}"
            continue
        text, messages, system, id_ = row
        yield Row(index, number, text, messages, system, id_)
        index += 1


def _json_row(line: str, prompts: bool) -> tuple[str | None, tuple[Message, ...], str | None, str | int | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON ({err.msg}, column {err.colno})") from None
    if not isinstance(row, dict):
        raise ValueError('expected an object like {"text": "..."}')
    id_ = row.get("id")
    id_ = id_ if isinstance(id_, str | int) and not isinstance(id_, bool) else None
    forms = [k for k in (("prompt", "text") if prompts else ("text", "messages")) if k in row]
    if prompts and "messages" in row:
        raise ValueError('with generation, rows are {"prompt": "...", "system_prompt": "..."}, not "messages"')
    if len(forms) != 1:
        wanted = '{"prompt": "..."} or {"text": "..."}' if prompts else '{"text": "..."} or {"messages": [...]}'
        raise ValueError(f"expected exactly one of {', '.join(map(repr, forms)) or 'no known key'}: {wanted}")
    if forms[0] == "messages":
        messages = parse_messages(row["messages"])
        check_answer(messages, what="the row's conversation")
        return None, messages, None, id_
    text = row[forms[0]]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'"{forms[0]}" must be a non-empty string')
    system = row.get("system_prompt") if prompts else None
    if system is not None and not isinstance(system, str):
        raise ValueError('"system_prompt" must be a string when present')
    return text, (), system, id_


def monitor_texts(loaded: LoadedModel, input: InputFile) -> Iterator[MonitorText]:
    """The texts of a checked input file as ``loaded`` reads them, streamed (tokenised in groups)."""
    group: list[Row] = []
    for row in iter_rows(input):
        group.append(row)
        if len(group) >= 64:
            yield from _encode(loaded, group)
            group = []
    if group:
        yield from _encode(loaded, group)


def _encode(loaded: LoadedModel, rows: Sequence[Row]) -> list[MonitorText]:
    plain = [r for r in rows if not r.messages]
    encoded = iter(encode_texts(loaded, [r.text or "" for r in plain], sources=[r.source() for r in plain]))
    return [encode_messages(loaded, r.messages, source=r.source()) if r.messages else next(encoded) for r in rows]


def generated_texts(
    loaded: LoadedModel,
    input: InputFile,
    *,
    max_new_tokens: int,
    steering: Sequence[Steer] = (),
) -> Iterator[MonitorText]:
    """Answers to every prompt of a checked prompts file (greedy, with ``steering`` on every row), as
    prompt + answer from the exact token ids, generated group by group."""
    stop = () if loaded.use_chat_template else (PLAIN_STOP,)
    rows = iter_rows(input)
    while True:
        group = [row for _, row in zip(range(64), rows, strict=False)]
        if not group:
            return
        prompts = [encode_chat(loaded, row.text or "", row.system) for row in group]
        answers = generate(
            loaded,
            prompts,
            max_new_tokens=max_new_tokens,
            steering=[list(steering)] * len(group) if steering else None,
            stop_strings=stop,
        )
        for row, answer in zip(group, answers, strict=True):
            source = {**row.source(), "prompt": row.text}
            yield encode_generated(loaded, answer.prompt_ids, answer.tokens, source=source)
