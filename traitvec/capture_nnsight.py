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

from .batching import BatchReductions
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
    reductions: BatchReductions,
) -> dict[int, dict[str, torch.Tensor]]:
    """Weighted sums of each requested layer's output, computed inside an nnsight trace.

    Args:
        loaded: the model.
        inputs: ``input_ids``, ``attention_mask`` and ``position_ids`` of one padded batch, on the
            model's device.
        layers: 0-based decoder layers, sorted; the trace stops after the last.
        reductions: the batch's position weights (moved to each layer's device as the hooks
            backend does) and what else to read.

    Returns:
        ``{layer: {reduction name: [batch, hidden] float32}}`` on CPU.
    """
    try:
        from nnsight import save
    except ImportError as err:  # pragma: no cover - nnsight is a core dependency
        raise ConfigError(f"the nnsight capture backend needs nnsight ({err}); pip install nnsight") from None
    wrapped = _wrapped(loaded)
    stack: Any = wrapped
    for part in loaded.layers_path.split("."):
        stack = getattr(stack, part)
    with torch.inference_mode(), wrapped.trace(dict(inputs), use_cache=False) as tracer:
        saved: dict[int, dict[str, torch.Tensor]] = save({})
        for layer in layers:
            out = reductions.reduce(hidden_of(stack[layer].output))
            saved[layer] = {name: tensor.to("cpu") for name, tensor in out.items()}
        tracer.stop()
    return saved
