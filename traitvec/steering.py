"""Steering: adding (or ablating, or pinning) a direction in the residual stream while a model runs.

Units. By default a coefficient is relative to the *spread* of the layer's activations — the mean
norm of mean-centred activations, recorded at extraction — so ``coefficient=1`` moves a state by
about one typical distance between prompts. It means the same across layers and models, unlike
the raw activation norm, which in Gemma models is ~99.9% a component shared by every prompt.
``scale="absolute"`` uses the coefficient as a plain length.

Modes. ``add``: ``h + a·u``. ``ablate``: ``h − (h·u)u`` (the direction projected out).
``pin``: ``h + (a − h·u)u`` (the projection set to ``a``).

Positions. ``all``; ``prompt`` (tokens of the prompt only); ``response``: the positions whose
outputs produce the answer — the prompt's *last* position (its state predicts the first answer
token, so steering can change the first word: "I can't", "Yes") and every generated token. The
last prompt position is the one position ``prompt`` and ``response`` share. Positions are
absolute: a pre-hook on the decoder stack reads how many tokens the cache already holds, so a
decoding step of length 1 still knows it is token ``prompt_length + k``; without the KV cache each
step's call re-reads the whole sequence, and a call whose tokens extend the previous prompt's is
recognised as the next step of the same generation (not a new prompt). Prompts are assumed
left-padded (as :func:`traitvec.generation.generate` and transformers' ``generate`` pad them), so
the last prompt position is the last column of the prompt pass for every row.

Rows. :func:`steer` applies one configuration to every row. :func:`steer_rows` gives each row of
the batch its own list of :class:`Steer`; a hook that sees a batch with another number of rows
refuses to run rather than guess, and :func:`traitvec.generation.generate` hands each sub-batch
the rows that belong to it. Hooks are removed on exit and on exceptions; other hooks are left alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .errors import ConfigError
from .hooks import HookSet, hidden_of, with_hidden
from .layers import unwrap_model
from .models import LoadedModel
from .vectors import TraitVector

__all__ = ["Steer", "SteeringHandle", "steer", "steer_rows", "MODES", "STEER_POSITIONS", "SCALES"]

Mode = Literal["add", "ablate", "pin"]
SteerPositions = Literal["all", "prompt", "response"]
Scale = Literal["spread", "absolute"]
MODES: tuple[str, ...] = ("add", "ablate", "pin")
STEER_POSITIONS: tuple[str, ...] = ("all", "prompt", "response")
SCALES: tuple[str, ...] = ("spread", "absolute")


@dataclass(frozen=True)
class Steer:
    """One intervention at one layer.

    Args:
        vector: a :class:`TraitVector` (its direction at ``layer`` is used) or a raw direction
            tensor ``[width]`` (normalised here; needs ``scale="absolute"``).
        layer: 0-based decoder layer whose output is changed.
        coefficient: strength for ``add``, target projection for ``pin``; unused by ``ablate``.
        mode: ``add``, ``ablate`` or ``pin``.
        positions: ``all``, ``prompt`` or ``response`` (the last prompt position, which produces
            the first answer token, and every generated token).
        scale: ``spread`` (coefficient × the layer's recorded spread) or ``absolute``.

    Example:
        >>> Steer(vector, layer=6, coefficient=1.5)
    """

    vector: TraitVector | torch.Tensor
    layer: int
    coefficient: float = 0.0
    mode: Mode = "add"
    positions: SteerPositions = "all"
    scale: Scale = "spread"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"steering mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.positions not in STEER_POSITIONS:
            raise ConfigError(f"steering positions {self.positions!r}; use one of {', '.join(STEER_POSITIONS)}")
        if self.scale not in SCALES:
            raise ConfigError(f"steering scale {self.scale!r}; use one of {', '.join(SCALES)}")
        if not math.isfinite(float(self.coefficient)):
            raise ConfigError(f"steering coefficient {self.coefficient!r} is not a finite number")
        if isinstance(self.vector, torch.Tensor):
            if self.vector.dim() != 1 or float(self.vector.norm()) == 0.0:
                raise ConfigError("a raw steering direction must be a non-zero 1-D tensor [width]")
            if self.scale == "spread" and self.mode != "ablate":
                raise ConfigError("a raw tensor has no recorded spread; pass scale='absolute' or a TraitVector")
        else:
            self.vector.direction(self.layer)  # raises a clear error for a missing layer

    def unit(self) -> torch.Tensor:
        """The unit direction, float32 on CPU."""
        if isinstance(self.vector, torch.Tensor):
            v = self.vector.detach().float().cpu()
            unit: torch.Tensor = v / v.norm()
            return unit
        return self.vector.direction(self.layer).float()

    def amount(self) -> float:
        """The coefficient in absolute units (× the layer's spread when ``scale="spread"``)."""
        if self.scale == "absolute" or self.mode == "ablate":
            return float(self.coefficient)
        assert isinstance(self.vector, TraitVector)
        return float(self.coefficient) * self.vector.spread(self.layer)

    def describe(self) -> dict[str, Any]:
        """Plain-data description (for results files)."""
        source = self.vector.name if isinstance(self.vector, TraitVector) else "tensor"
        return {
            "vector": source,
            "layer": self.layer,
            "coefficient": self.coefficient,
            "mode": self.mode,
            "positions": self.positions,
            "scale": self.scale,
            "amount": self.amount(),
        }


class _Term:
    """One (mode, positions) group of interventions at a layer, with per-row tensors."""

    def __init__(self, mode: str, positions: str, units: torch.Tensor, amounts: torch.Tensor) -> None:
        self.mode, self.positions = mode, positions
        self.units, self.amounts = units, amounts  # [R, d] (zero rows = not steered), [R]
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, torch.float32)
        if key not in self._cache:
            self._cache[key] = (self.units.to(device), self.amounts.to(device))
        return self._cache[key]

    def apply(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        units, amounts = self.on(hidden.device)
        if self.mode == "add":
            delta = (amounts[:, None] * units)[:, None, :]
            if mask is not None:
                delta = delta * mask[None, :, None]
            return hidden + delta.to(hidden.dtype)
        projection = torch.einsum("btd,bd->bt", hidden.float(), units)
        target = torch.zeros_like(projection) if self.mode == "ablate" else amounts[:, None].expand_as(projection)
        correction = (target - projection)[..., None] * units[:, None, :]
        if mask is not None:
            correction = correction * mask[None, :, None]
        return hidden + correction.to(hidden.dtype)


class SteeringHandle:
    """A long-lived steering hook set on a model; change its configuration between calls.

    Example:
        >>> handle = SteeringHandle(loaded)
        >>> handle.set([Steer(vector, layer=6, coefficient=1.0)])      # every row
        >>> out = loaded.model.generate(**inputs)
        >>> handle.set_rows([[Steer(vector, 6, 0.5)], [], [Steer(vector, 6, 2.0)]])  # one per row
        >>> handle.remove()
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._hooks = HookSet()
        self._hooked: set[int] = set()
        self._terms: dict[int, list[_Term]] = {}
        self._rows: int | None = None
        self._prompt_length = 0
        self._prompt: torch.Tensor | None = None  # the last prompt pass's tokens (to recognise cache-less steps)
        self._offset = 0
        self._tokens = 0
        self._attached = False

    # ---------------------------------------------------------------- configuration

    def set(self, steers: Sequence[Steer]) -> SteeringHandle:
        """Apply the same interventions to every row of any batch."""
        self._build([tuple(steers)], broadcast=True)
        return self

    def set_rows(self, rows: Sequence[Sequence[Steer]]) -> SteeringHandle:
        """Give row ``i`` of the next batches the interventions ``rows[i]`` (an empty list: none)."""
        if not rows:
            raise ConfigError("set_rows needs one entry per batch row")
        self._build([tuple(r) for r in rows], broadcast=False)
        return self

    def clear(self) -> SteeringHandle:
        """Stop steering (hooks stay registered and do nothing until the next set)."""
        self._terms, self._rows = {}, None
        return self

    def _build(self, rows: list[tuple[Steer, ...]], *, broadcast: bool) -> None:
        width, n_layers = self.loaded.hidden_size, self.loaded.num_layers
        for row in rows:
            for s in row:
                if not 0 <= s.layer < n_layers:
                    raise ConfigError(
                        f"steering layer {s.layer} does not exist: {self.loaded.name} has 0..{n_layers - 1}"
                    )
                if s.unit().shape[0] != width:
                    raise ConfigError(
                        f"steering direction has width {s.unit().shape[0]} but {self.loaded.name} has width {width}"
                    )
        terms: dict[int, list[_Term]] = {}
        groups: dict[tuple[int, str, str, int], list[tuple[int, Steer]]] = {}
        for r, row in enumerate(rows):
            seen: dict[tuple[int, str, str], int] = {}
            for s in row:
                key = (s.layer, s.mode, s.positions)
                k = seen.get(key, 0)
                seen[key] = k + 1
                groups.setdefault((*key, k), []).append((r, s))
        for (layer, mode, positions, _), members in sorted(groups.items(), key=lambda kv: kv[0]):
            units = torch.zeros(len(rows), width)
            amounts = torch.zeros(len(rows))
            for r, s in members:
                units[r] = s.unit()
                amounts[r] = s.amount()
            if mode == "add" and not bool(amounts.any()):
                continue  # coefficient 0 everywhere: leave the layer untouched
            terms.setdefault(layer, []).append(_Term(mode, positions, units, amounts))
        self._terms = terms
        self._rows = None if broadcast else len(rows)
        self._prompt = None  # a new configuration starts a new generation
        if self._attached:
            self._hook_layers()

    # ---------------------------------------------------------------- hooks

    def attach(self) -> SteeringHandle:
        """Register the hooks (idempotent)."""
        if not self._attached:
            try:
                self._hooks.forward_pre(_stack_module(self.loaded), self._track, with_kwargs=True, label="positions")
                self._attached = True
                self._hook_layers()
            except BaseException:
                self.remove()
                raise
        return self

    def _hook_layers(self) -> None:
        for layer in sorted(set(self._terms) - self._hooked):
            # prepend: steering is part of the layer's output, so every other hook (transformers'
            # output_hidden_states among them) sees the steered state.
            self._hooks.forward(
                self.loaded.layers[layer], self._make_hook(layer), prepend=True, label=f"steer.layer{layer}"
            )
            self._hooked.add(layer)

    def remove(self) -> None:
        """Remove every hook this handle added (safe to call twice)."""
        self._hooks.remove()
        self._hooked.clear()
        self._attached = False

    def __enter__(self) -> SteeringHandle:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        rows = "every row" if self._rows is None else f"{self._rows} rows"
        return f"SteeringHandle({self.loaded.name}, layers={sorted(self._terms)}, {rows}, {self._hooks!r})"

    def _track(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        tokens = kwargs.get("input_ids")
        if tokens is None and args and isinstance(args[0], torch.Tensor):
            tokens = args[0]
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        length = int(tokens.shape[1]) if tokens is not None else 0
        if past == 0 and not self._continues_prompt(tokens):
            self._prompt_length = length
            self._prompt = tokens.detach() if tokens is not None else None
        self._offset, self._tokens = past, length

    def _continues_prompt(self, tokens: torch.Tensor | None) -> bool:
        """Whether a call without a cache re-reads the last prompt plus generated tokens (a step
        of ``generate(use_cache=False)``) rather than starting a new prompt."""
        prompt = self._prompt
        if tokens is None or prompt is None or tokens.shape[0] != prompt.shape[0]:
            return False
        if tokens.shape[1] <= prompt.shape[1] or tokens.device != prompt.device:
            return False
        return bool(torch.equal(tokens[:, : prompt.shape[1]], prompt))

    def _mask(self, positions: str, device: torch.device) -> torch.Tensor | None:
        if positions == "all":
            return None
        index = torch.arange(self._offset, self._offset + self._tokens, device=device)
        # "response" starts at the last prompt position: its output produces the first answer token.
        inside = index < self._prompt_length if positions == "prompt" else index >= self._prompt_length - 1
        return inside.float()

    def _make_hook(self, layer: int) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            terms = self._terms.get(layer)
            if not terms:
                return None
            hidden = hidden_of(output)
            batch = hidden.shape[0]
            if self._rows is not None and batch != self._rows:
                raise ConfigError(
                    f"steering is set for {self._rows} rows but layer {layer} received a batch of {batch}; "
                    "pass each sub-batch its own rows (traitvec.generate does this), never a different split"
                )
            if hidden.shape[1] != self._tokens:
                self._tokens, self._offset = hidden.shape[1], 0  # called without the stack's pre-hook
            for term in terms:
                mask = self._mask(term.positions, hidden.device)
                if mask is not None and not bool(mask.any()):
                    continue
                hidden = _apply_broadcast(term, hidden, mask) if self._rows is None else term.apply(hidden, mask)
            return with_hidden(output, hidden)

        return hook


def _apply_broadcast(term: _Term, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    units, amounts = term.on(hidden.device)
    unit, amount = units[0], amounts[0]
    if term.mode == "add":
        delta = (amount * unit)[None, None, :]
        if mask is not None:
            delta = delta * mask[None, :, None]
        return hidden + delta.to(hidden.dtype)
    projection = hidden.float() @ unit
    target = torch.zeros_like(projection) if term.mode == "ablate" else torch.full_like(projection, float(amount))
    correction = (target - projection)[..., None] * unit
    if mask is not None:
        correction = correction * mask[None, :, None]
    return hidden + correction.to(hidden.dtype)


def _stack_module(loaded: LoadedModel) -> nn.Module:
    """The module that owns the decoder layers (its forward sees every call's length and cache)."""
    parent_path = loaded.layers_path.rsplit(".", 1)[0] if "." in loaded.layers_path else ""
    return unwrap_model(loaded.model).get_submodule(parent_path)


@contextlib.contextmanager
def steer(
    loaded: LoadedModel,
    vector: TraitVector | torch.Tensor,
    *,
    layer: int,
    coefficient: float = 0.0,
    mode: Mode = "add",
    positions: SteerPositions = "all",
    scale: Scale = "spread",
) -> Iterator[SteeringHandle]:
    """Steer every row with one configuration inside a ``with`` block.

    Example:
        >>> with steer(loaded, vector, layer=6, coefficient=1.0, positions="response"):
        ...     answers = generate(loaded, questions, max_new_tokens=48)
    """
    handle = SteeringHandle(loaded)
    handle.set([Steer(vector, layer, coefficient, mode, positions, scale)])
    with handle:
        yield handle


@contextlib.contextmanager
def steer_rows(loaded: LoadedModel, rows: Sequence[Sequence[Steer]]) -> Iterator[SteeringHandle]:
    """Give each batch row its own interventions inside a ``with`` block (batch size must match).

    Example:
        >>> configs = [[Steer(vector, 6, c)] for c in (0.0, 0.5, 1.0, 2.0)]
        >>> with steer_rows(loaded, configs):
        ...     out = loaded.model(**batch_of_four)
    """
    handle = SteeringHandle(loaded)
    handle.set_rows(rows)
    with handle:
        yield handle
