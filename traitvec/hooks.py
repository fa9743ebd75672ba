"""The one place traitvec registers hooks on a model.

:class:`HookSet` registers forward hooks inside ``try`` and removes exactly the handles it
created in ``finally`` (``remove()`` is idempotent), so other code's hooks — including the ones
transformers installs for ``output_hidden_states`` — are never touched.

Decoder layers return a bare tensor in transformers 5.x and a tuple in older versions and some
models; :func:`hidden_of` and :func:`with_hidden` read and rebuild either structure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["HookSet", "StopForward", "hidden_of", "with_hidden"]


class StopForward(Exception):  # noqa: N818  (a control-flow signal, not an error)
    """Raised by a capture hook after the deepest requested layer to skip the rest of the model."""


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a decoder layer's output (a tensor, or the first item of a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hidden = getattr(output, "hidden_states", None) or getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise TypeError(f"cannot find the hidden state in a layer output of type {type(output).__name__}")


def with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """Rebuild a layer output of the same structure with ``hidden`` in place of its hidden state."""
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    if isinstance(output, list):
        return [hidden, *output[1:]]
    raise TypeError(f"cannot replace the hidden state in a layer output of type {type(output).__name__}")


class HookSet:
    """Hooks traitvec added to a model, removed together.

    Example:
        >>> with HookSet() as hooks:
        ...     hooks.forward(model.model.layers[3], lambda module, args, output: None)
        ...     model(**inputs)
        >>> # every hook added above is gone here, also after an exception
    """

    def __init__(self) -> None:
        self._handles: list[tuple[str, RemovableHandle]] = []

    def forward(
        self,
        module: nn.Module,
        hook: Callable[..., Any],
        *,
        with_kwargs: bool = False,
        prepend: bool = False,
        label: str = "",
    ) -> RemovableHandle:
        """Register a forward hook on ``module`` and keep its handle."""
        handle = module.register_forward_hook(hook, with_kwargs=with_kwargs, prepend=prepend)
        self._handles.append((label or type(module).__name__, handle))
        return handle

    def forward_pre(
        self, module: nn.Module, hook: Callable[..., Any], *, with_kwargs: bool = False, label: str = ""
    ) -> RemovableHandle:
        """Register a forward pre-hook on ``module`` and keep its handle."""
        handle = module.register_forward_pre_hook(hook, with_kwargs=with_kwargs)
        self._handles.append((label or type(module).__name__, handle))
        return handle

    def remove(self) -> None:
        """Remove every hook this set added (safe to call more than once)."""
        while self._handles:
            _, handle = self._handles.pop()
            handle.remove()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        labels = ", ".join(label for label, _ in self._handles)
        return f"HookSet({len(self._handles)} hooks: {labels})" if labels else "HookSet(empty)"
