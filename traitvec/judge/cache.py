"""A persistent SQLite cache of judge scores, so re-running or re-scoring costs nothing.

One row per scored prompt, keyed by the SHA-256 of (judge model, full prompt text, scoring mode and
its parameters). Rows hold the outcome — score, status (``ok`` or ``abstained``), mode, mass and
the reason for an abstention — never an API key and never the prompt. Transient failures are not
cached, so a rerun retries them.

The database runs in WAL mode with a 30-second busy timeout, so several processes and threads can
read and write it at once; each operation takes a lock inside the process. The default file is
``cache_dir() / "judge-cache.sqlite"`` (see :func:`traitvec.embedded.cache_dir`). Clear it by
deleting the file, or with :meth:`ScoreCache.clear`.

A file that is not a usable score cache — not SQLite at all (garbage bytes), a SQLite database of
something else or of another schema, damaged pages — is never repaired, replaced or moved: opening
it, or reading a damaged page later, raises one :class:`~traitvec.errors.JudgeError` naming the
file and the fix (delete it: it holds nothing but scores, which are asked again; or choose another
file, or none). Opening checks the file's header and schema; :meth:`ScoreCache.verify` (run by
every judge's ``check()``) also reads every page.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import sha256_text
from ..embedded import cache_dir
from ..errors import JudgeError
from .scores import Mode, Status

__all__ = ["CachedScore", "ScoreCache", "default_cache_path", "cache_key"]

_COLUMNS = ("key", "judge", "kind", "prompt_hash", "score", "status", "mode", "mass", "reason", "created")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    kind TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    score REAL,
    status TEXT NOT NULL,
    mode TEXT,
    mass REAL,
    reason TEXT,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``cache_dir() / "judge-cache.sqlite"`` (read from the environment when called)."""
    return cache_dir() / "judge-cache.sqlite"


def cache_key(judge: str, prompt: str, params: Mapping[str, Any]) -> str:
    """The cache key: SHA-256 over the judge model, the full prompt text and the mode's parameters."""
    return sha256_text(json.dumps([judge, prompt, dict(params)], sort_keys=True, ensure_ascii=False))


@dataclass(frozen=True)
class CachedScore:
    """A cached outcome (``ok`` or ``abstained``)."""

    score: float | None
    status: Status
    mode: Mode | None
    mass: float | None
    reason: str | None


class ScoreCache:
    """SQLite-backed score cache, safe across threads and processes.

    Args:
        path: the database file (created with its folder when missing).

    Raises:
        JudgeError: the file cannot be opened, or is not a usable score cache (see the module docstring).

    Example:
        >>> cache = ScoreCache("/tmp/judge.sqlite")
        >>> key = cache_key("gpt-4.1-mini", prompt, {"mode": "logprobs"})
        >>> cache.get(key) is None
        True
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as err:
            raise JudgeError(
                f"cannot open the judge cache {self.path} ({err}); pass another make_judge(cache_path=) path, "
                "or delete the file if it is damaged",
                setting="make_judge(cache_path=)",
            ) from None
        try:
            self._check_schema()  # first: a file that is not ours is never written to
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise self._unusable(str(err)) from None

    def _check_schema(self) -> None:
        tables = sorted(row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if "scores" in tables:
            columns = tuple(row[1] for row in self._conn.execute("PRAGMA table_info(scores)"))
            if columns != _COLUMNS:
                raise sqlite3.DatabaseError(f"its scores table has the columns {', '.join(columns)}, not traitvec's")
        elif tables:
            raise sqlite3.DatabaseError(f"it is a SQLite database of something else, with tables {', '.join(tables)}")

    def _unusable(self, detail: str) -> JudgeError:
        return JudgeError(
            f"the judge cache {self.path} is not a usable score cache ({detail}); delete it (it holds only cached "
            "scores, which are asked again), or pass another make_judge(cache_path=) path, or none: "
            "make_judge(cache_path=) = off",
            setting="make_judge(cache_path=)",
        )

    def verify(self) -> None:
        """Read every page of the file (SQLite's ``quick_check``).

        Raises:
            JudgeError: a page is damaged; the message names the file and the fix.
        """
        with self._lock:
            try:
                rows = [str(row[0]) for row in self._conn.execute("PRAGMA quick_check(3)")]
            except sqlite3.DatabaseError as err:
                raise self._unusable(str(err)) from None
        if rows != ["ok"]:
            raise self._unusable(" ".join("; ".join(rows).split())[:300])

    def get(self, key: str) -> CachedScore | None:
        """The cached outcome for ``key``, or ``None``."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT score, status, mode, mass, reason FROM scores WHERE key = ?", (key,)
                ).fetchone()
            except sqlite3.DatabaseError as err:
                raise self._unusable(str(err)) from None
        return CachedScore(*row) if row else None

    def put(
        self,
        key: str,
        *,
        judge: str,
        kind: str,
        prompt_hash: str,
        score: float | None,
        status: str,
        mode: str | None,
        mass: float | None,
        reason: str | None,
    ) -> None:
        """Store an ``ok`` or ``abstained`` outcome (failures are never cached)."""
        if status not in ("ok", "abstained"):
            raise ValueError(f"only ok and abstained scores are cached, not {status!r}")
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, judge, kind, prompt_hash, score, status, mode, mass, reason, time.time()),
                )
            except sqlite3.DatabaseError as err:
                raise self._unusable(str(err)) from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def clear(self) -> None:
        """Delete every cached score."""
        with self._lock:
            self._conn.execute("DELETE FROM scores")

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"ScoreCache({str(self.path)!r})"
