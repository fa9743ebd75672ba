"""Fingerprints that identify a model's weights exactly: local folders, hub snapshots, models in memory.

- A local folder: SHA-256 over every file ``from_pretrained`` reads (weights, config, tokenizer,
  chat template, custom code), each hashed whole, streamed. Each file's digest is cached in
  traitvec's cache folder (``fingerprints/``, keyed by the folder's absolute path) together with
  the file's size and modification time, so a rerun hashes only files that changed.
- A hub model: the commit of its cached snapshot (or the revision itself when it is a commit).
- A model in memory: SHA-256 over the names, shapes, dtypes and every value of every parameter and
  buffer, in chunks. Weights that accelerate offloads (meta tensors) are read from the hook's
  ``weights_map``; any that cannot be read are hashed by name and shape and listed in the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import JSONError, load_json, sha256_file, sha256_text, write_json
from .embedded import cache_dir

__all__ = [
    "folder_digest",
    "model_files",
    "parameter_digest",
    "hub_snapshot",
    "template_text",
    "DIGEST_LENGTH",
]

logger = logging.getLogger("traitvec.models")

DIGEST_LENGTH = 16
"""Hex digits kept of each fingerprint's SHA-256."""
_MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model", ".txt", ".jinja", ".py")
_SKIPPED_NAMES = ("README.txt", "LICENSE.txt", "NOTICE.txt")
_CACHE_FORMAT = 1
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that change what ``from_pretrained`` loads, sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix in _MODEL_SUFFIXES and p.name not in _SKIPPED_NAMES and not p.name.startswith(".") and p.is_file()
    )


def folder_digest(folder: Path) -> str:
    """SHA-256 over every model file of ``folder`` (name and full content), with per-file caching.

    A file whose size and modification time match the cached entry is not read again.

    Example:
        >>> folder_digest(Path("checkpoints/step-1000"))
        '3f1c9a0d2b7e4f55'
    """
    folder = folder.resolve()
    record = cache_dir() / "fingerprints" / f"{sha256_text(str(folder))[:24]}.json"
    cached = _read_record(record, folder)
    entries: dict[str, dict[str, Any]] = {}
    digest = hashlib.sha256()
    for path in model_files(folder):
        stat = path.stat()
        entry = cached.get(path.name)
        if not (entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns):
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
        entries[path.name] = entry
        digest.update(f"{path.name}\0{entry['sha256']}\0".encode())
    if entries != cached:
        try:
            write_json(record, {"format": _CACHE_FORMAT, "folder": str(folder), "files": entries})
        except OSError as err:  # a read-only cache only costs a rehash next time
            logger.debug("cannot cache the fingerprint of %s in %s: %s", folder, record, err)
    return digest.hexdigest()[:DIGEST_LENGTH]


def _read_record(record: Path, folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = load_json(record)
    except (OSError, JSONError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or data.get("folder") != str(folder):
        return {}
    files = data.get("files")
    return (
        {k: v for k, v in files.items() if isinstance(v, dict) and isinstance(v.get("sha256"), str)}
        if isinstance(files, dict)
        else {}
    )


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer of ``model``: names, shapes, dtypes and all values.

    Tensors are read in chunks; offloaded (meta) tensors come from accelerate's ``weights_map``.
    """
    digest = hashlib.sha256()
    skipped = []
    with torch.no_grad():
        tensors = [*model.named_parameters(), *model.named_buffers()]
        for name, tensor in tensors:
            digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
            value = _offloaded(model, name) if tensor.device.type == "meta" else tensor
            if value is None:
                skipped.append(name)
                digest.update(b"unreadable\0")
                continue
            _update(digest, value)
    if skipped:
        logger.warning(
            "fingerprint of %s: %d offloaded tensors could not be read and are identified by name and shape only "
            "(%s%s)",
            type(model).__name__,
            len(skipped),
            ", ".join(skipped[:5]),
            " …" if len(skipped) > 5 else "",
        )
    return digest.hexdigest()[:DIGEST_LENGTH]


def _update(digest: Any, tensor: torch.Tensor, chunk: int = 1 << 24) -> None:
    flat = tensor.detach().reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    raw = flat.view(torch.uint8) if flat.element_size() and flat.numel() else flat
    for start in range(0, raw.numel(), chunk):
        digest.update(raw[start : start + chunk].cpu().numpy().tobytes())


def _offloaded(model: nn.Module, name: str) -> torch.Tensor | None:
    """The value accelerate keeps for the offloaded tensor ``name`` (its hook's ``weights_map``)."""
    owner, _, local = name.rpartition(".")
    try:
        module = model.get_submodule(owner) if owner else model
    except AttributeError:
        return None
    hook = getattr(module, "_hf_hook", None)
    for candidate in [*getattr(hook, "hooks", ()), hook]:
        weights = getattr(candidate, "weights_map", None)
        if weights is None:
            continue
        try:
            value = weights[local]
        except (KeyError, OSError):
            continue
        if isinstance(value, torch.Tensor) and value.device.type != "meta":
            return value
    return None


def hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The folder of ``repo_id``'s snapshot at ``revision`` in the Hugging Face cache, if it is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id or revision (huggingface_hub's HFValidationError)
        return None
    return Path(found).parent if isinstance(found, str) else None


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit that ``revision`` of ``repo_id`` names: the revision itself, or the cached snapshot's."""
    if revision and _COMMIT.match(revision):
        return revision
    snapshot = hub_snapshot(repo_id, revision)
    return snapshot.name if snapshot is not None and _COMMIT.match(snapshot.name) else None


def template_text(folder: Path) -> str | None:
    """The chat template a tokenizer saved in ``folder`` would have (``None`` when it has none)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name, key in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = load_json(path)
        except (OSError, JSONError):
            continue
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value:  # named templates: [{"name", "template"}, ...]
            return "\n".join(str(item.get("template", "")) for item in value if isinstance(item, dict))
    return None


def environment_offline() -> bool:
    """True when the Hugging Face libraries are told to stay offline (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
