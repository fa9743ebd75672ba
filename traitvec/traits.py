"""Trait datasets: loading and validating ``{root}/{category}/{trait}/``.

A trait folder holds matched prefills and what the judge and the steering evaluation need:

- ``positive.txt`` / ``negative.txt``: one prefill per line, paired by line number; or
  ``positive.jsonl`` / ``negative.jsonl``: rows ``{"prompt": ..., "system_prompt": ...}`` that go
  through the model's chat template;
- ``definition.txt``: the judge's rubric (optional for extraction, needed for judging);
- ``steering.json``: ``questions`` plus optional ``eval_prompt`` and ``direction``.

Every rule is checked when the trait is loaded and a violation raises
:class:`~traitvec.errors.TraitDataError` naming the file and line. Files may be UTF-8 with or
without a byte-order mark and may use CRLF line ends.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Literal

from ._io import sha256_files
from .errors import TraitDataError, TraitNotFoundError

__all__ = ["Prompt", "Trait", "load_trait", "list_traits", "trait_dir", "DEFAULT_TRAITS_ROOT"]

logger = logging.getLogger(__name__)

DEFAULT_TRAITS_ROOT = "datasets/traits"
Direction = Literal["positive", "negative"]
_KNOWN_STEERING_KEYS = ("questions", "eval_prompt", "direction")
_warned_unknown: set[tuple[str, tuple[str, ...]]] = set()


@dataclass(frozen=True)
class Prompt:
    """One side of a pair: a base-model prefill, or a chat prompt with an optional system prompt."""

    text: str
    system_prompt: str | None = None


@dataclass(frozen=True)
class Trait:
    """A validated trait dataset.

    Attributes:
        name: ``"category/trait"``, the folder relative to the traits root.
        path: the folder.
        positive: prompts that show the trait, paired by index with ``negative``.
        negative: matched prompts that do not.
        lines: the 1-based line number of each pair in its files (kept through :meth:`select`).
        definition: the judge's rubric from ``definition.txt`` (``None`` when absent).
        questions: steering questions from ``steering.json`` (empty when absent).
        eval_prompt: the trait's own judge prompt with ``{question}`` and ``{answer}``, if any.
        direction: ``"negative"`` when the trait is meant to be steered down.
        chat: True for the jsonl form, whose prompts go through the chat template.
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


def trait_dir(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> Path:
    """Resolve ``category/trait`` to its folder, refusing names that would leave ``root``.

    Raises:
        TraitDataError: the name is absolute or contains ``..``.
        TraitNotFoundError: the root or the folder does not exist.
    """
    base = Path(root)
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or Path(name).is_absolute() or ".." in pure.parts:
        raise TraitDataError(
            f"trait name {name!r} would leave the traits root {base}; "
            "name a trait as category/trait, relative to the root"
        )
    if not base.is_dir():
        raise TraitNotFoundError(
            f"traits root {base} does not exist; pass --traits-root pointing at a folder of category/trait folders"
        )
    folder = base.joinpath(*pure.parts)
    resolved_root = base.resolve()
    if resolved_root != folder.resolve() and resolved_root not in folder.resolve().parents:
        raise TraitDataError(f"trait name {name!r} resolves outside the traits root {base}; use category/trait")
    if not folder.is_dir():
        known = list_traits(base)
        hint = f"; traits there: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}" if known else ""
        raise TraitNotFoundError(f"no trait {name!r} under {base} (looked for {folder}){hint}")
    return folder


def list_traits(root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> list[str]:
    """Names (``category/trait``) of every folder under ``root`` holding positive prefills, sorted."""
    base = Path(root)
    if not base.is_dir():
        raise TraitNotFoundError(
            f"traits root {base} does not exist; pass --traits-root pointing at a folder of category/trait folders"
        )
    names = {
        p.parent.relative_to(base).as_posix()
        for pattern in ("positive.txt", "positive.jsonl")
        for p in base.rglob(pattern)
    }
    return sorted(names)


def load_trait(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> Trait:
    """Load and validate one trait folder.

    Args:
        name: ``"category/trait"`` relative to ``root``.
        root: the traits root (default ``datasets/traits``).

    Returns:
        The validated :class:`Trait`.

    Raises:
        TraitDataError: a rule is broken; the message names the file and line.
        TraitNotFoundError: there is no such trait.

    Example:
        >>> trait = load_trait("hum/optimism", root="../shared/external-traits")
        >>> trait.n_pairs, len(trait.questions)
        (92, 20)
    """
    folder = trait_dir(name, root)
    display = PurePosixPath(name.replace("\\", "/")).as_posix()
    txt = (folder / "positive.txt").exists(), (folder / "negative.txt").exists()
    jsonl = (folder / "positive.jsonl").exists(), (folder / "negative.jsonl").exists()
    if any(txt) and any(jsonl):
        raise TraitDataError(
            f"{folder}: holds both .txt and .jsonl prefills; keep one form (positive/negative.txt or .jsonl)"
        )
    if any(jsonl):
        chat = True
        pos_path, neg_path = folder / "positive.jsonl", folder / "negative.jsonl"
    else:
        chat = False
        pos_path, neg_path = folder / "positive.txt", folder / "negative.txt"
    for path in (pos_path, neg_path):
        if not path.exists():
            raise TraitDataError(
                f"{path}: missing; a trait needs positive and negative prefills "
                "(positive.txt + negative.txt, or positive.jsonl + negative.jsonl)"
            )
    reader = _read_jsonl if chat else _read_txt
    positive, negative = reader(pos_path), reader(neg_path)
    _check_pairs(pos_path, neg_path, positive, negative)

    definition = None
    def_path = folder / "definition.txt"
    if def_path.exists():
        definition = "\n".join(_read_lines(def_path)).strip() or None
        if definition is None:
            raise TraitDataError(f"{def_path} line 1: file is empty; write the judge's rubric or delete the file")

    questions: tuple[str, ...] = ()
    eval_prompt: str | None = None
    direction: Direction = "positive"
    extra: dict[str, Any] = {}
    steering_path = folder / "steering.json"
    if steering_path.exists():
        questions, eval_prompt, direction, extra = _read_steering(steering_path)

    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
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


def _decode(path: Path) -> str:
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


def _read_lines(path: Path) -> list[str]:
    text = _decode(path).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def _read_txt(path: Path) -> list[Prompt]:
    lines = _read_lines(path)
    if not lines:
        raise TraitDataError(f"{path} line 1: file is empty; write one prefill per line")
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise TraitDataError(
                f"{path} line {number}: blank line; every line is a prefill paired by line number, "
                "so remove it together with its partner in the other file"
            )
        prompts.append(Prompt(line))
    return prompts


def _read_jsonl(path: Path) -> list[Prompt]:
    lines = _read_lines(path)
    if not lines:
        raise TraitDataError(f'{path} line 1: file is empty; write one {{"prompt": ...}} object per line')
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise TraitDataError(
                f"{path} line {number}: blank line; every line is a prompt paired by line number, "
                "so remove it together with its partner in the other file"
            )
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TraitDataError(f"{path} line {number} column {err.colno}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise TraitDataError(f'{path} line {number}: expected an object like {{"prompt": "..."}}')
        prompt, system = row.get("prompt"), row.get("system_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TraitDataError(f'{path} line {number}: "prompt" must be a non-empty string')
        if system is not None and not isinstance(system, str):
            raise TraitDataError(f'{path} line {number}: "system_prompt" must be a string when present')
        prompts.append(Prompt(prompt, system or None))
    return prompts


def _check_pairs(pos_path: Path, neg_path: Path, positive: list[Prompt], negative: list[Prompt]) -> None:
    if len(positive) != len(negative):
        short, long_ = (pos_path, neg_path) if len(positive) < len(negative) else (neg_path, pos_path)
        raise TraitDataError(
            f"{pos_path.parent}: {pos_path.name} has {len(positive)} lines but {neg_path.name} has "
            f"{len(negative)}; {long_.name} line {min(len(positive), len(negative)) + 1} has no partner "
            f"in {short.name}. Prefills are paired by line number: make both files the same length"
        )
    seen: dict[tuple[Prompt, Prompt], int] = {}
    for number, pair in enumerate(zip(positive, negative, strict=True), start=1):
        if pair[0] == pair[1]:
            raise TraitDataError(
                f"{pos_path} line {number}: the positive and negative prefills are identical "
                f"(also {neg_path.name} line {number}); a pair must differ in the trait signal"
            )
        if pair in seen:
            raise TraitDataError(
                f"{pos_path} line {number}: this pair repeats the pair on line {seen[pair]} "
                f"(same in {neg_path.name}); delete one of them"
            )
        seen[pair] = number


def _read_steering(path: Path) -> tuple[tuple[str, ...], str | None, Direction, dict[str, Any]]:
    text = _decode(path)
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
