"""Loading a model and describing it: :class:`LoadedModel`, :func:`load_model` and :class:`ModelPool`.

A model is named by an embedded name (see :mod:`traitvec.embedded`), a Hugging Face id
(``org/name``) or a local folder, optionally quantised (bitsandbytes) and with a PEFT adapter on
top. :func:`wrap_model` turns a model you already hold into the same :class:`LoadedModel`, which
every other part of traitvec takes.

Fingerprints identify the weights exactly (see :mod:`traitvec._fingerprint`): a local folder's
is a hash of every model file, a hub model's its snapshot commit, an embedded model's the source
GGUF's SHA-256, a model in memory a hash of all its values; an adapter adds the hash of its files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch
from torch import nn

from ._fingerprint import folder_digest, parameter_digest, template_text
from ._model_source import (
    adapter_folder,
    apply_adapter,
    check_device_map,
    from_pretrained,
    hub_unreachable,
    loaded_fingerprint,
    offline_message,
    quantization_config,
    resolve_device,
    resolve_dtype,
    resolve_source,
)
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
        fingerprint: identifies the weights exactly (adapter included).
        layers: the decoder blocks (layer ``i`` is the output of ``layers[i]``).
        layers_path: where ``layers`` was found.
        use_chat_template: whether prompts go through the tokenizer's chat template.
        enable_thinking: passed to chat templates that take ``enable_thinking`` (Qwen3-style).
        adapter: the PEFT adapter folder applied on top of the weights, if any.
        quantization: ``"8bit"`` or ``"4bit"`` when loaded through bitsandbytes.
    """

    model: nn.Module
    tokenizer: Any  # a transformers tokenizer or processor; its call results are unions every use would narrow
    name: str
    fingerprint: str
    layers: nn.ModuleList = field(repr=False)
    layers_path: str
    use_chat_template: bool
    enable_thinking: bool = False
    adapter: str | None = None
    quantization: str | None = None

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
        """Where inputs go: the input embeddings' device, or, when accelerate offloads them, the
        device its hook runs them on."""
        embeddings = _input_embeddings(self.model)
        if embeddings.weight.device.type == "meta":
            hook = getattr(embeddings, "_hf_hook", None)
            execution = getattr(hook, "execution_device", None)
            if execution is not None:
                return torch.device(execution)
        return embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the input embeddings."""
        return _input_embeddings(self.model).weight.dtype

    @property
    def special_ids(self) -> frozenset[int]:
        """Token ids of special tokens (BOS, EOS, pad, chat markers), excluded from means.

        The tokenizer's named special tokens plus every added token flagged ``special=True`` in
        ``added_tokens_decoder`` (where Llama-3 keeps its chat headers).
        """
        ids = {int(i) for i in getattr(self.tokenizer, "all_special_ids", []) if i is not None}
        added = getattr(self.tokenizer, "added_tokens_decoder", None) or {}
        ids.update(int(i) for i, token in added.items() if getattr(token, "special", False))
        return frozenset(ids)

    @property
    def thinking_template(self) -> bool:
        """True when prompts go through a chat template that reads ``enable_thinking``."""
        return self.use_chat_template and "enable_thinking" in _template_source(self.tokenizer)

    @property
    def template_kwargs(self) -> dict[str, Any]:
        """Extra arguments for every ``apply_chat_template`` call (``enable_thinking`` when the template reads it)."""
        return {"enable_thinking": self.enable_thinking} if self.thinking_template else {}

    def describe(self) -> dict[str, Any]:
        """Plain-data description recorded with every output (name, hash, family, shape, settings)."""
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
            "enable_thinking": self.enable_thinking if self.thinking_template else None,
            "adapter": self.adapter,
            "quantization": self.quantization,
        }


class _HasInputEmbeddings(Protocol):
    """The part of transformers' ``PreTrainedModel`` that :class:`LoadedModel` reads."""

    def get_input_embeddings(self) -> nn.Embedding: ...


def _input_embeddings(model: nn.Module) -> nn.Embedding:
    """The token-embedding module of a (possibly PEFT-wrapped) transformers model."""
    return cast(_HasInputEmbeddings, unwrap_model(model)).get_input_embeddings()


def _template_source(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(str(v) for v in template.values())
    return str(template) if template else ""


def load_model(
    spec: str | ExperimentConfig,
    *,
    dtype: str = "auto",
    device: str = "auto",
    device_map: str | None = None,
    chat_template: bool | None = None,
    layers_path: str | None = None,
    revision: str | None = None,
    quantization: str | None = None,
    adapter: str | None = None,
    enable_thinking: bool = False,
) -> LoadedModel:
    """Load a model by name, or as an experiment config describes it.

    Args:
        spec: an embedded name (``"gemma-3-270m"``), a hub id (``"org/name"``), a local folder,
            or an :class:`~traitvec.experiments.ExperimentConfig` (whose settings then apply).
        dtype: ``auto`` (float32 on CPU, bf16/fp16 on GPU), ``float32``, ``bfloat16``, ``float16``;
            with ``quantization`` the compute dtype.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        device_map: accelerate placement for models larger than one device (overrides ``device``).
        chat_template: use the tokenizer's chat template; ``None`` means when it has one.
        layers_path: attribute path of the decoder-layer list for unknown architectures.
        revision: hub revision.
        quantization: ``"8bit"`` or ``"4bit"`` (bitsandbytes; needs a CUDA GPU).
        adapter: a PEFT (LoRA) adapter folder applied on top of the weights.
        enable_thinking: for chat templates that take ``enable_thinking`` (Qwen3-style); off by default.

    Returns:
        A :class:`LoadedModel` in eval mode.

    Raises:
        ModelError: unknown name, unreadable or damaged folder, unreachable hub, a device or
            backend this machine lacks, unknown layout.

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
            quantization=cfg.quantization,
            adapter=cfg.adapter,
            enable_thinking=cfg.enable_thinking,
        )
    source = resolve_source(spec, revision)
    resolved_device = resolve_device(device)
    check_device_map(device_map)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if revision and source.kind == "hub":
        kwargs["revision"] = revision
    if quantization:
        if quantization not in ("8bit", "4bit"):
            raise ModelError(f"quantization = {quantization!r} is not one of 8bit, 4bit")
        kwargs["quantization_config"] = quantization_config(cast(Any, quantization), torch_dtype)
        kwargs["device_map"] = device_map or {"": resolved_device}
    elif device_map:
        kwargs["device_map"] = device_map
    adapter_path = adapter_folder(adapter) if adapter else None
    tokenizer, model = from_pretrained(source, kwargs)
    if "device_map" not in kwargs:
        model.to(resolved_device)
    fingerprint = source.fingerprint or loaded_fingerprint(source, model, revision)
    if adapter_path is not None:
        model = apply_adapter(model, adapter_path, cast(str, adapter))
        fingerprint = f"{fingerprint}+adapter-sha256:{folder_digest(adapter_path)}"
    return wrap_model(
        model,
        tokenizer,
        name=spec,
        fingerprint=fingerprint,
        chat_template=chat_template,
        layers_path=layers_path,
        enable_thinking=enable_thinking,
        adapter=adapter,
        quantization=quantization,
    )


def wrap_model(
    model: nn.Module,
    tokenizer: Any,
    *,
    name: str | None = None,
    fingerprint: str | None = None,
    chat_template: bool | None = None,
    layers_path: str | None = None,
    enable_thinking: bool = False,
    adapter: str | None = None,
    quantization: str | None = None,
) -> LoadedModel:
    """Describe a model you already hold so traitvec can use it.

    Sets the model to eval mode and gives the tokenizer a pad token (its EOS) when it has none.
    Without ``fingerprint`` every parameter and buffer is hashed (offloaded weights through
    accelerate's weights map), so two models that differ anywhere get different fingerprints.

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
        fingerprint = f"params-sha256:{parameter_digest(model)}"
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name or getattr(unwrap_model(model).config, "_name_or_path", "") or type(model).__name__,
        fingerprint=fingerprint,
        layers=layers,
        layers_path=path,
        use_chat_template=use_template,
        enable_thinking=enable_thinking,
        adapter=adapter,
        quantization=quantization,
    )


def _refuse_an_unreachable_hub_model(config: ExperimentConfig) -> None:
    """Raise :class:`ModelError` now when ``config.model`` is a hub id that is neither cached nor reachable."""
    source = resolve_source(config.model, config.revision, prepare=False)
    if source.kind == "hub" and source.folder is None:
        reason = hub_unreachable()
        if reason is not None:
            raise ModelError(offline_message(config.model, reason))


class ModelPool:
    """Loads each experiment's model once, on first use, and keeps it for the stages that follow.

    Example:
        >>> pool = ModelPool()
        >>> pool.model_key(config)  # known without loading for embedded, local and cached hub models
        >>> loaded = pool.get(config)  # loads; later calls return the same LoadedModel
    """

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def get(self, config: ExperimentConfig) -> LoadedModel:
        """The model of ``config``, loaded on the first call."""
        key = config.name
        if key not in self._models:
            _refuse_an_unreachable_hub_model(config)  # one error line, not "loading …" and then the error
            logger.info("loading %s (%s) for experiment %s", config.model, config.dtype, config.name)
            self._models[key] = load_model(config)
        return self._models[key]

    def fingerprint(self, config: ExperimentConfig) -> str:
        """The fingerprint ``load_model(config)`` gives, without loading the model when anything cheaper can tell.

        Embedded models: the source GGUF's hash (converting the model on first use); local folders:
        the hash of every model file (cached per file by size and modification time); hub models:
        the cached snapshot's commit. Only a hub model that is not in the cache is loaded.
        """
        if config.name in self._models:
            return self._models[config.name].fingerprint
        source = resolve_source(config.model, config.revision)
        if source.fingerprint is None:
            return self.get(config).fingerprint
        if config.adapter:
            return f"{source.fingerprint}+adapter-sha256:{folder_digest(adapter_folder(config.adapter))}"
        return source.fingerprint

    def model_key(self, config: ExperimentConfig) -> dict[str, Any]:
        """Everything about ``config``'s model that changes tokens or activations, as plain data.

        Staleness keys of every stage use this (not the fingerprint alone): the weights'
        fingerprint (adapter included), the resolved dtype, whether the chat template is used,
        ``enable_thinking`` (only when the template reads it), the layers path, the revision, the
        adapter's hash and the quantisation. It is the same before and after the model is loaded.
        """
        fingerprint = self.fingerprint(config)
        template = self._template(config)
        use_template = bool(template) if config.chat_template is None else config.chat_template
        thinking = config.enable_thinking if use_template and "enable_thinking" in template else None
        dtype = resolve_dtype(config.dtype, resolve_device(config.device))
        adapter = fingerprint.partition("+adapter-sha256:")[2] or None
        return {
            "fingerprint": fingerprint,
            "dtype": str(dtype).removeprefix("torch."),
            "chat_template": use_template,
            "enable_thinking": thinking,
            "layers_path": config.layers_path,
            "revision": config.revision,
            "adapter": f"sha256:{adapter}" if adapter else None,
            "quantization": config.quantization,
        }

    def _template(self, config: ExperimentConfig) -> str:
        """The chat template's source (empty when the tokenizer has none), read from the model's folder."""
        if config.name in self._models:
            return _template_source(self._models[config.name].tokenizer)
        source = resolve_source(config.model, config.revision)
        if source.folder is None:
            return _template_source(self.get(config).tokenizer)
        return template_text(source.folder) or ""
