"""Which saved vector each trait is read with, and where its values' zero and unit come from.

For every trait, :func:`resolve_readouts` reads the trait's extraction folder of an experiment
(:class:`~traitvec.stages.layout.OutputLayout`) and picks, unless :class:`ReadoutChoice` overrides
them:

- the **position**: the first of :data:`PREFERRED_POSITIONS` that ``evaluation.json`` holds
  (mean-like positions first: a per-token reading averages into them exactly);
- the **method**: ``mean-diff`` when evaluated, else the first evaluated method;
- the **layer**: the evaluation's recommended layer for that method and position.

Values are ``(h · v − centre) / spread``: the unit is the vector's spread at the layer
(:meth:`~traitvec.vectors.TraitVector.spread`) and the centre is the midpoint of the extraction's
positive and negative class means projected on ``v`` (from ``activations/{position}.safetensors``),
so 0 lies halfway between the trait's two sides and positive values lean towards the positive
side. Without the activations file the centre is 0 (raw projections), which the provenance says.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._io import sha256_file
from ..activations import Activations
from ..errors import ConfigError, TraitDataError, TraitNotFoundError, VectorError
from ..monitor import Readout
from ..traits import load_trait
from ..vectors import TraitVector
from .layout import OutputLayout
from .resume import read_json

__all__ = ["PREFERRED_POSITIONS", "ReadoutChoice", "ResolvedReadout", "resolve_readouts", "check_trait_files"]
__all__ += ["CENTRE_RULE"]

logger = logging.getLogger(__name__)

PREFERRED_POSITIONS = ("answer-mean", "prefill-mean", "answer-first-k", "response-mean", "last-token")
"""The position used when none is chosen: the first of these the trait's evaluation holds."""
CENTRE_RULE = "midpoint of the extraction's positive and negative mean projections at the layer"


@dataclass(frozen=True)
class ReadoutChoice:
    """Overrides of the evaluation's recommendation (``None``: use it).

    Attributes:
        method: vector method (``mean-diff``, ``probe``, ``pca``).
        position: capture position the vector was fitted on.
        layers: layers to read; with more than one, each trait's values are keyed ``cat/trait@L``.
    """

    method: str | None = None
    position: str | None = None
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            if not self.layers or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.layers):
                raise ConfigError(
                    f"ReadoutChoice.layers = {self.layers!r}; expected layer indices >= 0",
                    setting="ReadoutChoice.layers",
                )
            if len(set(self.layers)) != len(self.layers):
                raise ConfigError(
                    f"ReadoutChoice.layers = {list(self.layers)} repeats a layer; name each layer once",
                    setting="ReadoutChoice.layers",
                )


@dataclass(frozen=True)
class ResolvedReadout:
    """A readout with the vector it came from.

    Attributes:
        readout: what the forward pass reads.
        vector: the saved vector.
        provenance: what ``projections.json`` records under ``vectors``.
        key: what the outputs' inputs key holds about it (vector files' hashes, layer, centre, unit).
    """

    readout: Readout
    vector: TraitVector
    provenance: dict[str, Any]
    key: dict[str, Any]


def resolve_readouts(layout: OutputLayout, traits: Sequence[str], choice: ReadoutChoice) -> list[ResolvedReadout]:
    """The readouts of ``traits`` from an experiment's extraction folders (no model is loaded).

    Raises:
        ConfigError: a trait has no evaluation or no vector for the chosen method and position, or
            the vector has no direction at a chosen layer.

    Example:
        >>> layout = OutputLayout("experiments/gemma-3-270m")
        >>> [r.readout.layer for r in resolve_readouts(layout, ["styles/formality"], ReadoutChoice())]
        [6]
    """
    if not traits:
        raise ConfigError("no traits to read; name at least one cat/trait", setting="run_monitor(traits=)")
    if len(set(traits)) != len(traits):
        raise ConfigError(f"traits {list(traits)} repeat a trait; name each once", setting="run_monitor(traits=)")
    out = []
    for trait in traits:
        position, method, recommended, evaluation = _recommendation(layout, trait, choice)
        path = layout.extraction(trait).vector(method, position)
        if not path.is_file():
            raise ConfigError(
                f"{path} does not exist: {trait} has no {method} vector at position {position}; "
                f"extract it first (traitvec extract), or choose another ReadoutChoice.method / ReadoutChoice.position",
                setting="ReadoutChoice.method",
            )
        vector = TraitVector.load(path)
        layers = choice.layers or (recommended,)
        centres = _centres(layout, trait, position, vector, layers)
        hashes = {"vector": sha256_file(path), "sidecar": sha256_file(path.with_suffix(".json"))}
        for layer in layers:
            if layer not in vector.directions:
                raise ConfigError(
                    f"ReadoutChoice.layers = {layer}: {trait} {vector.name} has no layer {layer}; "
                    f"it has layers {list(vector.layers)}",
                    setting="ReadoutChoice.layers",
                )
            name = trait if len(layers) == 1 else f"{trait}@{layer}"
            centre, rule = centres[layer]
            readout = Readout.from_vector(vector, layer, name=name, centre=centre)
            provenance = _provenance(trait, vector, path, layer, readout, rule, evaluation, recommended, choice)
            key = {"name": name, **hashes, "layer": layer, "centre": centre, "scale": readout.scale}
            out.append(ResolvedReadout(readout, vector, provenance, key))
    return out


def check_trait_files(resolved: Sequence[ResolvedReadout], root: str | os.PathLike[str]) -> None:
    """Record in each provenance whether the trait's files under ``root`` are the ones its vector was
    extracted from (``trait_files``: ``"current"``, ``"changed since extraction"`` or ``"not found"``);
    a changed trait is logged as a warning."""
    for r in resolved:
        trait = r.provenance["trait"]
        try:
            current = load_trait(trait, root).files_hash
        except (TraitNotFoundError, TraitDataError):
            r.provenance["trait_files"] = f"not found or not loadable under {root}"
            continue
        same = current == r.vector.trait_hash
        r.provenance["trait_files"] = "current" if same else "changed since extraction"
        if not same:
            logger.warning("%s: the trait's files changed since its vector was extracted; re-extract it", trait)


def _recommendation(layout: OutputLayout, trait: str, choice: ReadoutChoice) -> tuple[str, str, int, dict[str, Any]]:
    """``(position, method, recommended layer, that position's evaluation)`` of one trait."""
    paths = layout.extraction(trait)
    document = read_json(paths.evaluation_json)
    positions = (document or {}).get("positions")
    if not isinstance(positions, dict) or not positions:
        raise ConfigError(
            f"{paths.evaluation_json} does not exist or holds no evaluation: {trait} has not been extracted "
            f"on this experiment; run the extraction first (traitvec extract)",
            setting="run_monitor(traits=)",
        )
    if choice.position is not None:
        if choice.position not in positions:
            raise ConfigError(
                f"ReadoutChoice.position = {choice.position!r}: {trait} was extracted at {', '.join(positions)}",
                setting="ReadoutChoice.position",
            )
        position = choice.position
    else:
        position = next((p for p in PREFERRED_POSITIONS if p in positions), next(iter(positions)))
    evaluation = positions[position]
    recommended = evaluation.get("recommended_layer") or {}
    if choice.method is not None:
        if choice.method not in recommended:
            raise ConfigError(
                f"ReadoutChoice.method = {choice.method!r}: {trait} at {position} was evaluated with "
                f"{', '.join(recommended) or 'no method'}",
                setting="ReadoutChoice.method",
            )
        method = choice.method
    elif "mean-diff" in recommended:
        method = "mean-diff"
    elif recommended:
        method = next(iter(recommended))
    else:
        raise ConfigError(f"{paths.evaluation_json}: {position} recommends no layer; re-run the extraction")
    return position, method, int(recommended[method]), evaluation


def _centres(
    layout: OutputLayout, trait: str, position: str, vector: TraitVector, layers: Sequence[int]
) -> dict[int, tuple[float, str]]:
    """Per layer, the centre and how it was found."""
    path = layout.extraction(trait).activations(position)
    none = {layer: (0.0, f"none (0): {path.name} not readable, values are raw projections") for layer in layers}
    if not path.is_file():
        return none
    try:
        acts = Activations.load(path)
    except VectorError as err:
        logger.warning("%s; %s values are not centred", err, trait)
        return none
    out = {}
    for layer in layers:
        if layer not in acts.layers or layer not in vector.directions:
            out[layer] = none[layer]
            continue
        pos, neg = acts.at(layer)
        mid = (pos.double().mean(0) + neg.double().mean(0)) / 2
        centre = float(mid @ vector.direction(layer).double())
        out[layer] = (centre, CENTRE_RULE) if math.isfinite(centre) else none[layer]
    return out


def _provenance(
    trait: str,
    vector: TraitVector,
    path: Any,
    layer: int,
    readout: Readout,
    centre_rule: str,
    evaluation: dict[str, Any],
    recommended: int,
    choice: ReadoutChoice,
) -> dict[str, Any]:
    metrics = next(
        (
            {k: m.get(k) for k in ("accuracy", "auroc", "cohens_d")}
            for m in evaluation.get("metrics", [])
            if m.get("layer") == layer and m.get("method") == vector.method
        ),
        None,
    )
    chosen = [name for name, value in (("method", choice.method), ("position", choice.position)) if value]
    chosen += ["layer"] if choice.layers else []
    return {
        "trait": trait,
        "method": vector.method,
        "position": vector.position,
        "layer": layer,
        "recommended_layer": recommended,
        "chosen_by": f"override of {', '.join(chosen)}" if chosen else "the evaluation's recommendation",
        "file": str(path),
        "model": dict(vector.model),
        "trait_hash": vector.trait_hash,
        "n_pairs": vector.n_pairs,
        "unit": "spread units",
        "spread": readout.scale,
        "centre": readout.centre,
        "centre_rule": centre_rule,
        "value": "(h · v − centre) / spread, h the residual stream at the output of decoder block layer",
        "evaluation": metrics,
        "created": vector.created,
        "traitvec_version": vector.traitvec_version,
    }
