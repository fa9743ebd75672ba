"""Streaming outputs of the monitor and compare stages: finished groups on disk, one text per line.

A run over many texts works group by group (:func:`traitvec.monitor.chunked`). Each finished
group's entries are written atomically to ``.parts/{inputs key}/{group:06d}.jsonl`` (one JSON
object per line), so an interrupted run resumes at the first missing group and memory holds one
group at a time. When every group is done, :func:`write_texts_json` streams the parts into the final
document, ``{"texts": [ ... one text per line ... ], "other": ...}``, atomically, and the parts are
removed. :func:`iter_texts` streams the ``texts`` of such a document back, line by line, without
reading the whole file (the report and the ranking are made that way).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_path, write_text

__all__ = ["PartStore", "write_texts_json", "iter_texts", "read_fields"]


class PartStore:
    """Finished groups of one run, under ``{parts_dir}/{key}/``; parts of other keys are stale.

    Example:
        >>> store = PartStore(paths.parts_dir, key)
        >>> if not store.done(0):
        ...     store.write(0, entries)
    """

    def __init__(self, parts_dir: Path, key: str) -> None:
        self.root = parts_dir
        self.folder = parts_dir / key

    def clear_stale(self) -> None:
        """Remove the parts of runs with other inputs."""
        if self.root.is_dir():
            for child in self.root.iterdir():
                if child != self.folder:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def path(self, group: int) -> Path:
        return self.folder / f"{group:06d}.jsonl"

    def done(self, group: int) -> bool:
        """Whether group ``group`` was finished (its file is written atomically, so it is whole)."""
        return self.path(group).is_file()

    def write(self, group: int, entries: Iterable[Mapping[str, Any]]) -> None:
        """Write one finished group."""
        lines = [json.dumps(e, ensure_ascii=False, allow_nan=False, separators=(",", ":")) for e in entries]
        write_text(self.path(group), "".join(line + "\n" for line in lines))

    def read(self, group: int) -> Iterator[dict[str, Any]]:
        """The entries of a finished group."""
        with open(self.path(group), encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def entries(self, groups: int) -> Iterator[dict[str, Any]]:
        """Every entry of groups ``0 .. groups - 1``, in order."""
        for group in range(groups):
            yield from self.read(group)

    def remove(self) -> None:
        """Delete every part (the run is complete)."""
        shutil.rmtree(self.root, ignore_errors=True)


def write_texts_json(path: str | os.PathLike[str], texts: Iterable[Mapping[str, Any]], rest: Mapping[str, Any]) -> int:
    """Write ``{"texts": [...], **rest}`` atomically, one text per line; returns the number of texts.

    ``rest`` is written indented after the texts.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write('{"texts": [\n')
        for text in texts:
            if count:
                handle.write(",\n")
            handle.write(json.dumps(text, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
            count += 1
        handle.write("\n]" if count else "]")
        for key, value in rest.items():
            body = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False, default=str)
            handle.write(f",\n{json.dumps(key)}: {body}")
        handle.write("\n}\n")
    return count


def iter_texts(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The ``texts`` of a document written by :func:`write_texts_json`, one at a time.

    Raises:
        ValueError: the file is not in that layout.
    """
    with open(path, encoding="utf-8") as handle:
        if handle.readline().strip() != '{"texts": [':
            raise ValueError(f"{path}: not a traitvec texts document (its first line is not '{{\"texts\": [')")
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("]"):
                return
            if not line:
                continue
            yield json.loads(line.removesuffix(","))
    raise ValueError(f"{path}: the texts list is not closed; the file is truncated")


def read_fields(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fields after ``texts`` of a document written by :func:`write_texts_json`, read without
    parsing the texts; ``None`` when the file is missing, truncated or not in that layout."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.readline().strip() != '{"texts": [':
                return None
            for line in handle:
                if line.startswith("]"):
                    data = json.loads("{" + handle.read().lstrip().removeprefix(","))
                    return data if isinstance(data, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None
