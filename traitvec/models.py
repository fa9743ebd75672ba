"""Loading a model and describing it: :class:`LoadedModel` and :func:`load_model`.

A model is named by an embedded name (see :mod:`traitvec.embedded`), a Hugging Face id
(``org/name``) or a local folder. :func:`wrap_model` turns a model you already hold into the same
:class:`LoadedModel`, which every other part of traitvec takes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import nn

from .embedded import cache_dir, embedded_model_dir, is_embedded, source_fingerprint
from .errors import ModelError
from .experiments import ExperimentConfig
from .layers import find_layers, unwrap_model

__all__ = ["LoadedModel", "ModelPool", "load_model", "wrap_model", "resolve_device", "resolve_dtype"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model, its tokenizer and what traitvec needs to know about them.

    Unpacks as ``model, tokenizer = loaded``.

    Attributes:
        model: the transformers causal LM (possibly PEFT-wrapped).
        tokenizer: its tokenizer, with a pad token set.
        name: the name it was loaded by (embedded name, hub id or path).
        fingerprint: a revision or content hash identifying the weights.
        layers: the decoder blocks (layer ``i`` is the output of ``layers[i]``).
        layers_path: where ``layers`` was found.
        use_chat_template: whether prompts go through the tokenizer's chat template.
    """

    model: nn.Module
    tokenizer: Any  # a transformers tokenizer or processor; its call results are unions every use would narrow
    name: str
    fingerprint: str
    layers: nn.ModuleList = field(repr=False)
    layers_path: str
    use_chat_template: bool

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.tokenizer

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream."""
        config = unwrap_model(self.model).config
        text = getattr(config, "text_config", None) or config
        size = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None)
        if size is None:
            raise ModelError(f"cannot tell the width of {type(self.model).__name__}: no hidden_size in its config")
        return int(size)

    @property
    def model_type(self) -> str:
        """The architecture family (``config.model_type``, e.g. ``"gemma3_text"``)."""
        return str(getattr(unwrap_model(self.model).config, "model_type", type(self.model).__name__))

    @property
    def device(self) -> torch.device:
        """Device of the input embeddings (where inputs go)."""
        return _input_embeddings(self.model).weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the input embeddings."""
        return _input_embeddings(self.model).weight.dtype

    @property
    def special_ids(self) -> frozenset[int]:
        """Token ids of special tokens (BOS, EOS, pad, chat markers), excluded from means."""
        return frozenset(int(i) for i in getattr(self.tokenizer, "all_special_ids", []) if i is not None)

    def describe(self) -> dict[str, Any]:
        """Plain-data description recorded with every output (name, hash, family, shape)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "model_type": self.model_type,
            "class": type(unwrap_model(self.model)).__name__,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "layers_path": self.layers_path,
            "dtype": str(self.dtype).removeprefix("torch."),
            "chat_template": self.use_chat_template,
        }


class _HasInputEmbeddings(Protocol):
    """The part of transformers' ``PreTrainedModel`` that :class:`LoadedModel` reads."""

    def get_input_embeddings(self) -> nn.Embedding: ...


def _input_embeddings(model: nn.Module) -> nn.Embedding:
    """The token-embedding module of a (possibly PEFT-wrapped) transformers model."""
    return cast(_HasInputEmbeddings, unwrap_model(model)).get_input_embeddings()


def resolve_device(device: str = "auto") -> str:
    """``auto`` becomes ``cuda`` when a GPU is present (``mps`` on Apple silicon), else ``cpu``."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f'device {device!r} asked for but no CUDA GPU is visible; use device = "auto" or "cpu"')
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


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


def load_model(
    spec: str | ExperimentConfig,
    *,
    dtype: str = "auto",
    device: str = "auto",
    device_map: str | None = None,
    chat_template: bool | None = None,
    layers_path: str | None = None,
    revision: str | None = None,
) -> LoadedModel:
    """Load a model by name, or as an experiment config describes it.

    Args:
        spec: an embedded name (``"gemma-3-270m"``), a hub id (``"org/name"``), a local folder,
            or an :class:`~traitvec.experiments.ExperimentConfig` (whose settings then apply).
        dtype: ``auto`` (float32 on CPU, bf16/fp16 on GPU), ``float32``, ``bfloat16``, ``float16``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        device_map: accelerate placement for models larger than one device (overrides ``device``).
        chat_template: use the tokenizer's chat template; ``None`` means when it has one.
        layers_path: attribute path of the decoder-layer list for unknown architectures.
        revision: hub revision.

    Returns:
        A :class:`LoadedModel` in eval mode.

    Raises:
        ModelError: unknown name, unreadable folder, unreachable hub, unknown layout.

    Example:
        >>> model, tokenizer = load_model("gemma-3-270m")
    """
    if isinstance(spec, ExperimentConfig):
        cfg = spec
        return load_model(
            cfg.model,
            dtype=cfg.dtype,
            device=cfg.device,
            device_map=cfg.device_map,
            chat_template=cfg.chat_template,
            layers_path=cfg.layers_path,
            revision=cfg.revision,
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = spec
    fingerprint: str | None = None
    if is_embedded(name):
        folder = embedded_model_dir(name)
        source: str = str(folder)
        fingerprint = f"gguf-sha256:{source_fingerprint(folder)}"
        local = True
    elif Path(name).expanduser().exists():
        source = str(Path(name).expanduser())
        if not (Path(source) / "config.json").is_file():
            raise ModelError(f"model folder {source} has no config.json; point at a folder saved by save_pretrained")
        fingerprint = f"local-sha256:{_folder_fingerprint(Path(source))}"
        local = True
    elif name.count("/") == 1 and all(name.split("/")):
        source = name
        local = False
    else:
        raise ModelError(
            f"unknown model {name!r}: not an embedded model (gemma-3-270m, smollm2-135m-instruct), not an "
            "existing folder, and not a Hugging Face id of the form org/name"
        )
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if revision and not local:
        kwargs["revision"] = revision
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **({"revision": revision} if revision and not local else {}))
        model: nn.Module = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load model {name!r} from {source}: {first}") from None
    if not device_map:
        model.to(resolved_device)
    if fingerprint is None:
        commit = getattr(model.config, "_commit_hash", None) or revision or "unknown"
        fingerprint = f"hub-revision:{commit}"
    return wrap_model(
        model, tokenizer, name=name, fingerprint=fingerprint, chat_template=chat_template, layers_path=layers_path
    )


def wrap_model(
    model: nn.Module,
    tokenizer: Any,
    *,
    name: str | None = None,
    fingerprint: str | None = None,
    chat_template: bool | None = None,
    layers_path: str | None = None,
) -> LoadedModel:
    """Describe a model you already hold so traitvec can use it.

    Sets the model to eval mode and gives the tokenizer a pad token (its EOS) when it has none.

    Example:
        >>> loaded = wrap_model(my_model, my_tokenizer, name="my-finetune")
    """
    model.eval()
    if getattr(tokenizer, "pad_token_id", None) is None:
        if getattr(tokenizer, "eos_token", None) is None:
            raise ModelError(f"tokenizer of {name or type(model).__name__} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    layers, path = find_layers(model, layers_path)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has_template:
        raise ModelError(
            f"chat_template = true but the tokenizer of {name or type(model).__name__} has no chat template; "
            "set chat_template = false"
        )
    use_template = has_template if chat_template is None else chat_template
    if fingerprint is None:
        fingerprint = f"params-sha256:{_parameter_fingerprint(model)}"
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name or getattr(unwrap_model(model).config, "_name_or_path", "") or type(model).__name__,
        fingerprint=fingerprint,
        layers=layers,
        layers_path=path,
        use_chat_template=use_template,
    )


def _folder_fingerprint(folder: Path) -> str:
    """Cheap hash of a model folder: config.json, plus each weight file's size and first MiB."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin", ".json") and path.is_file():
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _parameter_fingerprint(model: nn.Module) -> str:
    """Hash of a model's parameter names, shapes and a few values (identifies in-memory models)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in list(unwrap_model(model).named_parameters())[:64]:
            digest.update(name.encode())
            digest.update(str(tuple(param.shape)).encode())
            flat = param.detach().reshape(-1)[:16].float().cpu()
            digest.update(flat.numpy().tobytes())
    return digest.hexdigest()[:16]


class ModelPool:
    """Loads each experiment's model once, on first use, and keeps it for the stages that follow.

    Example:
        >>> pool = ModelPool()
        >>> pool.fingerprint(config)  # known without loading for embedded models; None for hub models
        >>> loaded = pool.get(config)  # loads; later calls return the same LoadedModel
    """

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def get(self, config: ExperimentConfig) -> LoadedModel:
        """The model of ``config``, loaded on the first call."""
        key = config.name
        if key not in self._models:
            logger.info("loading %s (%s) for experiment %s", config.model, config.dtype, config.name)
            self._models[key] = load_model(config)
        return self._models[key]

    def fingerprint(self, config: ExperimentConfig) -> str | None:
        """The model's fingerprint without loading it, when cheaply known (a loaded or embedded model)."""
        if config.name in self._models:
            return self._models[config.name].fingerprint
        if is_embedded(config.model):
            for folder in sorted((cache_dir() / "models").glob(f"{config.model}-v*")):
                found = source_fingerprint(folder)
                if found:
                    return f"gguf-sha256:{found}"
        return None

    def model_key(self, config: ExperimentConfig) -> dict[str, Any]:
        """Everything about ``config``'s model that changes tokens or activations, as plain data.

        Staleness keys of every stage use this (not the fingerprint alone): the weights'
        fingerprint plus the settings that change what the model computes or which tokens it sees
        (dtype, chat template, layers path, revision). Keys never hold ``None`` for the weights: a
        model whose fingerprint is not cheaply known is identified by its name and revision until
        it is loaded.
        """
        fingerprint = self.fingerprint(config)
        return {
            "fingerprint": fingerprint if fingerprint is not None else f"unloaded:{config.model}@{config.revision}",
            "dtype": config.dtype,
            "chat_template": config.chat_template,
            "layers_path": config.layers_path,
            "revision": config.revision,
        }

