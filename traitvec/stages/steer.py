"""Steering evaluation: how much does the vector move the steer model, and at what cost in coherence?

Protocol (per trait):

1. The vector (default ``mean-diff`` at the first extracted position) is checked against the
   steer model: refused when widths differ, warned when depth or family differ.
2. Candidate layers: ``SteeringSettings.layers``, else the ``n_layers`` layers with the highest
   held-out Cohen's d within 20–80% of depth in extraction's evaluation (:mod:`traitvec.stages.search`).
3. Baseline: every ``steering.json`` question answered at coefficient 0 (``samples`` times each
   when sampling), scored by the judge for the trait, for coherence and for relevance. Every
   coherence score in the evaluation (baseline, steered, prompted) goes through the relevance
   gate (:func:`traitvec.judge.scores.gate_coherence`): an answer that does not address its
   question (relevance under 50) keeps at most 50 coherence, so fluent off-topic text cannot pass
   the floor. Each answer records ``coherence_raw``, ``relevance`` and the gated ``coherence``.
4. Adaptive search, one round per step and all candidate layers in one batched ``generate``:
   each layer starts at ``start`` (spread units, sign from the trait's ``direction``), doubles
   while the run stays coherent, then bisects (geometric mean) between the last coherent and the
   first incoherent coefficient until they are within 25% or the steps run out. A run is coherent
   when at least ``min_scored`` of its answers were scored and their mean coherence reaches the
   floor. When the unsteered baseline itself scores under the floor (a small model, or a judge
   that rates everything low), the floor used is the baseline's coherence minus 10 points, with a
   warning and both numbers in ``results.json``: an absolute floor would then allow no run at all.
   A run must also pass a judge-free guard (:mod:`traitvec.stages.fluency_guard`): every answer
   is read back by the unsteered model, and a run whose mean answer log-probability falls more
   than ``fluency_margin`` nats under the baseline's, or whose answers repeat themselves (mean
   3-gram repetition over ``repetition_ceiling``), is "not fluent" even when a blind judge rates it
   coherent.
5. In-sample best = the largest trait gain among coherent runs, chosen and scored on all questions.
6. Held-out headline (:mod:`traitvec.stages.selection`): 2-fold cross-fitting over questions — the
   run is chosen on one half of the questions and scored on the other, then the halves swap; the
   pooled held-out per-question gains give ``held_out`` with its 95% interval.

7. Prompting baseline (:mod:`traitvec.stages.baseline`): the same questions answered unsteered
   with an instruction to show the trait (its opposite for ``direction: negative``), judged and
   read back the same way; ``prompting_baseline`` in ``results.json`` sets it beside steering.

For every answer, alongside the judge, judge-free measures from one forward pass of the
unsteered model (:func:`traitvec.fluency.read_answers`): ``fluency`` (mean log-probability,
perplexity, repetition) and the response-mean activation's projection on the vector at every
candidate layer; ``projection_gain`` is the sign-adjusted change from baseline in spread units.

Outputs: one folder per set of inputs, ``experiments/{S}/steering/{category}/{trait}/runs/{key}/``
(``results.json`` with every response and score, ``results.md``, ``trait_coherence.png``,
``heatmap.png``, ``projection.png``), and a copy of the latest finished run in the trait's folder
(:mod:`traitvec.stages.runs`). Each finished round is checkpointed to the run's ``progress.json``,
so an interrupted run resumes without regenerating finished rounds. A run with failed judge items
is not current: a rerun re-asks exactly those items and keeps everything else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple

from .._io import sha256_text, write_json
from ..errors import ConfigError
from ..evaluation import Evaluation
from ..experiments import ExperimentConfig
from ..generation import Generation, generate
from ..judge import Judge
from ..models import ModelPool
from ..traits import Trait
from ..vectors import TraitVector
from .baseline import prompting_instruction, prompting_record, run_prompting
from .extract import ExtractionResult
from .fluency_guard import FluencyLimits, fluency_limits, fluency_summary
from .layout import OutputLayout
from .resume import inputs_key, read_if_current
from .rounds import RELEVANCE_GATE, RoundRunner, rescore_failed, scorers_for
from .runs import mirror_run, progress_problem, results_problem
from .search import Record, candidate_layers, effective_floor, response_summary, search
from .steer_results import build_results, write_run
from .steer_settings import Plan, SteeringSettings, sign_of

__all__ = ["SteeringSettings", "run_steering_eval", "judge_key"]

logger = logging.getLogger(__name__)

KEY_FORMAT = 5
"""Version of the steering inputs key (3: model key, judge key up front, resolved settings, cross-fitting;
4: fluency readings and guard, prompting baseline, response steering from the last prompt position;
5: relevance scored for every answer and coherence gated by it)."""


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
    generate_fn: Callable[..., list[Generation]] = generate,
) -> dict[str, Any]:
    """Evaluate steering with ``trait``'s vector on ``steer_config``'s model; write and return results.

    Args:
        trait: the trait (its questions, direction and rubric).
        extraction: extraction's result (the vector files and their evaluations).
        steer_config: the experiment whose model is steered.
        pool: loads the steer model when the results are not current.
        judge: scores trait and coherence.
        settings: protocol settings.
        force: redo even when the run's ``results.json`` is current.
        show_progress: progress bars.
        generate_fn: what generates the answers (:func:`~traitvec.generation.generate`; several
            traits share its batches through :func:`~traitvec.stages.multi_steer.run_steering_evals`).

    Returns:
        The ``results.json`` document.

    Example:
        >>> results = run_steering_eval(trait, extraction, config, ModelPool(), make_judge())
        >>> results["held_out"]["trait_gain"], results["best"]["layer"]
    """
    plan = _plan(trait, extraction, steer_config, pool, judge, settings or SteeringSettings())
    previous = read_if_current(plan.run.results_json, plan.key, force=force, validate=results_problem)
    if previous is not None and previous["scoring"]["n_failed"] == 0:
        logger.info("%s: steering results are current (%s)", trait.name, plan.run.results_json)
        mirror_run(plan.paths, plan.run, previous)
        return previous
    if previous is not None:
        logger.info("%s: %d judge items failed last time; re-asking them", trait.name, previous["scoring"]["n_failed"])
    loaded = pool.get(steer_config)
    started, usage_before = time.perf_counter(), judge.usage()
    transfer_warnings = plan.vector.check_model(loaded)
    layers = (
        list(plan.settings.layers)
        if plan.settings.layers
        else candidate_layers(plan.evaluation, plan.settings.method, plan.settings.n_layers, loaded.num_layers)
    )
    for layer in layers:
        plan.vector.direction(layer)  # refuses a layer the vector lacks before any generation
    plan = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, layers=tuple(layers)))
    runner = RoundRunner(
        trait,
        plan.questions,
        plan.vector,
        loaded,
        scorers_for(judge, trait),
        layers,
        max_new_tokens=plan.settings.max_new_tokens,
        samples=plan.settings.samples,
        temperature=plan.settings.temperature,
        seed=plan.settings.seed,
        steer_positions=plan.settings.steer_positions,
        show_progress=show_progress,
        generate_fn=generate_fn,
    )
    done = _run_rounds(trait, plan, runner, force)
    seconds = time.perf_counter() - started
    results = build_results(
        trait,
        plan,
        loaded.describe(),
        judge,
        done.rounds,
        done.floor,
        done.floor_note,
        transfer_warnings,
        seconds,
        fluency=done.fluency,
        prompting=done.prompting,
        usage_before=usage_before,
    )
    write_run(results, plan.paths, plan.run, keep_progress=results["scoring"]["n_failed"] > 0)
    return results


def judge_key(judge: Judge, trait: Trait) -> dict[str, Any]:
    """Everything about ``judge`` that changes ``trait``'s scores, as plain data, computed before scoring.

    ``judge.key_for([trait])`` (docs/judge.md): it does not depend on what the judge scored before.
    """
    return dict(judge.key_for([trait]))


def _plan(
    trait: Trait,
    extraction: ExtractionResult,
    steer_config: ExperimentConfig,
    pool: ModelPool,
    judge: Judge,
    settings: SteeringSettings,
) -> Plan:
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
    settings = dataclasses.replace(settings, position=position)
    vector_file = extraction.vectors[name]
    vector = TraitVector.load(vector_file)
    evaluation = extraction.evaluations[position]
    questions = list(trait.questions[: settings.questions] if settings.questions else trait.questions)
    model_key = pool.model_key(steer_config)
    judged = judge_key(judge, trait)
    inputs = {
        "format": KEY_FORMAT,
        "vector": vector.extra.get("inputs_key") or vector.created,
        "steer_model": model_key,
        "settings": {**asdict(settings), "layers": _layers_source(settings, evaluation)},
        "questions": sha256_text(json.dumps(questions)),
        "trait_hash": trait.files_hash,
        "judge": judged,
        "relevance_gate": RELEVANCE_GATE,
        "prompting_instruction": sha256_text(prompting_instruction(trait)) if settings.prompting_baseline else None,
    }
    key = inputs_key(inputs)
    paths = OutputLayout(steer_config.path).steering(trait.name)
    return Plan(settings, vector_file, vector, evaluation, questions, model_key, judged, key, paths, paths.run(key))


def _layers_source(settings: SteeringSettings, evaluation: Evaluation) -> Any:
    """What decides the candidate layers before the model loads: the given layers, or the ranking's inputs.

    Ranked layers depend on the evaluation (hashed here), ``n_layers`` and the steer model's depth
    (part of the model key), so the key determines them without loading the model.
    """
    if settings.layers:
        return list(settings.layers)
    metrics = json.dumps(evaluation.to_dict(), sort_keys=True, default=str)
    return {"ranked": settings.method, "n": settings.n_layers, "evaluation": sha256_text(metrics)}


class _Done(NamedTuple):
    """What the rounds of one evaluation produced."""

    rounds: list[Record]
    floor: float
    floor_note: str | None
    fluency: FluencyLimits
    prompting: dict[str, Any] | None


def _run_rounds(trait: Trait, plan: Plan, runner: RoundRunner, force: bool) -> _Done:
    """The baseline, every search round and the prompting baseline (finished ones resumed from
    ``progress.json``), the floor used and the fluency limits."""
    settings, name = plan.settings, trait.name
    progress = read_if_current(plan.run.progress_json, plan.key, force=force, validate=progress_problem)
    rounds: list[Record] = progress["rounds"] if progress else []
    prompting = prompting_record(progress)
    if rounds and rescore_failed([*rounds, *([prompting] if prompting else [])], runner.scorers):
        _checkpoint(plan, rounds, prompting)
    if not rounds:
        logger.info(
            "%s: baseline on %s (%d questions × %d samples)",
            name,
            runner.loaded.name,
            len(plan.questions),
            settings.samples,
        )
        rounds.append(runner([(layer, 0.0) for layer in runner.layers[:1]], 0))
        _checkpoint(plan, rounds, prompting)
    baseline = response_summary(rounds[0]["responses"])
    coherence = baseline["coherence"]
    floor, floor_note = effective_floor(
        settings.coherence_floor,
        coherence["mean"],
        scored=(coherence["n_ok"], coherence["n"]),
        min_scored=settings.min_scored,
    )
    if floor_note:
        logger.warning("%s: %s", name, floor_note)
    fluency = fluency_limits(
        fluency_summary(rounds[0]["responses"]), margin=settings.fluency_margin, ceiling=settings.repetition_ceiling
    )
    search(
        rounds,
        runner.layers,
        start=settings.start,
        sign=sign_of(trait),
        floor=floor,
        steps=settings.search_steps,
        run_round=runner,
        checkpoint=lambda done: _checkpoint(plan, done, prompting),
        min_scored=settings.min_scored,
        fluency=fluency,
        label=name,
    )
    if settings.prompting_baseline and prompting is None:
        logger.info("%s: prompting baseline (the unsteered model asked to show the trait)", name)
        prompting = run_prompting(trait, runner)
        _checkpoint(plan, rounds, prompting)
    return _Done(rounds, floor, floor_note, fluency, prompting if settings.prompting_baseline else None)


def _checkpoint(plan: Plan, rounds: list[Record], prompting: dict[str, Any] | None) -> None:
    document: dict[str, Any] = {"inputs_key": plan.key, "steer_model": plan.model_key, "rounds": rounds}
    if prompting is not None:
        document["prompting"] = prompting
    write_json(plan.run.progress_json, document)
