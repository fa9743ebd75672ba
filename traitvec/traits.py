"""Trait datasets: loading and validating ``{root}/{category}/{trait}/``.

A trait folder holds matched prefills and what the judge and the steering evaluation need:

- ``positive.txt`` / ``negative.txt``: one prefill per line, paired by line number; or
  ``positive.jsonl`` / ``negative.jsonl``, paired by line, in one of two row forms that go through
  the model's chat template: ``{"prompt": ..., "system_prompt": ...}`` (a question to answer), or
  ``{"messages": [...]}`` (a whole conversation ending with the assistant's answer; the two files
  are identical except that final answer, see :mod:`traitvec.conversations`);
- ``definition.txt``: the judge's rubric (optional for extraction, needed for judging);
- ``steering.json``: ``questions`` plus optional ``eval_prompt`` and ``direction``.

Every rule is checked when the trait is loaded and a violation raises
:class:`~traitvec.errors.TraitDataError` naming the file and line. Files may be UTF-8 with or
without a byte-order mark and may use CRLF line ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from ._io import read_json_text, sha256_files
from ._trait_files import (
    DEFINITION_STUB,
    MAX_LINE_CHARS,
    MAX_QUESTION_CHARS,
    MAX_TRAIT_FILE_BYTES,
    Direction,
    folder_files,
    prompt_files,
    read_definition,
    read_lines,
    read_steering,
)
from ._trait_files import _warned_unknown as _warned_unknown  # the tests reset the warn-once memory
from ._trait_paths import DEFAULT_TRAITS_ROOT, MAX_NAME_BYTES, list_traits, resolve_trait_name, trait_dir
from .conversations import Message, check_answer, conversation_text, is_blank, parse_messages
from .errors import TraitDataError

__all__ = [
    "Prompt",
    "Trait",
    "load_trait",
    "list_traits",
    "trait_dir",
    "resolve_trait_name",
    "DEFAULT_TRAITS_ROOT",
    "DEFINITION_STUB",
    "MAX_PAIRS",
    "MAX_TRAIT_FILE_BYTES",
    "MAX_LINE_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_NAME_BYTES",
]

logger = logging.getLogger(__name__)

MAX_PAIRS = 20_000
"""Most pairs one trait may hold. Capture keeps every pair's activations in memory
(2 × pairs × layers × width float32 values per position: 20,000 pairs of an 18-layer, 640-wide
model are 1.8 GB), so larger sets are refused rather than exhausting memory; split them into
several traits."""


@dataclass(frozen=True)
class Prompt:
    """One side of a pair: a base-model prefill, a chat prompt, or a whole conversation.

    Attributes:
        text: the prefill or the question; for a conversation, its plain transcript
            (:func:`~traitvec.conversations.conversation_text`).
        system_prompt: the chat prompt's system prompt, if any (``None`` for conversations).
        messages: the conversation, ending with the assistant's answer (empty otherwise).

    Example:
        >>> p = Prompt.from_messages([Message("user", "Hi?"), Message("assistant", "Hello.")])
        >>> p.answer.content, p.text
        ('Hello.', 'User: Hi?\n\nAssistant: Hello.')
    """

    text: str
    system_prompt: str | None = None
    messages: tuple[Message, ...] = ()

    @classmethod
    def from_messages(cls, messages: Sequence[Message]) -> Prompt:
        """A conversation prompt (validated by :func:`~traitvec.conversations.check_answer`)."""
        check_answer(messages)
        return cls(conversation_text(messages), None, tuple(messages))

    @property
    def is_conversation(self) -> bool:
        """True for the ``{"messages": [...]}`` form."""
        return bool(self.messages)

    @property
    def answer(self) -> Message | None:
        """The final assistant message of a conversation (``None`` for other prompts)."""
        return self.messages[-1] if self.messages else None

    @property
    def context(self) -> tuple[Message, ...]:
        """The conversation before the final answer (empty for other prompts)."""
        return self.messages[:-1]


@dataclass(frozen=True)
class Trait:
    """A validated trait dataset.

    Attributes:
        name: ``"category/trait"``, the folder relative to the traits root.
        path: the folder.
        positive: prompts that show the trait, paired by index with ``negative``.
        negative: matched prompts that do not.
        lines: the 1-based line number of each pair in its files (kept through :meth:`select`).
        definition: the judge's rubric from ``definition.txt`` (``None`` when absent, or still the
            stub that :func:`traitvec.preference.import_pairs` writes, which starts with
            :data:`DEFINITION_STUB`).
        questions: steering questions from ``steering.json`` (empty when absent).
        eval_prompt: the trait's own judge prompt with ``{question}`` and ``{answer}``, if any.
        direction: ``"negative"`` when the trait is meant to be steered down.
        chat: True for the jsonl forms, whose prompts go through the chat template.
        files_hash: SHA-256 over every file of the folder the trait was read from.
        extra: unknown ``steering.json`` keys, kept as they were.
    """

    name: str
    path: Path
    positive: tuple[Prompt, ...]
    negative: tuple[Prompt, ...]
    lines: tuple[int, ...]
    definition: str | None
    questions: tuple[str, ...]
    eval_prompt: str | None
    direction: Direction
    chat: bool
    files_hash: str
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @property
    def conversation(self) -> bool:
        """True for the ``{"messages": [...]}`` form (pairs differ only in the final answer)."""
        return bool(self.positive) and self.positive[0].is_conversation

    @property
    def n_pairs(self) -> int:
        """Number of matched pairs."""
        return len(self.positive)

    @property
    def category(self) -> str:
        """The folder above the trait (``"alignment"`` in ``"alignment/deception"``)."""
        return str(PurePosixPath(self.name).parent)

    @property
    def short_name(self) -> str:
        """The trait's own folder name (``"deception"``)."""
        return PurePosixPath(self.name).name

    def select(self, indices: Sequence[int]) -> Trait:
        """Return the same trait restricted to the pairs at ``indices`` (pairs stay together).

        Example:
            >>> kept = trait.select([i for i, ok in enumerate(passed) if ok])
        """
        idx = list(indices)
        return replace(
            self,
            positive=tuple(self.positive[i] for i in idx),
            negative=tuple(self.negative[i] for i in idx),
            lines=tuple(self.lines[i] for i in idx),
        )


def load_trait(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> Trait:
    """Load and validate one trait folder.

    Every file of the folder must be a regular file inside ``root`` (symlinks that leave it,
    FIFOs, devices and folders named like a data file are refused) of at most
    :data:`MAX_TRAIT_FILE_BYTES` bytes; lines are limited to :data:`MAX_LINE_CHARS` characters,
    pairs to :data:`MAX_PAIRS`.

    Args:
        name: ``"category/trait"`` relative to ``root``, or the trait's folder as a path inside
            ``root`` (see :func:`resolve_trait_name`).
        root: the traits root (default ``datasets/traits``, relative to the current folder).

    Returns:
        The validated :class:`Trait`; its ``name`` is always ``category/trait``.

    Raises:
        TraitDataError: a rule is broken; the message names the file and line.
        TraitNotFoundError: there is no such trait (or the name is a category: its traits are listed).

    Example:
        >>> trait = load_trait("hum/optimism", root="../shared/external-traits")
        >>> trait.n_pairs, len(trait.questions)
        (92, 20)
    """
    folder = trait_dir(name, root)
    display = resolve_trait_name(name, root)
    files = folder_files(folder, Path(root).resolve())
    chat, pos_path, neg_path = prompt_files(folder)
    reader = _read_jsonl if chat else _read_txt
    positive, negative = reader(pos_path), reader(neg_path)
    if max(len(positive), len(negative)) > MAX_PAIRS:
        raise TraitDataError(
            f"{folder}: {max(len(positive), len(negative))} pairs, more than the {MAX_PAIRS} one trait may hold "
            "(capture keeps every pair's activations in memory); split the pairs into several traits"
        )
    _check_pairs(pos_path, neg_path, positive, negative)
    definition = read_definition(folder / "definition.txt")
    questions: tuple[str, ...] = ()
    eval_prompt: str | None = None
    direction: Direction = "positive"
    extra: dict[str, Any] = {}
    steering_path = folder / "steering.json"
    if steering_path.exists():
        questions, eval_prompt, direction, extra = read_steering(steering_path)
    return Trait(
        name=display,
        path=folder,
        positive=tuple(positive),
        negative=tuple(negative),
        lines=tuple(range(1, len(positive) + 1)),
        definition=definition,
        questions=questions,
        eval_prompt=eval_prompt,
        direction=direction,
        chat=chat,
        files_hash=sha256_files(files, folder),
        extra=MappingProxyType(extra),
    )


# --------------------------------------------------------------------------------------------
# reading


def _read_txt(path: Path) -> list[Prompt]:
    lines = read_lines(path)
    if not lines:
        raise TraitDataError(f"{path} line 1: file is empty; write one prefill per line")
    prompts = []
    for number, line in enumerate(lines, start=1):
        if is_blank(line):
            raise TraitDataError(
                f"{path} line {number}: blank line (nothing but spaces or invisible characters); every line is a "
                "prefill paired by line number, "
                "so remove it together with its partner in the other file"
            )
        prompts.append(Prompt(line))
    return prompts


def _read_jsonl(path: Path) -> list[Prompt]:
    lines = read_lines(path)
    if not lines:
        raise TraitDataError(
            f'{path} line 1: file is empty; write one {{"prompt": ...}} or {{"messages": [...]}} object per line'
        )
    prompts = []
    for number, line in enumerate(lines, start=1):
        if is_blank(line):
            raise TraitDataError(
                f"{path} line {number}: blank line (nothing but spaces or invisible characters); every line is a "
                "prompt paired by line number, "
                "so remove it together with its partner in the other file"
            )
        row = read_json_text(line, where=str(path), error=TraitDataError, first_line=number)
        if not isinstance(row, dict):
            raise TraitDataError(
                f'{path} line {number}: expected an object like {{"prompt": "..."}} or {{"messages": [...]}}'
            )
        prompts.append(_row_prompt(row, f"{path} line {number}"))
        if prompts[-1].is_conversation != prompts[0].is_conversation:
            raise TraitDataError(
                f"{path} line {number}: a {_form(prompts[-1])} row after {_form(prompts[0])} rows; "
                "keep one row form per trait"
            )
    return prompts


def _form(prompt: Prompt) -> str:
    return '{"messages": [...]}' if prompt.is_conversation else '{"prompt": ...}'


def _row_prompt(row: dict[str, Any], where: str) -> Prompt:
    if "messages" in row:
        if "prompt" in row or "system_prompt" in row:
            raise TraitDataError(f'{where}: has both "messages" and "prompt"; a row holds one of the two forms')
        try:
            messages = parse_messages(row["messages"])
            return Prompt.from_messages(messages)
        except TraitDataError as err:
            raise TraitDataError(f"{where}: {err}") from None
    prompt, system = row.get("prompt"), row.get("system_prompt")
    if not isinstance(prompt, str) or is_blank(prompt):
        raise TraitDataError(f'{where}: "prompt" must be a non-empty string (or write a {{"messages": [...]}} row)')
    if system is not None and not isinstance(system, str):
        raise TraitDataError(f'{where}: "system_prompt" must be a string when present')
    return Prompt(prompt, system or None)


def _check_pairs(pos_path: Path, neg_path: Path, positive: list[Prompt], negative: list[Prompt]) -> None:
    if len(positive) != len(negative):
        short, long_ = (pos_path, neg_path) if len(positive) < len(negative) else (neg_path, pos_path)
        raise TraitDataError(
            f"{pos_path.parent}: {pos_path.name} has {len(positive)} lines but {neg_path.name} has "
            f"{len(negative)}; {long_.name} line {min(len(positive), len(negative)) + 1} has no partner "
            f"in {short.name}. Prefills are paired by line number: make both files the same length"
        )
    if positive[0].is_conversation != negative[0].is_conversation:
        raise TraitDataError(
            f"{pos_path.parent}: {pos_path.name} holds {_form(positive[0])} rows but {neg_path.name} holds "
            f"{_form(negative[0])} rows; both files use one row form"
        )
    seen: dict[tuple[Prompt, Prompt], int] = {}
    for number, pair in enumerate(zip(positive, negative, strict=True), start=1):
        if pair[0].context != pair[1].context:
            raise TraitDataError(
                f"{pos_path} line {number}: the conversation before the final answer differs from {neg_path.name} "
                f"line {number} ({_difference(pair[0].context, pair[1].context)}); a conversation pair must be "
                "identical except the final assistant message"
            )
        if pair[0] == pair[1]:
            what = "final answers" if pair[0].is_conversation else "prefills"
            raise TraitDataError(
                f"{pos_path} line {number}: the positive and negative {what} are identical "
                f"(also {neg_path.name} line {number}); a pair must differ in the trait signal"
            )
        if pair in seen:
            raise TraitDataError(
                f"{pos_path} line {number}: this pair repeats the pair on line {seen[pair]} "
                f"(same in {neg_path.name}); delete one of them"
            )
        seen[pair] = number


def _difference(a: tuple[Message, ...], b: tuple[Message, ...]) -> str:
    for index, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"message {index}: {x.role} vs {y.role}" if x.role != y.role else f"message {index} ({x.role})"
    return f"{len(a)} messages before the answer vs {len(b)}"
