"""Reading preference rows (KTO, DPO) into checked pairs, for :mod:`traitvec.preference`.

Every row is read on its own: a problem refuses that row (line number and reason) and the reading
goes on, so one pass lists every problem of the file. The rules are documented in
:mod:`traitvec.preference`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._io import JSONError, read_json_text
from .conversations import Message, Role, check_answer, parse_messages
from .errors import TraitDataError

__all__ = ["BehaviorCounts", "Pair", "ReadResult", "Refused", "read_rows"]

_KTO_SHAPE = '{"conversations": [...], "label": true|false, "behavior": "..."}'
_DPO_SHAPE = '{"prompt": [...], "chosen": [...], "rejected": [...]}'


@dataclass(frozen=True)
class Refused:
    """A row that was not imported: its 1-based line number and why."""

    line: int
    reason: str


@dataclass
class BehaviorCounts:
    """Rows of one behaviour: read, positive, negative, paired, unpaired, and whether imported."""

    rows: int = 0
    positive: int = 0
    negative: int = 0
    pairs: int = 0
    unpaired: int = 0
    imported: bool = False


@dataclass(frozen=True)
class Pair:
    """One contrastive pair: a shared conversation and two final answers.

    Attributes:
        lines: line of the positive row and of the negative row (the same line for DPO).
        behavior: the rows' ``behavior`` (``""`` when they carry none).
        context: the conversation before the answer.
        positive: the label-true / chosen answer.
        negative: the label-false / rejected answer.
    """

    lines: tuple[int, int]
    behavior: str
    context: tuple[Message, ...]
    positive: Message
    negative: Message

    @property
    def request(self) -> str:
        """The last user message before the answer (what is held out as a steering question)."""
        return next(m.content or "" for m in reversed(self.context) if m.role == "user")


@dataclass
class ReadResult:
    """Everything :func:`read_rows` found."""

    rows: int = 0
    pairs: list[Pair] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    unpaired: list[Refused] = field(default_factory=list)
    behaviors: dict[str, BehaviorCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class _Labelled:
    line: int
    behavior: str
    context: tuple[Message, ...]
    answer: Message
    label: bool


class _RowError(Exception):
    """A reason to refuse one row."""


def read_rows(source: Path, format: Literal["kto", "dpo"], behavior: str | None) -> ReadResult:
    """Read every row of ``source``; pair KTO rows; refuse bad rows and repeated pairs.

    Raises:
        TraitDataError: ``behavior`` is None and the rows carry several behaviours.
    """
    result = ReadResult()
    labelled: list[_Labelled] = []
    candidates: list[Pair] = []
    data = source.read_bytes().removeprefix(b"\xef\xbb\xbf")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        result.rows += 1
        try:
            row = _decode(raw)
            name = row.get("behavior")
            if name is None:
                name = ""
            elif not isinstance(name, str):
                raise _RowError(f'"behavior" must be a string, got {_show(name)}')
            counts = result.behaviors.setdefault(name, BehaviorCounts())
            counts.rows += 1
            if behavior is not None and name not in ("", behavior):
                continue  # another behaviour of a merged file
            counts.imported = True
            if format == "kto":
                item = _kto_row(row, number, name)
                labelled.append(item)
                counts.positive += item.label
                counts.negative += not item.label
            else:
                candidates.append(_dpo_row(row, number, name))
                counts.positive += 1
                counts.negative += 1
        except _RowError as err:
            result.refused.append(Refused(number, str(err)))
    _one_behavior(source, behavior, result)
    if format == "kto":
        candidates = _pair_labelled(labelled, result)
    _check_pairs(candidates, result)
    return result


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _RowError(
            f"byte 0x{raw[err.start]:02x} at column {err.start + 1} is not UTF-8; save the file as UTF-8"
        ) from None
    try:
        row = read_json_text(text, where="row")
    except JSONError as err:
        reason = str(err).removeprefix("row line 1").lstrip(": ")  # one row is one line
        syntax = re.fullmatch(r"column (\d+): invalid JSON \((.*)\)", reason)
        raise _RowError(f"invalid JSON at column {syntax[1]} ({syntax[2]})" if syntax else reason) from None
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {_show(row)}")
    return row


def _messages(value: object, what: str, role: Role | None) -> tuple[Message, ...]:
    if isinstance(value, str) and role is not None:  # the plain-text form: one message of this role
        return (Message(role, value),)
    try:
        return parse_messages(value, what=what)
    except TraitDataError as err:
        raise _RowError(str(err)) from None


def _answered(messages: tuple[Message, ...], what: str) -> tuple[Message, ...]:
    try:
        check_answer(messages, what=what)
    except TraitDataError as err:
        raise _RowError(str(err)) from None
    return messages


def _kto_row(row: dict[str, Any], number: int, name: str) -> _Labelled:
    if "conversations" in row:
        messages = _answered(_messages(row["conversations"], '"conversations"', None), '"conversations"')
    elif "prompt" in row and "completion" in row:  # TRL's unpaired form
        prompt = _messages(row["prompt"], '"prompt"', "user")
        messages = _answered(prompt + _messages(row["completion"], '"completion"', "assistant"), '"completion"')
    else:
        raise _RowError(f'missing key "conversations"; a KTO row is {_KTO_SHAPE}')
    if "label" not in row:
        raise _RowError(f'missing key "label"; a KTO row is {_KTO_SHAPE}')
    label = row["label"]
    if not isinstance(label, bool):
        raise _RowError(f'"label" must be true or false (a JSON boolean), got {_show(label)}')
    return _Labelled(number, name, messages[:-1], messages[-1], label)


def _dpo_row(row: dict[str, Any], number: int, name: str) -> Pair:
    missing = [key for key in ("chosen", "rejected") if key not in row]
    if missing:
        raise _RowError(f"missing key(s) {', '.join(map(repr, missing))}; a DPO row is {_DPO_SHAPE}")
    prompt = _messages(row["prompt"], '"prompt"', "user") if "prompt" in row else ()
    chosen = _answered(prompt + _messages(row["chosen"], '"chosen"', "assistant"), '"chosen"')
    rejected = _answered(prompt + _messages(row["rejected"], '"rejected"', "assistant"), '"rejected"')
    if chosen[:-1] != rejected[:-1]:
        raise _RowError(
            f'"chosen" and "rejected" differ before their final assistant message ({len(chosen) - 1} vs '
            f"{len(rejected) - 1} earlier messages); a pair must be identical except the final answer"
        )
    return Pair((number, number), name, chosen[:-1], chosen[-1], rejected[-1])


def _one_behavior(source: Path, behavior: str | None, result: ReadResult) -> None:
    named = {name: c.rows for name, c in result.behaviors.items() if name}
    if behavior is None and len(named) > 1:
        listed = ", ".join(f"{name} ({rows} rows)" for name, rows in sorted(named.items()))
        raise TraitDataError(
            f"{source}: rows of several behaviours ({listed}) and import_pairs(behavior=) is not set; "
            "a trait is one behaviour, so name the one to import",
            setting="import_pairs(behavior=)",
        )


def _pair_labelled(rows: list[_Labelled], result: ReadResult) -> list[Pair]:
    """Pair the n-th true row with the n-th false row of each conversation; report the rest."""
    groups: dict[tuple[Message, ...], tuple[list[_Labelled], list[_Labelled]]] = {}
    for row in rows:
        groups.setdefault(row.context, ([], []))[0 if row.label else 1].append(row)
    pairs = []
    for positive, negative in groups.values():
        pairs += [
            Pair((p.line, n.line), p.behavior, p.context, p.answer, n.answer)
            for p, n in zip(positive, negative, strict=False)
        ]
        first = min(r.line for r in positive + negative)
        for extra in positive[len(negative) :] + negative[len(positive) :]:
            other = "false" if extra.label else "true"
            result.unpaired.append(
                Refused(
                    extra.line,
                    f"label {str(extra.label).lower()} row without a label {other} partner: the conversation "
                    f"before its answer (first on line {first}) has {len(positive)} true and {len(negative)} "
                    "false rows, paired in file order",
                )
            )
            result.behaviors[extra.behavior].unpaired += 1
    result.unpaired.sort(key=lambda r: r.line)
    return sorted(pairs, key=lambda p: min(p.lines))


def _check_pairs(candidates: list[Pair], result: ReadResult) -> None:
    seen: dict[tuple[tuple[Message, ...], Message, Message], tuple[int, int]] = {}
    for pair in candidates:
        where = (
            f"line {pair.lines[0]}" if pair.lines[0] == pair.lines[1] else f"lines {pair.lines[0]} and {pair.lines[1]}"
        )
        key = (pair.context, pair.positive, pair.negative)
        if pair.positive == pair.negative:
            reason = f"the positive and negative answers ({where}) are identical; a pair must differ in the answer"
        elif key in seen:
            reason = f"this pair ({where}) repeats the pair on line(s) {'/'.join(map(str, sorted(set(seen[key]))))}"
        else:
            seen[key] = pair.lines
            result.pairs.append(pair)
            result.behaviors[pair.behavior].pairs += 1
            continue
        result.refused += [Refused(line, reason) for line in sorted(set(pair.lines))]
    result.refused.sort(key=lambda r: r.line)


def _show(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
