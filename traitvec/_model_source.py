"""Where a model comes from, how it is read, and the checks and errors around loading it.

:func:`resolve_source` turns a model name (embedded name, local folder, hub id) into a
:class:`ModelSource` with the fingerprint of its weights when that is known without loading
them. The rest turns what can go wrong at load time into one-line
:class:`~traitvec.errors.ModelError` messages that say how to fix it: a hub that cannot be
reached (checked in a few seconds, before transformers spends a minute retrying), damaged
safetensors, pickles that ``weights_only`` refuses, devices this machine does not have,
quantisation without bitsandbytes or a GPU, adapters that are not PEFT folders.
:func:`from_pretrained` reads the tokenizer and weights with those checks; :func:`resolve_device`
and :func:`resolve_dtype` turn ``auto`` into what this machine has.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from ._fingerprint import environment_offline, folder_digest, hub_commit, hub_snapshot, parameter_digest
from .embedded import EMBEDDED_MODELS, embedded_model_dir, is_embedded, source_fingerprint
from .errors import ModelError

__all__ = [
    "ModelSource",
    "resolve_source",
    "hub_unreachable",
    "check_device_map",
    "quantization_config",
    "adapter_folder",
    "load_error",
    "from_pretrained",
    "loaded_fingerprint",
    "apply_adapter",
    "resolve_device",
    "resolve_dtype",
    "HUB_CHECK_SECONDS",
]

HUB_CHECK_SECONDS = 3.0
"""How long the hub reachability check waits (name lookup and connection together)."""
Quantization = Literal["8bit", "4bit"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # the hub's own rule


@dataclass(frozen=True)
class ModelSource:
    """A model name resolved to what ``from_pretrained`` reads.

    Attributes:
        name: the name as given.
        source: the folder or hub id passed to ``from_pretrained``.
        kind: ``embedded``, ``local`` or ``hub``.
        folder: the folder holding its files when there is one on this machine (for a hub model,
            its cached snapshot), else ``None``.
        fingerprint: the weights' fingerprint when known without loading, else ``None``.
    """

    name: str
    source: str
    kind: Literal["embedded", "local", "hub"]
    folder: Path | None
    fingerprint: str | None


def resolve_source(name: str, revision: str | None = None, *, prepare: bool = True) -> ModelSource:
    """Resolve a model name; a local folder's fingerprint hashes every model file (cached per file).

    Args:
        name: an embedded name, an existing folder, or a hub id ``org/name``.
        revision: the hub revision (ignored for local folders and embedded models).
        prepare: convert an embedded model that is not in the cache yet (else its folder and
            fingerprint are ``None`` until it is).

    Raises:
        ModelError: the name is none of the three, or the folder has no ``config.json``.
    """
    if is_embedded(name):
        folder = embedded_model_dir(name) if prepare else _cached_embedded(name)
        found = source_fingerprint(folder) if folder is not None else None
        return ModelSource(name, str(folder), "embedded", folder, f"gguf-sha256:{found}" if found else None)
    path = Path(name).expanduser()
    if _exists(path):
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; point at a folder saved by save_pretrained")
        return ModelSource(name, str(path), "local", path, f"local-sha256:{folder_digest(path)}")
    if _HUB_ID.match(name) and not name.startswith((".", "~")):
        commit = hub_commit(name, revision)
        return ModelSource(
            name, name, "hub", hub_snapshot(name, revision), f"hub-revision:{commit}" if commit else None
        )
    shown = name if len(name) <= 80 else f"{name[:60]}… ({len(name)} characters)"
    raise ModelError(
        f"unknown model {shown!r}: not an embedded model ({', '.join(EMBEDDED_MODELS)}), not an existing folder "
        f"(relative paths are taken from the current folder, {os.getcwd()}), and not a Hugging Face id of the "
        "form org/name"
    )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the filesystem, or with a NUL byte, is no folder
        return False


def _cached_embedded(name: str) -> Path | None:
    from .embedded import cache_dir

    for folder in sorted((cache_dir() / "models").glob(f"{name}-v*")):
        if source_fingerprint(folder):
            return folder
    return None


def hub_unreachable(timeout: float = HUB_CHECK_SECONDS) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or ``None`` when it can.

    ``HF_HUB_OFFLINE`` counts as unreachable. Otherwise one TCP connection is tried to the hub
    (``HF_ENDPOINT``, default ``https://huggingface.co``), or to the HTTPS proxy when one is set,
    in a thread that is given up after ``timeout`` seconds (name lookups have no timeout of their own).
    """
    if environment_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy else endpoint)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as err:
            outcome.append(f"cannot connect to {host}:{port}: {err.strerror or err}")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer from {host}:{port} within {timeout:g} s"


def offline_message(name: str, reason: str) -> str:
    """The one line said when a hub model is neither reachable nor cached."""
    return (
        f"model {name!r} is a Hugging Face id, but the hub cannot be reached from this machine ({reason}) and the "
        "model is not in the local Hugging Face cache; here the model must be a local folder saved by "
        f'save_pretrained (model = "/path/to/folder") or an embedded model ({", ".join(EMBEDDED_MODELS)})'
    )


def check_device_map(device_map: str | dict[str, Any] | None) -> None:
    """Refuse a ``device_map`` that names a CUDA or MPS device this machine does not have."""
    if device_map is None:
        return
    values = list(device_map.values()) if isinstance(device_map, dict) else [device_map]
    for value in values:
        text = str(value)
        if text.startswith("cuda") or (isinstance(value, int) and not isinstance(value, bool)):
            if not torch.cuda.is_available():
                raise ModelError(
                    f"device_map = {device_map!r} places the model on {text!r}, but no CUDA GPU is visible here; use "
                    'device_map = "auto" (which uses the CPU when there is no GPU) or remove device_map'
                )
        if text.startswith("mps") and not _mps_available():
            raise ModelError(
                f"device_map = {device_map!r} places the model on 'mps', which exists only on Apple silicon; "
                'use device_map = "auto" or remove device_map'
            )


def quantization_config(kind: Quantization, compute_dtype: torch.dtype, *, check: bool = True) -> Any:
    """The ``BitsAndBytesConfig`` for ``quantization = "8bit" | "4bit"``, computing in ``compute_dtype``.

    Raises:
        ModelError: (with ``check``) bitsandbytes is not installed or no CUDA GPU is visible;
            the message names what to install.
    """
    if check:
        missing = []
        if importlib.util.find_spec("bitsandbytes") is None:
            missing.append("the bitsandbytes package is not installed (pip install bitsandbytes)")
        if not torch.cuda.is_available():
            missing.append("no CUDA GPU is visible (bitsandbytes quantisation needs one here)")
        if missing:
            raise ModelError(
                f'quantization = "{kind}" cannot be used on this machine: {"; and ".join(missing)}. Install '
                "bitsandbytes on a machine with a CUDA GPU, or remove quantization from config.toml",
                setting="ExperimentConfig.quantization",
            )
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def adapter_folder(adapter: str) -> Path:
    """The PEFT adapter folder named by ``adapter = "path"``, checked.

    Raises:
        ModelError: the folder or its ``adapter_config.json`` is missing, or peft is not installed.
    """
    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(
            f"adapter = {adapter!r}: {folder} is not a PEFT adapter folder (no adapter_config.json; relative paths "
            f"are taken from the current folder, {os.getcwd()}); point it at a folder saved by "
            "PeftModel.save_pretrained",
            setting="ExperimentConfig.adapter",
        )
    if importlib.util.find_spec("peft") is None:
        raise ModelError(
            f"adapter = {adapter!r} needs the peft package; install it with: pip install peft",
            setting="ExperimentConfig.adapter",
        )
    return folder


def load_error(name: str, source: str, err: BaseException) -> ModelError:
    """One line for an exception ``from_pretrained`` raised on a model folder or hub id."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, pickle.UnpicklingError) or "weights only load failed" in text.lower():
        return ModelError(
            f"cannot load model {name!r} from {source}: its weights are a pickle (pytorch_model.bin or .pt) that "
            "torch.load(weights_only=True) refuses, because it holds objects other than tensors and loading it "
            "could run code; convert it to safetensors where it was made (model.save_pretrained(folder))"
        )
    if type(err).__name__ == "SafetensorError" or "deserializing header" in text:
        return ModelError(
            f"cannot load model {name!r} from {source}: a .safetensors file is damaged or incomplete ({text[:200]}); "
            "download or save the model again"
        )
    return ModelError(f"cannot load model {name!r} from {source}: {text[:300]}")


def resolve_device(device: str = "auto") -> str:
    """``auto`` becomes ``cuda`` when a GPU is present (``mps`` on Apple silicon), else ``cpu``.

    Raises:
        ModelError: ``cuda``/``mps`` is asked for and this machine has none.
    """
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f'device {device!r} asked for but no CUDA GPU is visible; use device = "auto" or "cpu"')
        if device == "mps" and not _mps_available():
            raise ModelError(
                "device 'mps' asked for but this machine has no Apple-silicon GPU (mps exists only on macOS); "
                'use device = "auto" or "cpu"'
            )
        return device
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` becomes float32 on CPU, bfloat16 on GPUs that support it, else float16."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ModelError(f"dtype {dtype!r} is not one of auto, float32, bfloat16, float16") from None


def _load_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - a dependency
        pass
    return tuple(errors)


def from_pretrained(source: ModelSource, kwargs: dict[str, Any]) -> tuple[Any, nn.Module]:
    """Tokenizer and model; a hub id is first checked for reachability and else read from the cache only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = hub_unreachable() if source.kind == "hub" else None
    hub_kwargs: dict[str, Any] = {"local_files_only": True} if offline else {}
    if "revision" in kwargs:
        hub_kwargs["revision"] = kwargs["revision"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.source, **hub_kwargs)
        model: nn.Module = AutoModelForCausalLM.from_pretrained(source.source, **{**kwargs, **hub_kwargs})
    except _load_errors() as err:
        if offline and isinstance(err, OSError):
            raise ModelError(offline_message(source.name, offline)) from None
        raise load_error(source.name, source.source, err) from None
    return tokenizer, model


def loaded_fingerprint(source: ModelSource, model: nn.Module, revision: str | None) -> str:
    commit = hub_commit(source.source, revision) if source.kind == "hub" else None
    commit = commit or getattr(getattr(model, "config", None), "_commit_hash", None)
    return f"hub-revision:{commit}" if commit else f"params-sha256:{parameter_digest(model)}"


def apply_adapter(model: nn.Module, folder: Path, adapter: str) -> nn.Module:
    from peft import PeftModel

    try:
        wrapped: nn.Module = PeftModel.from_pretrained(model, str(folder))
    except _load_errors() as err:
        first = " ".join(str(err).split())[:300] or type(err).__name__
        raise ModelError(
            f"adapter = {adapter!r}: cannot apply the adapter in {folder} to this model ({first}); an adapter "
            "must have been trained on the same base model",
            setting="ExperimentConfig.adapter",
        ) from None
    return wrapped
