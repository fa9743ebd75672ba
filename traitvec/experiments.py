"""Experiment configs: ``experiments/{name}/config.toml`` names one model and how to run it.

Example ``config.toml``::

    model = "gemma-3-270m"   # an embedded name, a Hugging Face id (org/name) or a local folder
    dtype = "auto"           # auto | float32 | bfloat16 | float16  (auto: float32 on CPU, bf16 on GPU)
    device = "auto"          # auto | cpu | cuda | cuda:N | mps   (auto: cuda when present)
    # device_map = "auto"    # accelerate placement for models larger than one GPU
    # chat_template = true   # default: use the tokenizer's template when it has one
    # layers = [4, 6, 8]     # default: every layer
    # layers_path = "model.layers"   # only for architectures traitvec does not know
    # quantization = "4bit"  # 8bit | 4bit through bitsandbytes (needs a CUDA GPU); dtype is the compute dtype
    # adapter = "checkpoints/lora-500"   # a PEFT/LoRA adapter folder applied on top of the model
    # enable_thinking = false  # for chat templates that take it (Qwen3-style); off by default

Every output of an experiment goes under ``experiments/{name}/``. Unknown keys are an error that
lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, ExperimentNotFoundError

__all__ = [
    "ExperimentConfig",
    "load_experiment",
    "list_experiments",
    "DEFAULT_EXPERIMENTS_ROOT",
    "MAX_NAME_BYTES",
    "MAX_CONFIG_BYTES",
]

DEFAULT_EXPERIMENTS_ROOT = "experiments"
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPES = ("auto", "float32", "bfloat16", "float16")
Quantization = Literal["8bit", "4bit"]
_QUANTIZATIONS = ("8bit", "4bit")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_BYTES = 255
"""Longest experiment (or trait folder) name: what common filesystems allow for one path component."""
MAX_CONFIG_BYTES = 1 << 20
"""Largest config.toml read (1 MiB)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One model and how to run it.

    Attributes:
        name: the experiment's folder name.
        path: the experiment's folder; every output goes beneath it.
        model: an embedded model name, a Hugging Face id or a local folder.
        dtype: weights dtype; ``auto`` is float32 on CPU and bfloat16 (or float16) on GPU.
        device: ``auto`` (cuda when present, else cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        device_map: accelerate placement (``"auto"``, ``"balanced"``, …) for models larger than one GPU.
        chat_template: use the tokenizer's chat template; ``None`` means when it has one.
        layers: layers to extract and steer (0-based decoder layers); ``None`` means all.
        layers_path: attribute path of the decoder-layer list, for unknown architectures.
        revision: a Hugging Face revision (branch, tag or commit) for hub models.
        max_batch_tokens: token budget of one capture batch (padded tokens); default 1024 on CPU, 32768 on GPU.
        quantization: ``"8bit"`` or ``"4bit"`` to load the weights through bitsandbytes (needs a CUDA GPU);
            activations are captured and vectors applied in ``dtype``, the compute dtype.
        adapter: a PEFT (LoRA) adapter folder applied on top of the model at load (a fine-tune as an
            experiment); relative paths are taken from the current folder. Part of the fingerprint.
        enable_thinking: passed to chat templates that take ``enable_thinking`` (Qwen3 and similar);
            off by default, so steering questions are answered without a reasoning block.
    """

    name: str
    path: Path
    model: str
    dtype: Dtype = "auto"
    device: str = "auto"
    device_map: str | None = None
    chat_template: bool | None = None
    layers: tuple[int, ...] | None = None
    layers_path: str | None = None
    revision: str | None = None
    max_batch_tokens: int | None = None
    quantization: Quantization | None = None
    adapter: str | None = None
    enable_thinking: bool = False

    def __post_init__(self) -> None:
        where = self.path / "config.toml"
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f'{where}: "model" must be a non-empty string (an embedded name, hub id or path)')
        if self.dtype not in _DTYPES:
            raise ConfigError(f"{where}: dtype = {self.dtype!r} is not one of {', '.join(_DTYPES)}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError(f"{where}: device = {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        if self.device_map is not None and not isinstance(self.device_map, str):
            raise ConfigError(f'{where}: device_map must be a string such as "auto"')
        if self.chat_template is not None and not isinstance(self.chat_template, bool):
            raise ConfigError(f"{where}: chat_template = {self.chat_template!r}; use true or false")
        if self.layers is not None:
            if not self.layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in self.layers):
                raise ConfigError(f"{where}: layers = {list(self.layers)!r}; use a non-empty list of integers")
            if any(i < 0 for i in self.layers):
                raise ConfigError(f"{where}: layers = {list(self.layers)!r}; layer indices are 0-based and >= 0")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise ConfigError(f"{where}: revision = {self.revision!r}; use a branch, tag or commit as a string")
        if self.layers_path is not None and not isinstance(self.layers_path, str):
            raise ConfigError(f'{where}: layers_path must be a dotted attribute path such as "model.layers"')
        if self.max_batch_tokens is not None and (
            not isinstance(self.max_batch_tokens, int)
            or isinstance(self.max_batch_tokens, bool)
            or self.max_batch_tokens < 16
        ):
            raise ConfigError(f"{where}: max_batch_tokens = {self.max_batch_tokens!r}; use an integer >= 16")
        if self.quantization is not None and self.quantization not in _QUANTIZATIONS:
            raise ConfigError(
                f'{where}: quantization = {self.quantization!r}; use "8bit" or "4bit" (bitsandbytes), or remove it'
            )
        if self.adapter is not None and (not isinstance(self.adapter, str) or not self.adapter.strip()):
            raise ConfigError(f"{where}: adapter = {self.adapter!r}; use the path of a PEFT adapter folder")
        if not isinstance(self.enable_thinking, bool):
            raise ConfigError(f"{where}: enable_thinking = {self.enable_thinking!r}; use true or false")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (written beside every run's outputs)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        if self.layers is not None:
            data["layers"] = list(self.layers)
        return data


_VALID_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in ("name", "path"))


def load_experiment(name: str, root: str | os.PathLike[str] = DEFAULT_EXPERIMENTS_ROOT) -> ExperimentConfig:
    """Read and validate ``{root}/{name}/config.toml``.

    Args:
        name: the experiment's folder name (letters, digits, ``._-``).
        root: the folder of experiment folders; a relative path is taken from the current folder.

    Raises:
        ExperimentNotFoundError: the root or the experiment does not exist.
        ConfigError: a bad name, a folder or config.toml that leaves the root through a symlink,
            invalid TOML, unknown keys or a bad value.

    Example:
        >>> config = load_experiment("gemma-3-270m")
        >>> config.model
        'gemma-3-270m'
    """
    if not isinstance(name, str) or not _NAME.match(name) or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        shown = name if not isinstance(name, str) or len(name) <= 60 else f"{name[:40]}… ({len(name)} characters)"
        raise ConfigError(
            f"experiment name {shown!r} must be a plain folder name under {root} (letters, digits, ._-; "
            f"at most {MAX_NAME_BYTES} bytes)"
        )
    base = Path(root)
    if not base.is_dir():
        raise ExperimentNotFoundError(_no_root(base, "load_experiment(root=)"), setting="load_experiment(root=)")
    folder = base / name
    path = folder / "config.toml"
    if not path.exists() and not path.is_symlink():
        known = list_experiments(base)
        hint = f"; experiments there: {', '.join(known)}" if known else ""
        raise ExperimentNotFoundError(f"no experiment {name!r}: {path} does not exist{hint}")
    _check_inside(base, folder, path)
    data = _read_toml(path)
    unknown = sorted(set(data) - set(_VALID_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(_VALID_KEYS)}")
    if "model" not in data:
        raise ConfigError(f'{path}: no "model" key; add model = "gemma-3-270m" (or a hub id or local path)')
    if "layers" in data:
        if not isinstance(data["layers"], list):
            raise ConfigError(f"{path}: layers = {data['layers']!r}; use a list such as [4, 6, 8]")
        data["layers"] = tuple(data["layers"])
    return ExperimentConfig(name=name, path=folder, **data)


def _check_inside(base: Path, folder: Path, path: Path) -> None:
    """Refuse an experiment folder or config.toml that leaves the root (symlinks), or is not a regular file."""
    resolved_root = base.resolve()
    for item in (folder, path):
        resolved = item.resolve()
        if resolved != resolved_root and resolved_root not in resolved.parents:
            raise ConfigError(
                f"{item} is a symlink to {resolved}, outside the experiments root {resolved_root}; outputs would "
                "be written there. Copy the experiment into the root instead of linking it"
            )
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file; config.toml must be a TOML text file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes, more than the {MAX_CONFIG_BYTES} a config.toml may have")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None


def _no_root(base: Path, setting: str) -> str:
    return (
        f"{setting} = {str(base)!r} does not exist (a relative path is taken from the current folder, "
        f"{os.getcwd()}); point {setting} at the folder that holds the experiment folders"
    )


def list_experiments(root: str | os.PathLike[str] = DEFAULT_EXPERIMENTS_ROOT) -> list[str]:
    """Names of the folders under ``root`` that hold a ``config.toml``.

    Raises:
        ExperimentNotFoundError: ``root`` does not exist (relative paths are taken from the current folder).
    """
    base = Path(root)
    if not base.is_dir():
        raise ExperimentNotFoundError(_no_root(base, "list_experiments(root=)"), setting="list_experiments(root=)")
    return sorted(p.parent.name for p in base.glob("*/config.toml"))
