"""Atomic file output, the one strict JSON reader, and content hashing.

Every output traitvec writes goes through these helpers: the data is written to a temporary file
in the destination folder, flushed to disk, then renamed over the destination, so an interrupted
run leaves either the old file or the new one, never half of one. Files are created with the
mode an ordinary ``open()`` would give them (``0666`` less the umask: ``0644`` under umask
``022``), folders with ``0777`` less the umask.

Every JSON document traitvec reads from a user or from disk goes through :func:`read_json_text`
(or :func:`load_json`), which refuses what :func:`json.loads` lets through or turns into a
traceback: objects that repeat a key (the message names the key and both lines), nesting deeper
than :data:`MAX_JSON_DEPTH`, integers longer than :data:`MAX_JSON_INT_DIGITS` digits, ``NaN`` and
``Infinity``, and files over a size limit. Each problem is one :class:`JSONError` (or the error
class the caller passes) naming the file and line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import TraitvecError

__all__ = [
    "atomic_path",
    "write_bytes",
    "write_text",
    "write_json",
    "current_umask",
    "apply_umask",
    "JSONError",
    "read_json_text",
    "load_json",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "MAX_JSON_BYTES",
    "sha256_file",
    "sha256_files",
    "sha256_text",
]

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects a JSON document may have."""
MAX_JSON_INT_DIGITS = 100
"""Most digits an integer in a JSON document may have."""
MAX_JSON_BYTES = 256 << 20
"""Largest JSON file :func:`load_json` reads by default (256 MiB)."""


class JSONError(TraitvecError, ValueError):
    """A JSON document cannot be read: bad syntax, a repeated key, too deep, too large."""


# --------------------------------------------------------------------------------------------
# atomic writes


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, so no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode a plain ``open()`` (file) or ``mkdir`` (folder) would have given it.

    For files written by code that creates them owner-only (``mkstemp``; some savers).
    """
    target = Path(path)
    base = 0o777 if target.is_dir() else 0o666
    os.chmod(target, base & ~current_umask())


def _new_temp(dest: Path, suffix: str) -> Path:
    """Create an empty, unique temporary file beside ``dest`` with the umask's mode."""
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{suffix or '.tmp'}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Use this for writers that want a file name (safetensors, matplotlib, GGUF). On an exception
    the temporary file is removed and ``path`` is left as it was. The file gets the mode an
    ordinary ``open()`` gives (``0666`` less the umask).

    Example:
        >>> with atomic_path("out/plot.png") as tmp:
        ...     figure.savefig(tmp)
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(dest, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # writers such as safetensors recreate the file owner-only
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (UTF-8, trailing newline) atomically."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    return write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --------------------------------------------------------------------------------------------
# strict JSON


class _Refused(Exception):
    """Raised inside the decoder's hooks; turned into one error with a line number."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(kind, value)
        self.kind, self.value = kind, value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused("duplicate", key)
        out[key] = value
    return out


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _Refused("int", text)
    return int(text)


def _constant(name: str) -> Any:
    raise _Refused("constant", name)


def _number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("float", text)
    return value


def read_json_text(text: str, *, where: str, error: type[TraitvecError] = JSONError, first_line: int = 1) -> Any:
    """Parse ``text`` as strict JSON; ``where`` names the source in error messages (a path).

    Args:
        text: the document.
        where: what to call it in messages (a path such as ``"datasets/traits/a/b/steering.json"``).
        error: the :class:`~traitvec.errors.TraitvecError` subclass to raise.
        first_line: the line number of the text's first line in its file (a jsonl row's line).

    Raises:
        error: invalid JSON, a repeated key, nesting deeper than :data:`MAX_JSON_DEPTH`, an integer
            longer than :data:`MAX_JSON_INT_DIGITS` digits, ``NaN``/``Infinity`` or a float
            outside the double range; the message names the line.

    Example:
        >>> read_json_text('{"a": 1, "a": 2}', where="x.json")
        Traceback (most recent call last):
        traitvec._io.JSONError: x.json line 1: key "a" appears twice in one object (first on line 1); ...
    """
    try:
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_int=_integer, parse_constant=_constant, parse_float=_number
        )
    except json.JSONDecodeError as err:
        line = err.lineno + first_line - 1
        raise error(f"{where} line {line} column {err.colno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise error(_too_deep(text, where, first_line)) from None
    except _Refused as err:
        raise error(_refusal(text, where, err, first_line)) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(_too_deep(text, where, first_line))
    return value


def load_json(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_JSON_BYTES, error: type[TraitvecError] = JSONError
) -> Any:
    """Read a JSON file strictly (see :func:`read_json_text`); UTF-8, with or without a byte-order mark.

    Raises:
        OSError: the file cannot be read.
        error: the file is larger than ``max_bytes``, not UTF-8, or not strict JSON.
    """
    file = Path(path)
    size = file.stat().st_size
    if size > max_bytes:
        raise error(f"{file}: {size} bytes, more than the {max_bytes} a JSON file may have here")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(f"{file} line {line}: byte 0x{data[err.start]:02x} is not UTF-8; save the file as UTF-8") from None
    return read_json_text(text, where=str(file), error=error)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{}]|-?\d[\d.eE+-]*|NaN|-?Infinity', re.S)


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _too_deep(text: str, where: str, first: int) -> str:
    level, line = 0, 1
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in "[{":
            level += 1
            if level > MAX_JSON_DEPTH:
                line = _line(text, match.start())
                break
        elif token in "]}":
            level -= 1
    return (
        f"{where} line {line + first - 1}: arrays and objects nested more than {MAX_JSON_DEPTH} levels deep; "
        "no traitvec file needs that, so the file is damaged or not what it should be"
    )


def _refusal(text: str, where: str, err: _Refused, first: int) -> str:
    if err.kind == "duplicate":
        return _duplicate(text, where, err.value, first)
    line = next((_line(text, m.start()) for m in _TOKEN.finditer(text) if m.group(0) == err.value), 1) + first - 1
    if err.kind == "int":
        return (
            f"{where} line {line}: an integer of {len(err.value.lstrip('-'))} digits (at most "
            f"{MAX_JSON_INT_DIGITS} are read); write a smaller number"
        )
    return f"{where} line {line}: {err.value} is not a JSON number; use a finite number or null"


def _duplicate(text: str, where: str, key: str, first: int) -> str:
    stack: list[dict[str, int] | None] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token == "{":
            stack.append({})
        elif token == "[":
            stack.append(None)
        elif token in "]}":
            if stack:
                stack.pop()
        elif match.group(1) is not None and stack and stack[-1] is not None:
            name = json.loads(token[: token.rindex(":")].rstrip())
            line = _line(text, match.start()) + first - 1
            if name == key and name in stack[-1]:
                return (
                    f'{where} line {line}: key "{key}" appears twice in one object (first on line '
                    f"{stack[-1][name]}); JSON readers keep only one of them, so delete or rename one"
                )
            stack[-1].setdefault(name, line)
    return f'{where}: key "{key}" appears twice in one object; delete or rename one'


# --------------------------------------------------------------------------------------------
# hashing


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str]) -> str:
    """One hex SHA-256 over several files: each file's path relative to ``root`` and its bytes."""
    digest = hashlib.sha256()
    base = Path(root)
    for path in sorted(Path(p) for p in paths):
        digest.update(path.relative_to(base).as_posix().encode())
        digest.update(b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
