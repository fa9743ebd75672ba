"""Preference data (KTO, DPO) as trait data: :func:`import_pairs` writes a trait folder of
conversation pairs that differ only in the final assistant answer.

Accepted rows (JSON Lines, one object per line; blank lines are skipped):

- ``format="kto"``: ``{"conversations": [messages...], "label": true|false, "behavior": "..."}``,
  the whole conversation ending with the answer (TRL's ``{"prompt": [...], "completion": [...],
  "label": ...}`` is read the same way, as prompt + completion). ``label`` true = positive.
- ``format="dpo"``: ``{"prompt": [...], "chosen": [...], "rejected": [...], ...}``, one pair per
  row, chosen = positive. ``prompt`` may be a string (one user message) or absent (TRL's implicit
  prompt: ``chosen`` and ``rejected`` then hold whole conversations); ``chosen`` / ``rejected`` may
  be a string (one assistant message). Other keys (scores, source...) are ignored.

Messages follow :mod:`traitvec.conversations` (roles system/user/assistant/tool, tool calls kept).

**Pairing (KTO).** Rows are grouped by their conversation before the final answer, compared
exactly. Within a group the n-th ``true`` row pairs with the n-th ``false`` row, in file order; the
rows left over have no partner and are reported in :attr:`ImportReport.unpaired` (not an error).

**Held out.** The distinct user requests (the last user message before the answer) are shuffled
with ``random.Random(seed)`` and a fraction ``holdout`` of them (at least one, and never all) is
held out: their pairs are not written to the jsonl files, and the requests become the questions of
``steering.json``. ``holdout=0`` holds nothing out and writes no ``steering.json``.

**Refused rows.** A row that cannot be used (malformed JSON, not an object, missing keys, wrong
types, a label that is not a boolean, an empty answer, a chosen/rejected pair that differs before
the answer or has the same answer, a repeated pair) is listed with its line number and why.
Unless ``skip_bad=True`` they raise :class:`RefusedRowsError`; with it they are skipped and listed
in :attr:`ImportReport.refused`.

**Output.** ``positive.jsonl`` / ``negative.jsonl`` (rows ``{"messages": [...]}``, matched by
line), ``definition.txt`` (a stub that must be replaced before judging: until then the trait
reads as having no rubric), ``steering.json`` and ``import.json`` (where every pair came from).
The folder is built beside ``out``, checked with :func:`~traitvec.traits.load_trait`, and renamed
into place: there is never half a folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._io import sha256_file, write_text
from ._preference_rows import BehaviorCounts, Pair, ReadResult, Refused, read_rows
from .errors import ConfigError, TraitDataError
from .traits import DEFINITION_STUB, load_trait

__all__ = ["import_pairs", "ImportReport", "BehaviorCounts", "Refused", "RefusedRowsError"]

Format = Literal["kto", "dpo"]
_SHOWN = 12  # refused rows spelled out in an error message


class RefusedRowsError(TraitDataError):
    """Rows of a preference file were refused; ``rows`` lists each with its line and reason."""

    def __init__(self, message: str, rows: Sequence[Refused], *, setting: str | None = None) -> None:
        super().__init__(message, setting=setting)
        self.rows = tuple(rows)


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_pairs` read and wrote.

    Attributes:
        source: the preference file.
        out: the trait folder written.
        format: ``"kto"`` or ``"dpo"``.
        behavior: the behaviour imported (``None`` when the rows carry none).
        rows: non-blank lines read.
        pairs: pairs written to ``positive.jsonl`` / ``negative.jsonl``.
        held_out: pairs held out for steering (not written).
        questions: the held-out user requests, as written to ``steering.json``.
        behaviors: counts per behaviour found in the file (``""`` for rows without one).
        refused: rows skipped as unusable (only with ``skip_bad=True``; otherwise they raise).
        unpaired: valid KTO rows without a partner of the other label.
    """

    source: Path
    out: Path
    format: Format
    behavior: str | None
    rows: int
    pairs: int
    held_out: int
    questions: tuple[str, ...]
    behaviors: dict[str, BehaviorCounts] = field(default_factory=dict)
    refused: tuple[Refused, ...] = ()
    unpaired: tuple[Refused, ...] = ()

    def describe(self) -> str:
        """A few lines for people: counts, then every skipped and unpaired row."""
        lines = [
            f"{self.source} -> {self.out}: {self.pairs} pairs written, {self.held_out} held out "
            f"({len(self.questions)} steering questions), {len(self.refused)} rows refused, "
            f"{len(self.unpaired)} unpaired"
        ]
        for name, c in sorted(self.behaviors.items()):
            mark = "" if c.imported else " (not imported)"
            lines.append(
                f"  behaviour {name or '(none)'}{mark}: {c.rows} rows, {c.positive} positive, {c.negative} negative, "
                f"{c.pairs} pairs, {c.unpaired} unpaired"
            )
        lines += [f"  refused line {r.line}: {r.reason}" for r in self.refused]
        lines += [f"  unpaired line {r.line}: {r.reason}" for r in self.unpaired]
        return "\n".join(lines)


def import_pairs(
    path: str | os.PathLike[str],
    *,
    format: Format,
    behavior: str | None = None,
    out: str | os.PathLike[str],
    skip_bad: bool = False,
    holdout: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
) -> ImportReport:
    """Turn a KTO or DPO preference file into a trait folder of conversation pairs.

    Args:
        path: the JSON Lines file.
        format: ``"kto"`` (labelled rows, paired by prompt) or ``"dpo"`` (chosen/rejected rows).
        behavior: import only rows whose ``"behavior"`` is this (rows without the key are kept);
            required when the file holds several behaviours.
        out: the trait folder to write, e.g. ``datasets/traits/agent/verification_before_action``.
        skip_bad: import the usable rows and list the refused ones instead of raising.
        holdout: fraction of the distinct user requests held out as steering questions.
        seed: seed of the held-out draw.
        overwrite: replace ``out`` when it already exists.

    Returns:
        The :class:`ImportReport`.

    Raises:
        RefusedRowsError: rows were refused and ``skip_bad`` is False (line numbers and reasons).
        TraitDataError: no pairs remain, or several behaviours and no ``behavior``.
        ConfigError: a bad argument, or ``out`` exists and ``overwrite`` is False.

    Example:
        >>> report = import_pairs("datasets/examples/kto_example.jsonl", format="kto",
        ...                       behavior="verification_before_action", out="datasets/traits/agent/verify")
        >>> print(report.describe())
    """
    source, target = Path(path), Path(out)
    _check_arguments(source, target, format, holdout, overwrite)
    read = read_rows(source, format, behavior)
    if read.refused and not skip_bad:
        raise _refused_error(source, read.refused)
    if not read.pairs:
        raise TraitDataError(
            f"{source}: no pairs to import ({read.rows} rows read, {len(read.refused)} refused, "
            f"{len(read.unpaired)} unpaired{_behavior_hint(behavior, read.behaviors)}); "
            + ("KTO rows pair by identical conversation before the answer" if format == "kto" else "check the rows"),
            setting="import_pairs(behavior=)" if _behavior_hint(behavior, read.behaviors) else None,
        )
    kept, held = _hold_out(read.pairs, holdout, seed)  # keeps at least one request for extraction
    questions = _questions(held)
    name = behavior if behavior is not None else next(iter(sorted(set(read.behaviors) - {""})), None)
    _write_folder(target, overwrite, _files(source, format, name, holdout, seed, kept, held, questions, read))
    return ImportReport(
        source=source,
        out=target,
        format=format,
        behavior=name,
        rows=read.rows,
        pairs=len(kept),
        held_out=len(held),
        questions=tuple(questions),
        behaviors=read.behaviors,
        refused=tuple(read.refused),
        unpaired=tuple(read.unpaired),
    )


def _check_arguments(source: Path, target: Path, format: str, holdout: float, overwrite: bool) -> None:
    if format not in ("kto", "dpo"):
        raise ConfigError(f"import_pairs(format=) = {format!r}; use 'kto' or 'dpo'", setting="import_pairs(format=)")
    if not 0 <= holdout < 1:
        raise ConfigError(
            f"import_pairs(holdout=) = {holdout}; expected a fraction in [0, 1) of the user requests to hold out",
            setting="import_pairs(holdout=)",
        )
    if not source.is_file():
        raise ConfigError(
            f"import_pairs(path=) = {str(source)!r} is not a file (relative paths start at {os.getcwd()})",
            setting="import_pairs(path=)",
        )
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"import_pairs(out=) = {str(target)!r} already exists; choose a new folder, or use "
            "import_pairs(overwrite=) to replace it",
            setting="import_pairs(overwrite=)",
        )


def _refused_error(source: Path, refused: Sequence[Refused]) -> RefusedRowsError:
    shown = "; ".join(f"line {r.line}: {r.reason}" for r in refused[:_SHOWN])
    more = f"; … and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
    return RefusedRowsError(
        f"{source}: {len(refused)} row(s) refused — {shown}{more}; fix them, or use import_pairs(skip_bad=) to "
        "import the rest and list what was skipped",
        refused,
        setting="import_pairs(skip_bad=)",
    )


def _behavior_hint(behavior: str | None, behaviors: dict[str, BehaviorCounts]) -> str:
    if behavior is None or behavior in behaviors:
        return ""
    found = ", ".join(sorted(b for b in behaviors if b)) or "none"
    return f"; no row has behavior {behavior!r} (behaviours in the file: {found})"


def _hold_out(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``round(fraction × distinct requests)`` requests (at least 1, never all) with their pairs."""
    requests = list(dict.fromkeys(p.request for p in pairs))  # distinct, in file order
    count = (
        0 if fraction == 0 or len(requests) < 2 else min(max(int(fraction * len(requests) + 0.5), 1), len(requests) - 1)
    )
    held = set(random.Random(seed).sample(requests, count))
    return [p for p in pairs if p.request not in held], [p for p in pairs if p.request in held]


def _questions(held: Sequence[Pair]) -> list[str]:
    return [q for q in dict.fromkeys(p.request for p in held) if q.strip()]


def _files(
    source: Path,
    format: str,
    behavior: str | None,
    holdout: float,
    seed: int,
    kept: Sequence[Pair],
    held: Sequence[Pair],
    questions: Sequence[str],
    read: ReadResult,
) -> dict[str, str]:
    def rows(side: Literal["positive", "negative"]) -> str:
        lines = []
        for pair in kept:
            answer = pair.positive if side == "positive" else pair.negative
            messages = [m.to_dict() for m in (*pair.context, answer)]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        return "\n".join(lines) + "\n"

    name = behavior or "the behaviour"
    provenance = {
        "source": source.name,
        "source_sha256": sha256_file(source),
        "format": format,
        "behavior": behavior,
        "holdout": holdout,
        "seed": seed,
        "pairs": [list(p.lines) for p in kept],
        "held_out": [list(p.lines) for p in held],
        "refused": [{"line": r.line, "reason": r.reason} for r in read.refused],
        "unpaired": [{"line": r.line, "reason": r.reason} for r in read.unpaired],
    }
    files = {
        "positive.jsonl": rows("positive"),
        "negative.jsonl": rows("negative"),
        "definition.txt": _STUB.format(stub=DEFINITION_STUB, source=source.name, behavior=name),
        "import.json": json.dumps(provenance, indent=2, ensure_ascii=False) + "\n",
    }
    if questions:
        files["steering.json"] = json.dumps({"questions": list(questions)}, indent=2, ensure_ascii=False) + "\n"
    return files


_STUB = """{stub}: write this rubric before judging.
traitvec import-pairs wrote this file from {source} (behaviour {behavior!r}). Until you replace it,
traitvec reads the trait as having no rubric: extraction works, vetting and steering evaluation
refuse to judge. Replace the whole file with the judge's scoring guide, in this shape:

Score {behavior} (0-100).

HIGH (70-100): what a fully {behavior} answer does
MID (40-70): partial or ambiguous
LOW (0-40): what the rejected answers do instead

Key: the one distinction the judge must not miss.
"""


def _write_folder(target: Path, overwrite: bool, files: dict[str, str]) -> None:
    """Build the folder beside ``target``, check that it loads, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.import-", dir=target.parent))
    try:
        for name, text in files.items():
            if name != "definition.txt":
                write_text(build / name, text).chmod(0o644)
        load_trait(build.name, root=build.parent)  # refuse to put in place a folder that does not load
        write_text(build / "definition.txt", files["definition.txt"]).chmod(0o644)
        build.chmod(0o755)
        with _set_aside(target if target.exists() else None):
            os.replace(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build)


@contextlib.contextmanager
def _set_aside(folder: Path | None) -> Iterator[None]:
    """Move an existing folder out of the way; delete it on success, put it back on failure."""
    if folder is None:
        yield
        return
    aside = folder.with_name(f".{folder.name}.replaced")
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(folder, aside)
    try:
        yield
    except BaseException:
        if not folder.exists():
            os.replace(aside, folder)
        raise
    shutil.rmtree(aside)
