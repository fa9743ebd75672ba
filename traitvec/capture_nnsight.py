"""The nnsight capture backend: the hooks backend's reductions, written inside an nnsight trace.

``capture(..., backend="nnsight")`` sends each padded batch here instead of through traitvec's own
forward hooks. The reductions are the same (a weighted sum over token positions per layer, in
float32, padding zeroed with ``where`` so NaN or inf there stays out of the sums) and so are the
numbers; the point is an independent route to them through the tool most research code uses.
The trace stops after the deepest requested layer, as the hooks do.

nnsight registers and removes its own hooks inside the trace; the module is wrapped once per
model (kept in a weak dictionary, so the wrapper goes when the model does).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from .errors import ConfigError
from .hooks import hidden_of
from .models import LoadedModel

__all__ = ["nnsight_reduce"]

# nnsight ships no type information: its wrapper objects are Any here.
_WRAPPED: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()


def _wrapped(loaded: LoadedModel) -> Any:
    """The model wrapped as an nnsight ``LanguageModel`` (made once per model)."""
    from nnsight import LanguageModel

    wrapped = _WRAPPED.get(loaded.model)
    if wrapped is None:
        # nnsight 0.8 deprecates LanguageModel for TransformersModel, which builds a pipeline from a repo
        # id; LanguageModel wraps the module already loaded here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LanguageModel is deprecated")
            wrapped = LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
        _WRAPPED[loaded.model] = wrapped
    return wrapped


def nnsight_reduce(
    loaded: LoadedModel,
    inputs: Mapping[str, torch.Tensor],
    layers: tuple[int, ...],
    weights: Mapping[str, torch.Tensor],
    used: torch.Tensor,
) -> dict[int, dict[str, torch.Tensor]]:
    """Weighted sums of each requested layer's output, computed inside an nnsight trace.

    Args:
        loaded: the model.
        inputs: ``input_ids``, ``attention_mask`` and ``position_ids`` of one padded batch, on the
            model's device.
        layers: 0-based decoder layers, sorted; the trace stops after the last.
        weights: per reduction name, ``[batch, width]`` float32 weights over token positions.
        used: ``[batch, tokens, 1]`` True where any reduction reads the token.

    Returns:
        ``{layer: {reduction name: [batch, hidden] float32}}`` on the model's device.
    """
    try:
        from nnsight import save
    except ImportError as err:  # pragma: no cover - nnsight is a core dependency
        raise ConfigError(f"the nnsight capture backend needs nnsight ({err}); pip install nnsight") from None
    wrapped = _wrapped(loaded)
    stack: Any = wrapped
    for part in loaded.layers_path.split("."):
        stack = getattr(stack, part)
    zero = torch.zeros((), dtype=loaded.dtype, device=loaded.device)
    with torch.inference_mode(), wrapped.trace(dict(inputs), use_cache=False) as tracer:
        saved: dict[int, dict[str, torch.Tensor]] = save({})
        for layer in layers:
            hidden = hidden_of(stack[layer].output)
            hidden = torch.where(used, hidden, zero).float()
            saved[layer] = {name: torch.einsum("bt,btd->bd", w, hidden) for name, w in weights.items()}
        tracer.stop()
    return saved
