"""One steering round: generate, judge and project the answers of ``[(layer, coefficient)]`` runs.

:class:`RoundRunner` is what the coefficient search calls (``runner(configs, number)``): every
configuration's answers to every question (``samples`` each) in one batched ``generate``, judged
for the trait and for coherence, and read back by the unsteered model for the judge-free
projection. The baseline is the round of coefficient 0.

Each answer is recorded as one plain dict (:func:`response_record`), the unit later measurements
add fields to. :func:`rescore_failed` re-asks the judge for exactly the items that failed in
recorded rounds (a resumed run after a judge outage), leaving every finished score as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..generation import Generation, generate
from ..judge import Judge, JudgeScore
from ..models import LoadedModel
from ..prompting import PLAIN_STOP, encode_chat
from ..steering import Steer, SteerPositions
from ..traits import Trait
from ..vectors import TraitVector
from .projection import answer_projections
from .search import Record

__all__ = ["RoundRunner", "Scorer", "response_record", "rescore_failed", "scorers_for"]

logger = logging.getLogger(__name__)

Scorer = Callable[[Sequence[str], Sequence[str]], list[JudgeScore]]
"""Scores answers (paired with their questions) for one kind of judge record."""


def scorers_for(judge: Judge, trait: Trait) -> dict[str, Scorer]:
    """The judge calls behind each judged field of a response: ``trait`` and ``coherence``."""
    return {
        "trait": lambda questions, answers: judge.score_trait(trait, questions, answers),
        "coherence": judge.score_coherence,
    }


def response_record(
    question: str,
    question_index: int,
    sample: int,
    layer: int,
    coefficient: float,
    generation: Generation,
    scores: Mapping[str, JudgeScore],
    projections: dict[str, float] | None,
) -> dict[str, Any]:
    """One answer as recorded in ``progress.json`` and ``results.json`` (``layer`` is ``None`` at baseline)."""
    return {
        "question": question,
        "question_index": question_index,
        "sample": sample,
        "layer": None if coefficient == 0 else layer,
        "coefficient": coefficient,
        "text": generation.text,
        "tokens": list(generation.tokens),
        "stopped": generation.stopped,
        **{kind: score.to_dict() for kind, score in scores.items()},
        "projection": None if projections is None or coefficient == 0 else projections[str(layer)],
        "projections": projections,
    }


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
    ) -> None:
        self.trait, self.questions, self.vector, self.loaded = trait, list(questions), vector, loaded
        self.scorers, self.layers = dict(scorers), list(layers)
        self.max_new_tokens, self.samples, self.temperature, self.seed = max_new_tokens, samples, temperature, seed
        self.steer_positions, self.show_progress = steer_positions, show_progress
        self.encoded = [encode_chat(loaded, q) for q in self.questions]

    def __call__(self, configs: list[tuple[int, float]], number: int) -> Record:
        prompts: list[list[int]] = []
        rows: list[list[Steer]] = []
        meta: list[tuple[int, float, int, int]] = []
        for layer, coefficient in configs:
            steers = (
                [] if coefficient == 0 else [Steer(self.vector, layer, coefficient, positions=self.steer_positions)]
            )
            for qi, ids in enumerate(self.encoded):
                for sample in range(self.samples):
                    prompts.append(ids)
                    rows.append(steers)
                    meta.append((layer, coefficient, qi, sample))
        generations = generate(
            self.loaded,
            prompts,
            max_new_tokens=self.max_new_tokens,
            steering=rows,
            do_sample=self.samples > 1,
            temperature=self.temperature,
            seed=self.seed + 1000 * number,
            stop_strings=() if self.loaded.use_chat_template else (PLAIN_STOP,),
            show_progress=self.show_progress,
            desc=f"steering round {number}",
        )
        asked = [self.questions[m[2]] for m in meta]
        answers = [g.text for g in generations]
        scores = {kind: score(asked, answers) for kind, score in self.scorers.items()}
        projections = answer_projections(self.loaded, self.vector, generations, self.layers)
        responses = [
            response_record(
                self.questions[qi],
                qi,
                sample,
                layer,
                coefficient,
                g,
                {k: v[i] for k, v in scores.items()},
                projections[i],
            )
            for i, ((layer, coefficient, qi, sample), g) in enumerate(zip(meta, generations, strict=True))
        ]
        return {"round": number, "configs": [list(c) for c in configs], "responses": responses}


def rescore_failed(rounds: Sequence[Record], scorers: Mapping[str, Scorer]) -> int:
    """Re-ask the judge for every failed item of the recorded rounds, in place; the number re-asked.

    Only items whose status is ``failed`` are sent (one call per judged field); ok and abstained
    items keep their recorded scores. An item that fails again stays failed.
    """
    asked = 0
    for kind, score in scorers.items():
        failed = [r for record in rounds for r in record["responses"] if r[kind]["status"] == "failed"]
        if not failed:
            continue
        logger.info("re-asking the judge for %d %s items that failed", len(failed), kind)
        fresh = score([r["question"] for r in failed], [r["text"] for r in failed])
        for response, result in zip(failed, fresh, strict=True):
            response[kind] = result.to_dict()
        asked += len(failed)
    return asked
