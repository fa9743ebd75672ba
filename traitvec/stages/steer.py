"""Steering evaluation: how much does the vector move the steer model, and at what cost in coherence?

Protocol (per trait):

1. The vector (default ``mean-diff`` at the first extracted position) is checked against the
   steer model: refused when widths differ, warned when depth or family differ.
2. Candidate layers: ``SteeringSettings.layers``, else the ``n_layers`` layers with the highest
   held-out Cohen's d within 20–80% of depth in extraction's evaluation (:mod:`traitvec.stages.search`).
3. Baseline: every ``steering.json`` question answered at coefficient 0 (``samples`` times each
   when sampling), scored by the judge for the trait and for coherence.
4. Adaptive search, one round per step and all candidate layers in one batched ``generate``:
   each layer starts at ``start`` (spread units, sign from the trait's ``direction``), doubles
   while mean coherence stays at or above the floor, then bisects (geometric mean) between the
   last coherent and the first incoherent coefficient until they are within 25% or the steps run
   out. When the unsteered baseline itself scores under the floor (a small model, or a judge that
   rates everything low), the floor used is the baseline's coherence minus 10 points, with a
   warning and both numbers in ``results.json``: an absolute floor would then allow no run at all.
5. Best = the largest trait gain (sign-adjusted steered mean − baseline mean) among runs whose
   mean coherence is at or above the floor.

For every run, alongside the judge, a judge-free measure: the answers are read back by the
unsteered model and their response-mean activation at the steered layer is projected on the
vector; ``projection_gain`` is the change from baseline in spread units.

Outputs in ``experiments/{S}/steering/{category}/{trait}/``: ``results.json`` (every response and
score), ``results.md``, ``trait_coherence.png`` and ``heatmap.png``. Each finished round is
checkpointed to ``progress.json``, so an interrupted run resumes without regenerating finished
rounds (and the judge's cache makes re-scoring free).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import sha256_text, write_json, write_text
from ..errors import ConfigError
from ..evaluation import Evaluation
from ..experiments import ExperimentConfig
from ..generation import generate
from ..judge import Judge
from ..models import LoadedModel, ModelPool
from ..prompting import PLAIN_STOP, encode_chat
from ..render.markdown import format_results
from ..render.plots import plot_steering
from ..steering import Steer, SteerPositions
from ..traits import Trait
from ..vectors import TraitVector
from .extract import ExtractionResult
from .layout import OutputLayout, SteeringPaths
from .projection import answer_projections
from .resume import inputs_key, read_if_current
from .search import Record, candidate_layers, effective_floor, response_summary, search
from .steer_summary import best_run, mean_projection, run_summaries

__all__ = ["SteeringSettings", "run_steering_eval"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteeringSettings:
    """Settings of the steering evaluation (see the module docstring for the protocol).

    Attributes:
        method: the vector's method.
        position: the vector's position (``None``: the first extracted).
        layers: candidate layers (``None``: the best ``n_layers`` within 20–80% of depth).
        n_layers: how many candidate layers.
        coherence_floor: minimum mean coherence (0–100) of a run that counts.
        max_new_tokens: answer length.
        questions: use only the first N steering questions (``None``: all).
        samples: answers per question (>1 samples, seeded).
        temperature: sampling temperature.
        search_steps: coefficient search rounds.
        start: first coefficient magnitude (spread units).
        seed: sampling seed.
        steer_positions: which tokens are steered (``all``, ``prompt`` or ``response``).

    Raises:
        ConfigError: a count under 1, a floor outside 0–100, or a start that is not positive.
    """

    method: str = "mean-diff"
    position: str | None = None
    layers: tuple[int, ...] | None = None
    n_layers: int = 2
    coherence_floor: float = 70.0
    max_new_tokens: int = 48
    questions: int | None = None
    samples: int = 1
    temperature: float = 1.0
    search_steps: int = 6
    start: float = 0.5
    seed: int = 0
    steer_positions: SteerPositions = "all"

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
        if self.start <= 0:
            raise ConfigError(
                f"SteeringSettings.start = {self.start}: use a positive number (the sign comes from the trait's "
                "direction)",
                setting="SteeringSettings.start",
            )


@dataclass(frozen=True)
class _Plan:
    """What one evaluation will steer with and ask, resolved before any model loads."""

    vector_file: Path
    vector: TraitVector
    evaluation: Evaluation
    questions: list[str]
    judge_info: dict[str, Any]
    steer_model: str | None
    key: str
    paths: SteeringPaths


def run_steering_eval(
    trait: Trait,
    extraction: ExtractionResult,
    steer_config: ExperimentConfig,
    pool: ModelPool,
    judge: Judge,
    *,
    settings: SteeringSettings | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Evaluate steering with ``trait``'s vector on ``steer_config``'s model; write and return results.

    Args:
        trait: the trait (its questions, direction and rubric).
        extraction: extraction's result (the vector files and their evaluations).
        steer_config: the experiment whose model is steered.
        pool: loads the steer model when the results are not current.
        judge: scores trait and coherence.
        settings: protocol settings.
        force: redo even when ``results.json`` is current.
        show_progress: progress bars.

    Returns:
        The ``results.json`` document.

    Example:
        >>> results = run_steering_eval(trait, extraction, config, ModelPool(), make_judge())
        >>> results["best"]["layer"], results["best"]["coefficient"]
    """
    settings = settings or SteeringSettings()
    plan = _plan(trait, extraction, steer_config, pool, judge, settings)
    # An unknown fingerprint (a hub model not loaded yet) cannot prove the results current.
    previous = read_if_current(plan.paths.results_json, plan.key, force=force or plan.steer_model is None)
    if previous is not None:
        logger.info("%s: steering results are current (%s)", trait.name, plan.paths.results_json)
        return previous
    loaded = pool.get(steer_config)
    transfer_warnings = plan.vector.check_model(loaded)
    layers = (
        list(settings.layers)
        if settings.layers
        else candidate_layers(plan.evaluation, settings.method, settings.n_layers, loaded.num_layers)
    )
    for layer in layers:
        plan.vector.direction(layer)  # refuses a layer the vector lacks before any generation
    started = time.perf_counter()
    runner = _Rounds(trait, plan, loaded, judge, layers, settings, show_progress)
    rounds, floor, floor_note = _run_rounds(runner, force)
    results = _results(runner, rounds, floor, floor_note, transfer_warnings)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["traitvec_version"] = __version__
    if results["smoke_test"]:
        results["warning"] = "scored by a tiny local judge: a smoke test, not a measurement"
    _write(results, plan.paths)
    return results


def _plan(
    trait: Trait,
    extraction: ExtractionResult,
    steer_config: ExperimentConfig,
    pool: ModelPool,
    judge: Judge,
    settings: SteeringSettings,
) -> _Plan:
    """The vector, its evaluation, the questions and the inputs key of one evaluation."""
    position = settings.position or next(iter(extraction.evaluations))
    name = f"{settings.method}-{position}"
    if name not in extraction.vectors:
        raise ConfigError(
            f"no {name} vector was extracted for {trait.name} (SteeringSettings.method = {settings.method!r}, "
            f"SteeringSettings.position = {position!r}); add the method to ExtractionSettings.methods and the "
            "position to ExtractionSettings.positions",
            setting="SteeringSettings.method",
        )
    if not trait.questions:
        raise ConfigError(f"{trait.path}: steering needs steering.json with questions")
    vector_file = extraction.vectors[name]
    vector = TraitVector.load(vector_file)
    questions = list(trait.questions[: settings.questions] if settings.questions else trait.questions)
    judge_info = judge.describe()
    steer_model = pool.fingerprint(steer_config)
    inputs = {
        "format": 2,  # 2: baseline-relative coherence floor
        "vector": vector.extra.get("inputs_key") or vector.created,
        "steer_model": steer_model,
        "settings": asdict(settings),
        "questions": sha256_text(json.dumps(questions)),
        "trait_hash": trait.files_hash,
        "judge": {k: judge_info.get(k) for k in ("name", "prompt_hashes")},
    }
    return _Plan(
        vector_file=vector_file,
        vector=vector,
        evaluation=extraction.evaluations[position],
        questions=questions,
        judge_info=judge_info,
        steer_model=steer_model,
        key=inputs_key(inputs),
        paths=OutputLayout(steer_config.path).steering(trait.name),
    )


class _Rounds:
    """Runs one round: generate, judge and project for ``[(layer, coefficient)]`` (the baseline is coefficient 0)."""

    def __init__(
        self,
        trait: Trait,
        plan: _Plan,
        loaded: LoadedModel,
        judge: Judge,
        layers: list[int],
        settings: SteeringSettings,
        show_progress: bool,
    ) -> None:
        self.trait, self.plan, self.loaded, self.judge = trait, plan, loaded, judge
        self.layers, self.settings, self.show_progress = layers, settings, show_progress
        self.encoded = [encode_chat(loaded, q) for q in plan.questions]

    def __call__(self, configs: list[tuple[int, float]], number: int) -> Record:
        settings, questions, vector = self.settings, self.plan.questions, self.plan.vector
        prompts: list[list[int]] = []
        rows: list[list[Steer]] = []
        meta: list[tuple[int, float, int, int]] = []
        for layer, coefficient in configs:
            steers = [] if coefficient == 0 else [Steer(vector, layer, coefficient, positions=settings.steer_positions)]
            for qi, ids in enumerate(self.encoded):
                for sample in range(settings.samples):
                    prompts.append(ids)
                    rows.append(steers)
                    meta.append((layer, coefficient, qi, sample))
        generations = generate(
            self.loaded,
            prompts,
            max_new_tokens=settings.max_new_tokens,
            steering=rows,
            do_sample=settings.samples > 1,
            temperature=settings.temperature,
            seed=settings.seed + 1000 * number,
            stop_strings=() if self.loaded.use_chat_template else (PLAIN_STOP,),
            show_progress=self.show_progress,
            desc=f"steering round {number}",
        )
        answers = [g.text for g in generations]
        asked = [questions[m[2]] for m in meta]
        trait_scores = self.judge.score_trait(self.trait, asked, answers)
        coherence = self.judge.score_coherence(asked, answers)
        projections = answer_projections(self.loaded, vector, generations, self.layers)
        responses = []
        for m, g, t, c, p in zip(meta, generations, trait_scores, coherence, projections, strict=True):
            responses.append(
                {
                    "question": questions[m[2]],
                    "question_index": m[2],
                    "sample": m[3],
                    "layer": None if m[1] == 0 else m[0],
                    "coefficient": m[1],
                    "text": g.text,
                    "tokens": list(g.tokens),
                    "stopped": g.stopped,
                    "trait": t.to_dict(),
                    "coherence": c.to_dict(),
                    "projection": None if p is None or m[1] == 0 else p[str(m[0])],
                    "projections": p,
                }
            )
        return {"round": number, "configs": [list(c) for c in configs], "responses": responses}


def _run_rounds(runner: _Rounds, force: bool) -> tuple[list[Record], float, str | None]:
    """The baseline and every search round (finished rounds resumed from ``progress.json``), and the floor used."""
    plan, settings, name = runner.plan, runner.settings, runner.trait.name
    progress = read_if_current(plan.paths.progress_json, plan.key, force=force)
    rounds: list[Record] = progress["rounds"] if progress else []
    if not rounds:
        logger.info(
            "%s: baseline on %s (%d questions × %d samples)",
            name,
            runner.loaded.name,
            len(plan.questions),
            settings.samples,
        )
        rounds.append(runner([(layer, 0.0) for layer in runner.layers[:1]], 0))
        _checkpoint(plan, rounds)
    baseline = response_summary(rounds[0]["responses"])
    floor, floor_note = effective_floor(settings.coherence_floor, baseline["coherence"]["mean"])
    if floor_note:
        logger.warning("%s: %s", name, floor_note)
    search(
        rounds,
        runner.layers,
        start=settings.start,
        sign=_sign(runner.trait),
        floor=floor,
        steps=settings.search_steps,
        run_round=runner,
        checkpoint=lambda done: _checkpoint(plan, done),
        label=name,
    )
    return rounds, floor, floor_note


def _sign(trait: Trait) -> float:
    return -1.0 if trait.direction == "negative" else 1.0


def _results(
    runner: _Rounds, rounds: list[Record], floor: float, floor_note: str | None, transfer_warnings: list[str]
) -> dict[str, Any]:
    """The ``results.json`` document (less timing and version, which the caller adds)."""
    trait, plan, settings, judge = runner.trait, runner.plan, runner.settings, runner.judge
    baseline = response_summary(rounds[0]["responses"])
    base_proj = {layer: mean_projection(rounds[0]["responses"], layer) for layer in runner.layers}
    runs = run_summaries(rounds, baseline, base_proj, plan.vector.spread, _sign(trait), floor)
    return {
        "trait": trait.name,
        "inputs_key": plan.key,
        "vector": {
            "file": str(plan.vector_file),
            "method": plan.vector.method,
            "position": plan.vector.position,
            "extracted_on": dict(plan.vector.model),
        },
        "steer_model": runner.loaded.describe(),
        "transfer_warnings": transfer_warnings,
        "direction": trait.direction,
        "layers": runner.layers,
        "settings": asdict(settings),
        "coherence_floor": {"requested": settings.coherence_floor, "effective": floor, "note": floor_note},
        "coefficient_unit": "spread (mean norm of mean-centred activations at extraction); sign follows direction",
        "questions": plan.questions,
        "judge": plan.judge_info,
        "smoke_test": bool(judge.smoke_test),
        "baseline": {**baseline, "projection": {str(k): v for k, v in base_proj.items()}},
        "runs": runs,
        "best": best_run(runs),
        "responses": [dict(r, round=record["round"]) for record in rounds for r in record["responses"]],
        "usage": judge.usage(),
    }


def _checkpoint(plan: _Plan, rounds: list[Record]) -> None:
    write_json(plan.paths.progress_json, {"inputs_key": plan.key, "rounds": rounds})


def _write(results: dict[str, Any], paths: SteeringPaths) -> None:
    write_json(paths.results_json, results)
    write_text(paths.results_md, format_results(results))
    plot_steering(results, paths.trait_coherence_png, paths.heatmap_png)
    paths.progress_json.unlink(missing_ok=True)
