"""Trait names and folders: ``category/trait`` under a traits root, checked before anything is read.

A trait is named ``category/trait``, relative to the traits root. :func:`resolve_trait_name`
also accepts the trait's folder as a path (``datasets/traits/styles/formality``, absolute or
relative to the current folder, with or without a trailing slash, as tab completion gives it)
when that folder lies inside the root. Names that would leave the root or name no trait folder
(``..``, ``.``, ``a/.``, empty parts, absolute paths outside the root, components longer than a
filesystem allows) are refused with a :class:`~traitvec.errors.TraitDataError`; a category
(``styles``) is answered with the list of its traits.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import TraitDataError, TraitNotFoundError

__all__ = ["DEFAULT_TRAITS_ROOT", "MAX_NAME_BYTES", "resolve_trait_name", "trait_dir", "list_traits", "no_root"]

DEFAULT_TRAITS_ROOT = "datasets/traits"
MAX_NAME_BYTES = 255
"""Longest component of a trait name: what common filesystems allow for one file name."""
_PROMPT_FILES = ("positive.txt", "positive.jsonl")


def no_root(base: Path, setting: str) -> str:
    """The message for a traits root that does not exist (names the setting and the current folder)."""
    return (
        f"{setting} = {str(base)!r} does not exist (a relative path is taken from the current folder, "
        f"{os.getcwd()}); point {setting} at a folder of category/trait folders"
    )


def _shown(name: str) -> str:
    return repr(name) if len(name) <= 80 else repr(f"{name[:60]}… ({len(name)} characters)")


def _check_name(name: str, base: Path) -> PurePosixPath:
    """The name as a relative path of plain components, or a TraitDataError saying why not."""
    text = name.replace("\\", "/").rstrip("/") if isinstance(name, str) else ""
    parts = text.split("/") if text else []
    if not isinstance(name, str) or not parts or any(p in ("", ".") for p in parts):
        raise TraitDataError(
            f"load_trait(name=) = {_shown(str(name))} names no trait folder; name a trait as category/trait "
            f"under the traits root {base}",
            setting="load_trait(name=)",
        )
    if text.startswith("/") or Path(name).is_absolute() or ".." in parts:
        raise TraitDataError(
            f"load_trait(name=) = {_shown(name)} would leave the traits root {base}; name a trait as category/trait, "
            "relative to the root",
            setting="load_trait(name=)",
        )
    if any(ord(ch) < 32 for ch in text):
        raise TraitDataError(
            f"load_trait(name=) = {_shown(name)} contains control characters; use the folder's name",
            setting="load_trait(name=)",
        )
    long = [p for p in parts if len(p.encode("utf-8")) > MAX_NAME_BYTES]
    if long:
        raise TraitDataError(
            f"load_trait(name=) = {_shown(name)}: a component is {len(long[0].encode('utf-8'))} bytes long, more "
            f"than the {MAX_NAME_BYTES} a file name may have; use a shorter folder name",
            setting="load_trait(name=)",
        )
    return PurePosixPath(*parts)


def _as_folder_path(name: str, base: Path) -> str | None:
    """``name`` read as a folder on disk inside ``base``: its ``category/trait`` name, else ``None``."""
    try:
        candidate = Path(name).expanduser()
        if not candidate.is_dir():
            return None
        resolved, root = candidate.resolve(), base.resolve()
    except (OSError, ValueError):
        return None
    if resolved == root:
        return None
    if root not in resolved.parents:
        raise TraitDataError(
            f"load_trait(name=) = {_shown(name)} is a folder outside the traits root {base} ({root}); name a trait "
            "inside the root, or point load_trait(root=) at the folder that holds it",
            setting="load_trait(name=)",
        )
    return resolved.relative_to(root).as_posix()


def resolve_trait_name(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> str:
    """The ``category/trait`` name of ``name``, which may be that name or the trait's folder path.

    Args:
        name: ``"styles/formality"``, or a path to the folder inside ``root``
            (``"datasets/traits/styles/formality/"``, absolute or relative to the current folder).
        root: the traits root.

    Raises:
        TraitDataError: the name leaves the root or names no folder (``.``, ``a/.``, too long).
        TraitNotFoundError: the root does not exist.

    Example:
        >>> resolve_trait_name("datasets/traits/styles/formality/", "datasets/traits")
        'styles/formality'
    """
    base = Path(root)
    if not base.is_dir():
        raise TraitNotFoundError(no_root(base, "load_trait(root=)"), setting="load_trait(root=)")
    if isinstance(name, str) and name:
        text = name.replace("\\", "/").rstrip("/")
        parts = text.split("/")
        plain = not text.startswith("/") and not any(p in ("", ".", "..") for p in parts)
        if not all(p in ("", ".") for p in parts) and not (plain and _is_dir(base / text)):
            found = _as_folder_path(name, base)
            if found is not None:
                return found
    return _check_name(name, base).as_posix()


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def trait_dir(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> Path:
    """Resolve a trait name (or folder path, see :func:`resolve_trait_name`) to its folder inside ``root``.

    Raises:
        TraitDataError: the name is absolute outside the root, contains ``..``, names no folder, or
            the folder is a symlink leading outside the root.
        TraitNotFoundError: the root or the folder does not exist, or the name is a category
            (the message lists its traits).
    """
    base = Path(root)
    relative = resolve_trait_name(name, base)
    folder = base.joinpath(*relative.split("/"))
    resolved_root = base.resolve()
    if resolved_root != folder.resolve() and resolved_root not in folder.resolve().parents:
        raise TraitDataError(
            f"load_trait(name=) = {_shown(name)} resolves outside the traits root {base} (a symlinked folder); "
            "copy the trait into the root instead of linking it",
            setting="load_trait(name=)",
        )
    if not _is_dir(folder):
        known = list_traits(base)
        hint = f"; traits there: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}" if known else ""
        raise TraitNotFoundError(f"no trait {_shown(relative)} under {base} (looked for {folder}){hint}")
    if not any((folder / f).exists() or (folder / f).is_symlink() for f in _PROMPT_FILES):
        inner = [f"{relative}/{t}" for t in list_traits(folder)]
        if inner:
            shown = ", ".join(inner[:12]) + (" …" if len(inner) > 12 else "")
            raise TraitNotFoundError(
                f"{relative!r} is a category under {base}, not a trait; name one of its traits as category/trait: "
                f"{shown}"
            )
    return folder


def list_traits(root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> list[str]:
    """Names (``category/trait``) of every folder under ``root`` holding positive prefills, sorted.

    Raises:
        TraitNotFoundError: ``root`` does not exist (relative paths are taken from the current folder).
    """
    base = Path(root)
    if not base.is_dir():
        raise TraitNotFoundError(no_root(base, "list_traits(root=)"), setting="list_traits(root=)")
    names = {p.parent.relative_to(base).as_posix() for pattern in _PROMPT_FILES for p in base.rglob(pattern)}
    names.discard(".")
    return sorted(names)
