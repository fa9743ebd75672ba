"""Judge-free reading of generated answers: one forward pass of the unsteered model over prompt + answer.

A judge can be blind — a tiny local one rates "…Councilarypurspurspurs…" as coherent as plain
prose — so every answer is also read back by the **unsteered** model from its exact token ids
(never re-tokenised), and :func:`read_answers` reports per answer, from that single pass:

- ``mean_logprob``: the mean over the answer's tokens of ``log p(token | prompt, earlier answer
  tokens)`` under the unsteered model (natural log); fluent text scores near the model's own
  greedy answers, word salad far below;
- ``perplexity``: ``exp(−mean_logprob)``;
- ``repetition``: the fraction of the answer's token :data:`REPETITION_N`-grams (3-grams) that
  repeat an earlier 3-gram of the same answer — 0 for text that never loops, near 1 for
  "purspurspurs…"; 3-grams because a repeated pair of tokens is common in fluent text ("of the")
  while a repeated triple within 48 tokens rarely is; 0.0 for answers shorter than 3 tokens;
- ``projections``: ``{layer: response-mean activation · unit direction}`` at the requested layers
  (the judge-free measure of how far the answer moved along the vector).

The answer's tokens are ``Generation.tokens`` (the text the judge sees); an empty answer is read
by its first raw token (the end-of-sequence token the model chose at once), so it still has a
reading. Batches are left-padded (:mod:`traitvec.batching`) so every answer ends in the last
column: the output head runs only over the last ``longest answer + 1`` positions
(``logits_to_keep``), and rows per batch are capped so the logits of one batch stay under
:data:`MAX_LOGIT_ELEMENTS`. Activations are reduced as they stream past (forward hooks through
:class:`~traitvec.hooks.HookSet`), sums in float32.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .batching import PaddedBatch, length_batches, pad_batch
from .hooks import HookSet, hidden_of
from .models import LoadedModel

if TYPE_CHECKING:
    from .generation import Generation
    from .vectors import TraitVector

__all__ = ["AnswerReading", "REPETITION_N", "MAX_LOGIT_ELEMENTS", "read_answers", "repetition_rate"]

REPETITION_N = 3
"""The n of the repeated n-grams :func:`repetition_rate` counts."""

MAX_LOGIT_ELEMENTS = 2**26
"""Most logit values one batch may hold (256 MB in float32): rows per batch are capped by it."""


@dataclass(frozen=True)
class AnswerReading:
    """What the unsteered model makes of one answer.

    Attributes:
        n_tokens: answer tokens read (0 when there was nothing to read; then every value is None).
        mean_logprob: mean natural-log probability of the answer's tokens.
        perplexity: ``exp(−mean_logprob)``.
        repetition: fraction of the answer's 3-grams that repeat an earlier one.
        projections: ``{str(layer): projection}`` of the answer's response-mean activation on the
            vector's unit direction; ``None`` without a vector.
    """

    n_tokens: int
    mean_logprob: float | None
    perplexity: float | None
    repetition: float | None
    projections: dict[str, float] | None = None

    def fluency(self) -> dict[str, float | None]:
        """``{"mean_logprob", "perplexity", "repetition"}`` (the per-response ``fluency`` record)."""
        return {"mean_logprob": self.mean_logprob, "perplexity": self.perplexity, "repetition": self.repetition}


def repetition_rate(tokens: Sequence[int], n: int = REPETITION_N) -> float:
    """The fraction of ``tokens``' n-grams that repeat an earlier n-gram of the same sequence.

    Example:
        >>> repetition_rate([1, 2, 3, 1, 2, 3])  # (1,2,3) (2,3,1) (3,1,2) (1,2,3): one repeat in four
        0.25
        >>> repetition_rate([7, 8])
        0.0
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams)


def read_answers(
    loaded: LoadedModel,
    generations: Sequence[Generation],
    *,
    vector: TraitVector | None = None,
    layers: Sequence[int] = (),
    max_batch_tokens: int | None = None,
) -> list[AnswerReading]:
    """Read every answer back with the unsteered model in one forward pass per batch.

    Args:
        loaded: the model, with no steering attached (the readings are of the unsteered model).
        generations: the answers (their exact prompt and answer token ids are read).
        vector: the vector whose direction the response-mean activations are projected on.
        layers: the layers to project at (with ``vector``).
        max_batch_tokens: padded tokens per batch (default 1024 on CPU, 32768 on GPU).

    Returns:
        One :class:`AnswerReading` per generation, in order.

    Example:
        >>> readings = read_answers(loaded, generate(loaded, questions), vector=vector, layers=[6])
        >>> readings[0].fluency()
        {'mean_logprob': -1.8, 'perplexity': 6.0, 'repetition': 0.0}
    """
    wanted = sorted(set(layers)) if vector is not None else []
    spans = [list(g.tokens) or list(g.raw_tokens[:1]) for g in generations]
    index = [i for i, span in enumerate(spans) if span]
    out = [AnswerReading(0, None, None, None, None) for _ in generations]
    if not index:
        return out
    sequences = [[*generations[i].prompt_ids, *spans[i]] for i in index]
    budget = max_batch_tokens or (32768 if loaded.device.type == "cuda" else 1024)
    head_rows = _rows_per_batch(loaded, max(len(spans[i]) for i in index) + 1)
    for batch in length_batches([len(s) for s in sequences], budget):
        for start in range(0, len(batch), head_rows):
            rows = batch[start : start + head_rows]
            logprobs, reduced = _read_batch(
                loaded, [sequences[k] for k in rows], [len(spans[index[k]]) for k in rows], wanted
            )
            for row, k in enumerate(rows):
                i = index[k]
                projections = None
                if vector is not None and wanted:
                    projections = {str(layer): float(reduced[layer][row] @ vector.direction(layer)) for layer in wanted}
                mean = float(logprobs[row].mean())
                out[i] = AnswerReading(
                    n_tokens=len(spans[i]),
                    mean_logprob=mean,
                    perplexity=math.exp(-mean),
                    repetition=repetition_rate(generations[i].tokens),
                    projections=projections,
                )
    return out


def _rows_per_batch(loaded: LoadedModel, keep: int) -> int:
    """Rows whose kept logits (``keep`` positions × vocabulary) stay under :data:`MAX_LOGIT_ELEMENTS`."""
    model: Any = loaded.model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    vocab = int(weight.shape[0]) if isinstance(weight, torch.Tensor) else int(len(loaded.tokenizer))
    return max(1, MAX_LOGIT_ELEMENTS // (keep * max(vocab, 1)))


def _keeps_logits(model: nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return False


def _read_batch(
    loaded: LoadedModel, sequences: list[list[int]], answer_lengths: list[int], layers: list[int]
) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """Per row, the log-probabilities of its answer tokens; per layer, ``[rows, width]`` answer means."""
    padded = pad_batch(sequences, loaded.tokenizer.pad_token_id, side="left")
    keep = max(answer_lengths) + 1
    weights = _answer_weights(padded, answer_lengths)
    device = loaded.device
    inputs: dict[str, Any] = {
        "input_ids": padded.input_ids.to(device),
        "attention_mask": padded.attention_mask.to(device),
        "position_ids": padded.position_ids.to(device),
        "use_cache": False,
    }
    if _keeps_logits(loaded.model):
        inputs["logits_to_keep"] = keep
    reduced: dict[int, torch.Tensor] = {}
    with HookSet() as hooks, torch.inference_mode():
        for layer in layers:
            hooks.forward(loaded.layers[layer], _reducer(layer, weights, reduced), label=f"fluency.layer{layer}")
        logits = loaded.model(**inputs).logits[:, -keep:]
    logprobs = []
    for row, length in enumerate(answer_lengths):
        # column keep-1-length predicts the answer's first token; the last column predicts past its end
        predicting = logits[row, keep - 1 - length : keep - 1].float().log_softmax(-1)
        targets = padded.input_ids[row, padded.width - length :].to(predicting.device)
        logprobs.append(predicting.gather(-1, targets[:, None])[:, 0].cpu())
    return logprobs, reduced


def _answer_weights(padded: PaddedBatch, answer_lengths: list[int]) -> torch.Tensor:
    """``[rows, width]`` weights ``1/length`` over each row's answer (the last ``length`` columns)."""
    weights = torch.zeros(len(answer_lengths), padded.width, dtype=torch.float32)
    for row, length in enumerate(answer_lengths):
        weights[row, padded.width - length :] = 1.0 / length
    return weights


def _reducer(
    layer: int, weights: torch.Tensor, reduced: dict[int, torch.Tensor]
) -> Callable[[nn.Module, Any, Any], None]:
    """A hook storing ``layer``'s weighted answer mean (weights moved once to each device they meet)."""
    on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        hidden = hidden_of(output)
        if hidden.device not in on_device:
            w = weights.to(hidden.device)
            on_device[hidden.device] = (w, (w > 0).unsqueeze(-1))
        w, used = on_device[hidden.device]
        # where() keeps NaN/inf at padding positions out of the sums.
        hidden = torch.where(used, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).float()
        reduced[layer] = torch.einsum("bt,btd->bd", w, hidden).cpu()

    return hook
