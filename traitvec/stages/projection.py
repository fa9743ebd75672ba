"""The judge-free measure of steering: steered answers read back by the unsteered model, projected on the vector.

For every generated answer, the unsteered model reads the exact token ids (prompt + response) and
the mean activation over the response tokens is projected on the vector's unit direction at each
candidate layer. The steering evaluation reports the change from baseline in spread units
(``projection_gain``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..capture import Selection, capture_sequences
from ..generation import Generation
from ..models import LoadedModel
from ..vectors import TraitVector

__all__ = ["answer_projections"]


def answer_projections(
    loaded: LoadedModel, vector: TraitVector, generations: Sequence[Generation], layers: Sequence[int]
) -> list[dict[str, float] | None]:
    """Per answer, ``{layer: projection}`` of its response-mean activation (read back by the unsteered
    model from the exact generated token ids) on the vector, at every candidate layer."""
    selections, index = [], []
    for i, g in enumerate(generations):
        response = list(g.tokens) or list(g.raw_tokens[:1])
        if not response:
            continue
        ids = list(g.prompt_ids) + response
        selections.append(Selection(tuple(ids), {"response": tuple(range(len(g.prompt_ids), len(ids)))}))
        index.append(i)
    out: list[dict[str, float] | None] = [None] * len(generations)
    if not selections:
        return out
    wanted = sorted(set(layers))
    reduced = capture_sequences(loaded, selections, wanted)["response"]
    for row, i in enumerate(index):
        out[i] = {str(layer): float(reduced[row, k] @ vector.direction(layer)) for k, layer in enumerate(wanted)}
    return out
