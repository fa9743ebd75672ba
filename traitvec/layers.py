"""Finding the decoder-layer list of a model.

traitvec's layer convention: layer ``i`` (0-based) is the *output* of decoder block ``i``, i.e. the
residual stream after that block: ``hidden_states[i + 1]`` in transformers' terms, except for the
last block, whose ``hidden_states`` entry has the model's final norm applied (traitvec's does not).

Known layouts cover Llama, Mistral, Qwen2/3, Gemma 1/2/3 (text and multimodal), GPT-2, GPT-NeoX,
Phi, OLMo and their PEFT-wrapped versions. Anything else needs ``layers_path`` in the experiment
config (or the ``layers_path=`` argument), and the error says so, listing candidates.
"""

from __future__ import annotations

from torch import nn

from .errors import ModelError

__all__ = ["find_layers", "unwrap_model", "KNOWN_LAYER_PATHS"]

# Tried in order on the unwrapped model.
KNOWN_LAYER_PATHS: tuple[str, ...] = (
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma 1/2/3 text, Phi, Phi-3, OLMo/OLMo-2
    "model.language_model.layers",  # Gemma 3 multimodal, Llava-style wrappers (transformers 5)
    "language_model.model.layers",  # older multimodal wrappers
    "model.text_model.layers",
    "transformer.h",  # GPT-2, GPT-J, Falcon
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
    "transformer.blocks",  # MPT
    "layers",  # a bare decoder stack
)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the transformers model inside PEFT (and similar) wrappers; other models unchanged."""
    seen = 0
    while seen < 4:
        seen += 1
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base) and hasattr(model, "peft_config"):
            inner = get_base()
            if inner is model:
                break
            model = inner
            continue
        break
    return model


def _resolve(root: nn.Module, path: str) -> object | None:
    obj: object = root
    for part in path.split("."):
        if part.isdigit() and isinstance(obj, nn.ModuleList | nn.Sequential):
            index = int(part)
            if index >= len(obj):
                return None
            obj = obj[index]
            continue
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


def find_layers(model: nn.Module, layers_path: str | None = None) -> tuple[nn.ModuleList, str]:
    """Locate the list of decoder blocks.

    Args:
        model: a transformers model, possibly PEFT-wrapped.
        layers_path: dotted attribute path (from the unwrapped model) of the ``nn.ModuleList`` of
            decoder blocks, for architectures traitvec does not know.

    Returns:
        The module list and the path it was found at.

    Raises:
        ModelError: nothing was found; the message names the class, candidates and the override.

    Example:
        >>> layers, path = find_layers(model)
        >>> path, len(layers)
        ('model.layers', 18)
    """
    base = unwrap_model(model)
    if layers_path is not None:
        found = _resolve(base, layers_path)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            kind = type(found).__name__ if found is not None else "nothing"
            raise ModelError(
                f"layers_path {layers_path!r} names {kind} on {type(base).__name__}, not a non-empty "
                f"nn.ModuleList of decoder blocks; candidates: {', '.join(_candidates(base)) or 'none'}"
            )
        return found, layers_path
    expected = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    for path in KNOWN_LAYER_PATHS:
        found = _resolve(base, path)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            if expected is None or len(found) == expected:
                return found, path
    candidates = _candidates(base)
    hint = f" ModuleLists in the model: {', '.join(candidates)}." if candidates else ""
    raise ModelError(
        f'cannot find the decoder layers of {type(base).__name__}.{hint} Set layers_path = "<path>" in the '
        "experiment's config.toml (or pass layers_path=...) to the nn.ModuleList of decoder blocks"
    )


def _candidates(model: nn.Module) -> list[str]:
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1 and name:
            out.append(f"{name} ({len(module)})")
    return out[:8]
