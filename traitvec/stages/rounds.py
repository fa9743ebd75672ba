"""One steering round: generate, judge and read back the answers of ``[(layer, coefficient)]`` runs.

:class:`RoundRunner` is what the coefficient search calls (``runner(configs, number)``): every
configuration's answers to every question (``samples`` each) in one batched ``generate``, judged
for the trait, for coherence and for relevance (coherence goes through the relevance gate,
:func:`gated`), and read back by the unsteered model in one forward pass
(:func:`traitvec.fluency.read_answers`) for the judge-free measures: the answer's fluency
(``mean_logprob``, ``perplexity``, ``repetition``) and its projection on the vector at every
candidate layer. The baseline is the round of coefficient 0; :meth:`RoundRunner.prompting` answers
the same questions unsteered from other prompts (the prompting baseline).

A question longer than the model's context minus ``max_new_tokens`` is cut to its end once, with
one warning naming the questions cut (:func:`traitvec.generation.fit_context`), so a pasted
megabyte never generates for minutes.

Each answer is recorded as one plain dict (:func:`response_record`), the unit later measurements
add fields to. :func:`rescore_failed` re-asks the judge for exactly the items that failed in
recorded rounds (a resumed run after a judge outage), leaving every finished score as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..fluency import AnswerReading, read_answers
from ..generation import Generation, fit_context, generate
from ..judge import Judge, JudgeScore
from ..judge.scores import RELEVANCE_CAP, RELEVANCE_THRESHOLD, gate_coherence
from ..models import LoadedModel
from ..prompting import PLAIN_STOP, encode_chat
from ..steering import Steer, SteerPositions
from ..traits import Trait
from ..vectors import TraitVector
from .search import Record

__all__ = [
    "ASKED",
    "RELEVANCE_GATE",
    "RoundRunner",
    "Scorer",
    "encode_questions",
    "gate_responses",
    "gated",
    "rescore_failed",
    "response_record",
    "scorers_for",
]

logger = logging.getLogger(__name__)

_Row = tuple[list[int], list[Steer], tuple[int, float, int, int]]
"""One answer to generate: prompt ids, steering, and (layer, coefficient, question index, sample)."""

Scorer = Callable[[Sequence[str], Sequence[str]], list[JudgeScore]]
"""Scores answers (paired with their questions) for one kind of judge record."""


ASKED = ("trait", "coherence_raw", "relevance")
"""The judge records of a response that the judge is asked for; ``coherence`` is derived (:func:`gated`)."""

RELEVANCE_GATE = {"threshold": RELEVANCE_THRESHOLD, "cap": RELEVANCE_CAP}
"""The relevance gate on every coherence score: an answer whose relevance is under ``threshold`` keeps
at most ``cap`` coherence (:func:`traitvec.judge.scores.gate_coherence`)."""


def scorers_for(judge: Judge, trait: Trait) -> dict[str, Scorer]:
    """The judge calls behind each asked field of a response (:data:`ASKED`): ``trait``,
    ``coherence_raw`` (the judge's coherence score) and ``relevance``."""
    return {
        "trait": lambda questions, answers: judge.score_trait(trait, questions, answers),
        "coherence_raw": judge.score_coherence,
        "relevance": judge.score_relevance,
    }


def gated(scores: Mapping[str, JudgeScore]) -> dict[str, JudgeScore]:
    """``scores`` with ``coherence``: ``coherence_raw`` through the relevance gate (:data:`RELEVANCE_GATE`).

    An off-topic answer (relevance under the threshold) keeps at most the cap; an unscored relevance
    leaves the coherence as the judge gave it. Without both records, ``scores`` as they are.
    """
    if "coherence_raw" not in scores or "relevance" not in scores:
        return dict(scores)
    return {**scores, "coherence": gate_coherence(scores["coherence_raw"], scores["relevance"], **RELEVANCE_GATE)}


def gate_responses(responses: Sequence[dict[str, Any]]) -> None:
    """Recompute every recorded response's ``coherence`` from its ``coherence_raw`` and ``relevance``, in place."""
    for response in responses:
        if isinstance(response.get("coherence_raw"), Mapping) and isinstance(response.get("relevance"), Mapping):
            raw, relevance = JudgeScore(**response["coherence_raw"]), JudgeScore(**response["relevance"])
            response["coherence"] = gate_coherence(raw, relevance, **RELEVANCE_GATE).to_dict()


def response_record(
    question: str,
    question_index: int,
    sample: int,
    layer: int,
    coefficient: float,
    generation: Generation,
    scores: Mapping[str, JudgeScore],
    reading: AnswerReading,
) -> dict[str, Any]:
    """One answer as recorded in ``progress.json`` and ``results.json`` (``layer`` is ``None`` at baseline).

    The judge records: ``trait``, ``coherence_raw`` (the judge's coherence), ``relevance`` and
    ``coherence`` (after the relevance gate; what the search and every summary use). ``reading`` is
    the unsteered model's reading of the answer: its ``fluency`` and ``projections``.
    """
    projections = reading.projections
    return {
        "question": question,
        "question_index": question_index,
        "sample": sample,
        "layer": None if coefficient == 0 else layer,
        "coefficient": coefficient,
        "text": generation.text,
        "tokens": list(generation.tokens),
        "stopped": generation.stopped,
        **{kind: score.to_dict() for kind, score in gated(scores).items()},
        "fluency": reading.fluency(),
        "projection": None if projections is None or coefficient == 0 else projections[str(layer)],
        "projections": projections,
    }


def encode_questions(loaded: LoadedModel, questions: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Token ids of every question, cut to fit the context with ``max_new_tokens`` to spare (one
    warning naming the questions cut, by index)."""
    encoded, cut = [], []
    for index, question in enumerate(questions):
        ids, dropped = fit_context(loaded, encode_chat(loaded, question), max_new_tokens)
        encoded.append(ids)
        if dropped:
            cut.append(f"{index} ({dropped} tokens)")
    if cut:
        logger.warning(
            "%s: %d steering question(s) longer than the context minus max_new_tokens = %d; kept the end of "
            "each (question index, tokens cut: %s)",
            loaded.name,
            len(cut),
            max_new_tokens,
            ", ".join(cut[:10]) + (" …" if len(cut) > 10 else ""),
        )
    return encoded


class RoundRunner:
    """Runs one round for ``[(layer, coefficient)]`` (the baseline is coefficient 0).

    Args:
        trait: the trait (its rubric).
        questions: the steering questions.
        vector: the steering vector.
        loaded: the steer model.
        scorers: judge calls per judged field (:func:`scorers_for`).
        layers: candidate layers (projections are read at each).
        max_new_tokens, samples, temperature, seed, steer_positions: the settings of generation.
        show_progress: progress bars.
        generate_fn: what generates (:func:`~traitvec.generation.generate`; the multi-trait search
            passes one that shares its batches with other traits, :mod:`traitvec.stages.multi_steer`).
    """

    def __init__(
        self,
        trait: Trait,
        questions: Sequence[str],
        vector: TraitVector,
        loaded: LoadedModel,
        scorers: Mapping[str, Scorer],
        layers: Sequence[int],
        *,
        max_new_tokens: int,
        samples: int,
        temperature: float,
        seed: int,
        steer_positions: SteerPositions,
        show_progress: bool = False,
        generate_fn: Callable[..., list[Generation]] = generate,
    ) -> None:
        self.trait, self.questions, self.vector, self.loaded = trait, list(questions), vector, loaded
        self.scorers, self.layers = dict(scorers), list(layers)
        self.max_new_tokens, self.samples, self.temperature, self.seed = max_new_tokens, samples, temperature, seed
        self.steer_positions, self.show_progress = steer_positions, show_progress
        self.generate_fn = generate_fn
        self.encoded = encode_questions(loaded, self.questions, max_new_tokens)

    def __call__(self, configs: list[tuple[int, float]], number: int) -> Record:
        rows: list[_Row] = []
        for layer, coefficient in configs:
            steers = (
                [] if coefficient == 0 else [Steer(self.vector, layer, coefficient, positions=self.steer_positions)]
            )
            for qi, ids in enumerate(self.encoded):
                rows += [(ids, steers, (layer, coefficient, qi, sample)) for sample in range(self.samples)]
        responses = self._answer(rows, self.seed + 1000 * number, f"steering round {number}")
        return {"round": number, "configs": [list(c) for c in configs], "responses": responses}

    def prompting(self, prompts: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
        """The unsteered answers to ``prompts`` (one per question, in order: the questions with an
        instruction), judged and read back like every round's, recorded against the plain questions."""
        rows: list[_Row] = [
            (list(ids), [], (self.layers[0] if self.layers else 0, 0.0, qi, sample))
            for qi, ids in enumerate(prompts)
            for sample in range(self.samples)
        ]
        return self._answer(rows, self.seed - 1000, "prompting baseline")

    def _answer(self, rows: list[_Row], seed: int, desc: str) -> list[dict[str, Any]]:
        """Generate every row in one batched call, judge the answers and read them back unsteered."""
        generations = self.generate_fn(
            self.loaded,
            [ids for ids, _, _ in rows],
            max_new_tokens=self.max_new_tokens,
            steering=[steers for _, steers, _ in rows],
            do_sample=self.samples > 1,
            temperature=self.temperature,
            seed=seed,
            stop_strings=() if self.loaded.use_chat_template else (PLAIN_STOP,),
            show_progress=self.show_progress,
            desc=desc,
        )
        asked = [self.questions[meta[2]] for _, _, meta in rows]
        answers = [g.text for g in generations]
        scores = {kind: score(asked, answers) for kind, score in self.scorers.items()}
        readings = read_answers(self.loaded, generations, vector=self.vector, layers=self.layers)
        return [
            response_record(
                self.questions[qi], qi, sample, layer, coefficient, g, {k: v[i] for k, v in scores.items()}, readings[i]
            )
            for i, ((_, _, (layer, coefficient, qi, sample)), g) in enumerate(zip(rows, generations, strict=True))
        ]


def rescore_failed(rounds: Sequence[Record], scorers: Mapping[str, Scorer]) -> int:
    """Re-ask the judge for every failed item of the recorded rounds, in place; the number re-asked.

    Only items whose status is ``failed`` are sent (one call per asked field); ok and abstained
    items keep their recorded scores. An item that fails again stays failed. Every re-asked
    response's gated ``coherence`` is recomputed.
    """
    asked = 0
    touched: list[dict[str, Any]] = []
    for kind, score in scorers.items():
        failed = [r for record in rounds for r in record["responses"] if r[kind]["status"] == "failed"]
        if not failed:
            continue
        logger.info("re-asking the judge for %d %s items that failed", len(failed), kind)
        fresh = score([r["question"] for r in failed], [r["text"] for r in failed])
        for response, result in zip(failed, fresh, strict=True):
            response[kind] = result.to_dict()
        asked += len(failed)
        touched += failed
    gate_responses(touched)
    return asked
