"""The steering evaluation's settings, and the plan of one evaluation resolved before any model loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluation import Evaluation
from ..steering import SteerPositions
from ..traits import Trait
from ..vectors import TraitVector
from .fluency_guard import FLUENCY_MARGIN, REPETITION_CEILING
from .layout import SteeringPaths, SteeringRunPaths
from .search import MIN_SCORED

__all__ = ["SteeringSettings", "Plan", "sign_of"]


@dataclass(frozen=True)
class SteeringSettings:
    """Settings of the steering evaluation (see the module docstring for the protocol).

    Attributes:
        method: the vector's method.
        position: the vector's position (``None``: the first extracted).
        layers: candidate layers (``None``: the best ``n_layers`` within 20–80% of depth).
        n_layers: how many candidate layers.
        coherence_floor: minimum mean coherence (0–100) of a run that counts.
        min_scored: minimum fraction (0–1) of a run's answers with an ok coherence score for the
            floor to apply; under it the run is "too few scored", never coherent.
        max_new_tokens: answer length.
        questions: use only the first N steering questions (``None``: all).
        samples: answers per question (>1 samples, seeded).
        temperature: sampling temperature.
        search_steps: coefficient search rounds.
        start: first coefficient magnitude (spread units).
        seed: sampling seed, and the seed of the cross-fitting split of the questions.
        steer_positions: which tokens are steered (``all``, ``prompt`` or ``response``).
        fluency_margin: nats of mean answer log-probability (under the unsteered model) a run may
            lose against the unsteered baseline and still count (``None``: no such check); see
            :mod:`traitvec.stages.fluency_guard` for the default and why.
        repetition_ceiling: the highest mean 3-gram repetition a run may have (or the baseline's
            plus 0.15, if higher; ``None``: no such check).
        prompting_baseline: also answer the questions unsteered with an instruction to show the
            trait (its opposite for ``direction: negative``), judged the same way
            (:mod:`traitvec.stages.baseline`).

    Raises:
        ConfigError: a count under 1, a floor outside 0–100, a fraction outside 0–1, a start
            that is not positive, a negative fluency margin or a repetition ceiling outside 0–1.
    """

    method: str = "mean-diff"
    position: str | None = None
    layers: tuple[int, ...] | None = None
    n_layers: int = 2
    coherence_floor: float = 70.0
    min_scored: float = MIN_SCORED
    max_new_tokens: int = 48
    questions: int | None = None
    samples: int = 1
    temperature: float = 1.0
    search_steps: int = 6
    start: float = 0.5
    seed: int = 0
    steer_positions: SteerPositions = "all"
    fluency_margin: float | None = FLUENCY_MARGIN
    repetition_ceiling: float | None = REPETITION_CEILING
    prompting_baseline: bool = True

    def __post_init__(self) -> None:
        for name in ("samples", "search_steps", "n_layers", "max_new_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(
                    f"SteeringSettings.{name} = {value!r}: must be at least 1", setting=f"SteeringSettings.{name}"
                )
        if not 0 <= self.coherence_floor <= 100:
            raise ConfigError(
                f"SteeringSettings.coherence_floor = {self.coherence_floor}: use a score between 0 and 100",
                setting="SteeringSettings.coherence_floor",
            )
        if not 0 < self.min_scored <= 1:
            raise ConfigError(
                f"SteeringSettings.min_scored = {self.min_scored}: use a fraction above 0 and at most 1 "
                f"(default {MIN_SCORED})",
                setting="SteeringSettings.min_scored",
            )
        if self.fluency_margin is not None and not 0 <= self.fluency_margin < float("inf"):
            raise ConfigError(
                f"SteeringSettings.fluency_margin = {self.fluency_margin}: use a number of nats of at least 0 "
                f"(default {FLUENCY_MARGIN}), or None for no log-probability check",
                setting="SteeringSettings.fluency_margin",
            )
        if self.repetition_ceiling is not None and not 0 < self.repetition_ceiling <= 1:
            raise ConfigError(
                f"SteeringSettings.repetition_ceiling = {self.repetition_ceiling}: use a fraction above 0 and at "
                f"most 1 (default {REPETITION_CEILING}), or None for no repetition check",
                setting="SteeringSettings.repetition_ceiling",
            )
        if self.start <= 0:
            raise ConfigError(
                f"SteeringSettings.start = {self.start}: use a positive number (the sign comes from the trait's "
                "direction)",
                setting="SteeringSettings.start",
            )


@dataclass(frozen=True)
class Plan:
    """What one evaluation will steer with and ask, resolved before any model loads.

    Attributes:
        settings: the settings with ``position`` resolved (``layers`` is resolved once the model loads).
        vector_file, vector, evaluation: the vector and extraction's evaluation at its position.
        questions: the questions asked.
        model_key: :meth:`ModelPool.model_key` of the steer model.
        judge_key: :func:`judge_key` of the judge for this trait.
        key: the inputs key (the run's folder name).
        paths: the trait's steering folder; ``run``: this run's folder.
    """

    settings: SteeringSettings
    vector_file: Path
    vector: TraitVector
    evaluation: Evaluation
    questions: list[str]
    model_key: dict[str, Any]
    judge_key: dict[str, Any]
    key: str
    paths: SteeringPaths
    run: SteeringRunPaths


def sign_of(trait: Trait) -> float:
    """+1, or −1 for a trait whose ``direction`` is ``negative`` (steering aims to lower it)."""
    return -1.0 if trait.direction == "negative" else 1.0
