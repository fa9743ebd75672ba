"""Steering evaluation: how much does the vector move the steer model, and at what cost in coherence?

Protocol (per trait):

1. The vector (default ``mean-diff`` at the first extracted position) is checked against the
   steer model: refused when widths differ, warned when depth or family differ.
2. Candidate layers: ``--steer-layers``, else the ``n_layers`` layers with the highest held-out
   Cohen's d within 20–80% of depth in extraction's evaluation.
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

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from ._io import sha256_text, write_json, write_text
from .capture import Selection, capture_sequences
from .errors import ConfigError
from .experiments import ExperimentConfig
from .generation import Generation, generate
from .models import LoadedModel
from .prompting import PLAIN_STOP, encode_chat
from .stats import mean_ci
from .steering import Steer
from .traits import Trait
from .vectors import TraitVector

__all__ = ["SteeringSettings", "run_steering_eval", "candidate_layers", "steering_dir"]

logger = logging.getLogger(__name__)


def steering_dir(experiment_dir: str | Path, trait_name: str) -> Path:
    """``experiments/{S}/steering/{category}/{trait}``."""
    return Path(experiment_dir) / "steering" / trait_name


@dataclass(frozen=True)
class SteeringSettings:
    """Settings of the steering evaluation (see the module docstring for the protocol)."""

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
    steer_positions: str = "all"

    def __post_init__(self) -> None:
        if self.samples < 1 or self.search_steps < 1 or self.n_layers < 1 or self.max_new_tokens < 1:
            raise ConfigError("--samples, --search-steps, --n-layers and --max-new-tokens must be at least 1")
        if not 0 <= self.coherence_floor <= 100:
            raise ConfigError(f"--coherence-floor {self.coherence_floor}: use a score between 0 and 100")
        if self.start <= 0:
            raise ConfigError(f"start coefficient {self.start}: use a positive number (the sign comes from direction)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SteeringSettings:
        from .extraction import parse_list
        from .pipeline import parse_layers

        methods = parse_list(getattr(args, "methods", None), "methods")
        positions = parse_list(getattr(args, "position", None), "position")
        return cls(
            method=methods[0] if methods else "mean-diff",
            position=positions[0] if positions else None,
            layers=parse_layers(args.steer_layers) if getattr(args, "steer_layers", None) else None,
            n_layers=args.n_layers,
            coherence_floor=args.coherence_floor,
            max_new_tokens=args.max_new_tokens,
            questions=args.questions,
            samples=args.samples,
            search_steps=args.search_steps,
        )


def candidate_layers(evaluation: dict[str, Any], method: str, n: int, n_layers_model: int) -> list[int]:
    """The ``n`` layers with the highest held-out Cohen's d within 20–80% of depth."""
    rows = [m for m in evaluation["metrics"] if m["method"] == method]
    band = [m for m in rows if n_layers_model > 1 and 0.2 <= m["layer"] / (n_layers_model - 1) <= 0.8] or rows
    ranked = sorted(band, key=lambda m: (-(m["cohens_d"] if m["cohens_d"] is not None else -1e9), m["layer"]))
    return sorted(m["layer"] for m in ranked[:n])


@dataclass
class _Search:
    """Adaptive coefficient search state of one layer (magnitudes; the sign is applied outside)."""

    next: float
    good: float | None = None
    bad: float | None = None
    done: bool = False

    def update(self, coefficient: float, coherent: bool) -> None:
        if coherent:
            self.good = coefficient
        else:
            self.bad = coefficient
        if self.good is not None and self.bad is not None:
            if self.bad / self.good < 1.25:
                self.done = True
            self.next = math.sqrt(self.good * self.bad)
        elif self.bad is None:
            self.next = coefficient * 2
        else:
            self.next = coefficient / 2


def run_steering_eval(
    trait: Trait,
    extraction: Any,
    steer_config: ExperimentConfig,
    pool: Any,
    judge: Any,
    *,
    settings: SteeringSettings | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Evaluate steering with ``trait``'s vector on ``steer_config``'s model; write and return results.

    Args:
        trait: the trait (its questions, direction and rubric).
        extraction: the :class:`~traitvec.extraction.ExtractionResult` holding the vectors.
        steer_config: the experiment whose model is steered.
        pool: a :class:`~traitvec.pipeline.ModelPool`.
        judge: a :class:`~traitvec.judge.Judge`.
        settings: protocol settings.
        force: redo even when ``results.json`` is current.
        show_progress: progress bars.
    """
    settings = settings or SteeringSettings()
    position = settings.position or next(iter(extraction.evaluations))
    key_name = f"{settings.method}-{position}"
    if key_name not in extraction.vectors:
        raise ConfigError(f"no {key_name} vector was extracted for {trait.name}; add it with --methods/--position")
    if not trait.questions:
        raise ConfigError(f"{trait.path}: steering needs steering.json with questions")
    vector_file = extraction.vectors[key_name]
    vector = TraitVector.load(vector_file)
    evaluation = json.loads((extraction.folder / "evaluation.json").read_text())["positions"][position]
    folder = steering_dir(steer_config.path, trait.name)
    questions = list(trait.questions[: settings.questions] if settings.questions else trait.questions)
    judge_info = judge.describe()
    inputs = {
        "format": 2,  # 2: baseline-relative coherence floor
        "vector": vector.extra.get("inputs_key") or vector.created,
        "steer_model": pool.fingerprint(steer_config),
        "settings": asdict(settings),
        "questions": sha256_text(json.dumps(questions)),
        "trait_hash": trait.files_hash,
        "judge": {k: judge_info.get(k) for k in ("name", "prompt_hashes")},
    }
    key = sha256_text(json.dumps(inputs, sort_keys=True, default=str))[:24]
    results_path = folder / "results.json"
    if not force and inputs["steer_model"] is not None and results_path.is_file():
        previous = _read(results_path)
        if previous and previous.get("inputs_key") == key:
            logger.info("%s: steering results are current (%s)", trait.name, results_path)
            return previous
    loaded: LoadedModel = pool.get(steer_config)
    transfer_warnings = vector.check_model(loaded)
    layers = (
        list(settings.layers)
        if settings.layers
        else candidate_layers(evaluation, settings.method, settings.n_layers, loaded.num_layers)
    )
    for layer in layers:
        vector.direction(layer)
    sign = -1.0 if trait.direction == "negative" else 1.0
    started = time.perf_counter()
    progress_path = folder / "progress.json"
    progress = _read(progress_path) if not force else None
    rounds: list[dict[str, Any]] = progress["rounds"] if progress and progress.get("inputs_key") == key else []
    encoded = [encode_chat(loaded, q) for q in questions]

    def run_round(configs: list[tuple[int, float]], number: int) -> dict[str, Any]:
        """Generate, judge and project for (layer, coefficient) configs; baseline is layer -1."""
        prompts, rows, meta = [], [], []
        for layer, coefficient in configs:
            steers = (
                []
                if coefficient == 0
                else [
                    Steer(vector, layer, coefficient, positions=settings.steer_positions)  # type: ignore[arg-type]
                ]
            )
            for qi, ids in enumerate(encoded):
                for sample in range(settings.samples):
                    prompts.append(ids)
                    rows.append(steers)
                    meta.append((layer, coefficient, qi, sample))
        generations = generate(
            loaded,
            prompts,
            max_new_tokens=settings.max_new_tokens,
            steering=rows,
            do_sample=settings.samples > 1,
            temperature=settings.temperature,
            seed=settings.seed + 1000 * number,
            stop_strings=() if loaded.use_chat_template else (PLAIN_STOP,),
            show_progress=show_progress,
            desc=f"steering round {number}",
        )
        answers = [g.text for g in generations]
        asked = [questions[m[2]] for m in meta]
        trait_scores = judge.score_trait(trait, asked, answers)
        coherence = judge.score_coherence(asked, answers)
        projections = _projections(loaded, vector, generations, layers)
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

    if not rounds:
        logger.info(
            "%s: baseline on %s (%d questions × %d samples)", trait.name, loaded.name, len(questions), settings.samples
        )
        rounds.append(run_round([(layer, 0.0) for layer in layers[:1]], 0))
        _checkpoint(progress_path, key, rounds)
    baseline = _summary(rounds[0]["responses"])
    floor, floor_note = effective_floor(settings.coherence_floor, baseline["coherence"]["mean"])
    if floor_note:
        logger.warning("%s: %s", trait.name, floor_note)
    base_proj = {layer: _mean_projection(rounds[0]["responses"], layer) for layer in layers}
    searches = {layer: _Search(next=settings.start) for layer in layers}
    for record in rounds[1:]:  # replay finished rounds into the search state
        for layer, coefficient in record["configs"]:
            runs = [r for r in record["responses"] if r["layer"] == layer]
            searches[layer].update(abs(coefficient), _coherent(runs, floor))
    if len(rounds) > 1:
        logger.info("%s: resuming after %d finished rounds", trait.name, len(rounds) - 1)
    for number in range(len(rounds), settings.search_steps + 1):
        active = [layer for layer in layers if not searches[layer].done]
        if not active:
            break
        configs = [(layer, sign * searches[layer].next) for layer in active]
        logger.info("%s: round %d: %s", trait.name, number, ", ".join(f"L{layer} × {c:+.3g}" for layer, c in configs))
        record = run_round(configs, number)
        rounds.append(record)
        _checkpoint(progress_path, key, rounds)
        for layer, coefficient in configs:
            runs = [r for r in record["responses"] if r["layer"] == layer]
            searches[layer].update(abs(coefficient), _coherent(runs, floor))

    runs_out = []
    for record in rounds[1:]:
        for layer, coefficient in record["configs"]:
            responses = [r for r in record["responses"] if r["layer"] == layer]
            summary = _summary(responses)
            proj_values = [r["projection"] for r in responses if r["projection"] is not None]
            proj_mean, proj_ci = mean_ci(proj_values)
            gain_trait = None
            if summary["trait"]["mean"] is not None and baseline["trait"]["mean"] is not None:
                gain_trait = sign * (summary["trait"]["mean"] - baseline["trait"]["mean"])
            spread = vector.spread(layer)
            runs_out.append(
                {
                    "layer": layer,
                    "coefficient": coefficient,
                    "round": record["round"],
                    **summary,
                    "trait_gain": gain_trait,
                    "coherent": summary["coherence"]["mean"] is not None and summary["coherence"]["mean"] >= floor,
                    "projection": {"mean": proj_mean, "ci95": list(proj_ci) if proj_ci else None},
                    "projection_gain": None
                    if proj_mean is None or base_proj[layer] is None
                    else (proj_mean - base_proj[layer]) / spread,
                }
            )
    eligible = [r for r in runs_out if r["coherent"] and r["trait_gain"] is not None]
    best = max(eligible, key=lambda r: (r["trait_gain"], -abs(r["coefficient"]))) if eligible else None
    results = {
        "trait": trait.name,
        "inputs_key": key,
        "vector": {
            "file": str(vector_file),
            "method": vector.method,
            "position": vector.position,
            "extracted_on": dict(vector.model),
        },
        "steer_model": loaded.describe(),
        "transfer_warnings": transfer_warnings,
        "direction": trait.direction,
        "layers": layers,
        "settings": asdict(settings),
        "coherence_floor": {"requested": settings.coherence_floor, "effective": floor, "note": floor_note},
        "coefficient_unit": "spread (mean norm of mean-centred activations at extraction); sign follows direction",
        "questions": questions,
        "judge": judge_info,
        "smoke_test": bool(getattr(judge, "smoke_test", False)),
        "baseline": {**baseline, "projection": {str(k): v for k, v in base_proj.items()}},
        "runs": runs_out,
        "best": best,
        "responses": [dict(r, round=record["round"]) for record in rounds for r in record["responses"]],
        "usage": judge.usage(),
        "seconds": round(time.perf_counter() - started, 1),
        "traitvec_version": __version__,
    }
    if results["smoke_test"]:
        results["warning"] = "scored by a tiny local judge: a smoke test, not a measurement"
    write_json(results_path, results)
    write_text(folder / "results.md", format_results(results))
    from .plots import plot_steering

    plot_steering(results, folder)
    progress_path.unlink(missing_ok=True)
    return results


BASELINE_MARGIN = 10.0


def effective_floor(requested: float, baseline_coherence: float | None) -> tuple[float, str | None]:
    """The coherence floor the search uses, and why it differs from the requested one (or None).

    Example:
        >>> effective_floor(70, 88.0)
        (70, None)
        >>> effective_floor(70, 39.5)[0]
        29.5
    """
    if baseline_coherence is None or baseline_coherence >= requested:
        return requested, None
    floor = max(0.0, baseline_coherence - BASELINE_MARGIN)
    note = (
        f"the unsteered baseline scores {baseline_coherence:.1f} coherence, under the floor {requested:g}; "
        f"the search uses {floor:.1f} ({BASELINE_MARGIN:g} under the baseline) instead"
    )
    return floor, note


def _coherent(responses: list[dict[str, Any]], floor: float) -> bool:
    mean = _summary(responses)["coherence"]["mean"]
    return mean is not None and mean >= floor


def _summary(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """Trait and coherence summaries (n, n_ok, n_failed, n_abstained, mean, ci95) of recorded responses."""
    from .judge import JudgeScore, summarize

    return {kind: summarize([JudgeScore(**r[kind]) for r in responses]).to_dict() for kind in ("trait", "coherence")}


def _projections(
    loaded: LoadedModel, vector: TraitVector, generations: list[Generation], layers: list[int]
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


def _mean_projection(responses: list[dict[str, Any]], layer: int) -> float | None:
    values = [r["projections"][str(layer)] for r in responses if r.get("projections")]
    return sum(values) / len(values) if values else None


def _checkpoint(path: Path, key: str, rounds: list[dict[str, Any]]) -> None:
    write_json(path, {"inputs_key": key, "rounds": rounds})


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _floor_text(results: dict[str, Any]) -> str:
    requested, effective = results["coherence_floor"]["requested"], results["coherence_floor"]["effective"]
    if effective == requested:
        return f"{requested:g}"
    return f"{effective:.1f} (requested {requested:g}; the unsteered baseline scores under it)"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_results(results: dict[str, Any]) -> str:
    """``results.md``: the protocol, baseline, every run, the best run and sample answers."""
    base, best = results["baseline"], results["best"]
    lines = [f"# Steering evaluation: {results['trait']}", ""]
    if results.get("smoke_test"):
        lines += ["> **Smoke test, not a measurement:** scored by a tiny local judge.", ""]
    vec = results["vector"]
    lines += [
        f"- vector: `{vec['method']}` at `{vec['position']}`, extracted on {vec['extracted_on'].get('name')}",
        f"- steered model: {results['steer_model']['name']}; layers {results['layers']}; direction "
        f"{results['direction']}",
        f"- judge: {results['judge'].get('name')}; coherence floor {_floor_text(results)}",
        f"- coefficients in spread units; {len(results['questions'])} questions × "
        f"{results['settings']['samples']} sample(s)",
        "",
        "| layer | coefficient | trait (mean ± CI) | coherence | trait gain | projection gain "
        "| n / failed / abstained |",
        "|---|---|---|---|---|---|---|",
        f"| – | 0 (baseline) | {_fmt(base['trait']['mean'])} | {_fmt(base['coherence']['mean'])} | – | – | "
        f"{base['trait']['n']} / {base['trait']['n_failed']} / {base['trait']['n_abstained']} |",
    ]
    for run in sorted(results["runs"], key=lambda r: (r["layer"], abs(r["coefficient"]))):
        ci = run["trait"]["ci95"]
        trait_cell = _fmt(run["trait"]["mean"]) + (f" ± {(ci[1] - ci[0]) / 2:.1f}" if ci else "")
        mark = " ✓" if run is best or run == best else ""
        lines.append(
            f"| {run['layer']} | {run['coefficient']:+.3g}{mark} | {trait_cell} | {_fmt(run['coherence']['mean'])} | "
            f"{_fmt(run['trait_gain'])} | {_fmt(run['projection_gain'], 2)} | {run['trait']['n']} / "
            f"{run['trait']['n_failed']} / {run['trait']['n_abstained']} |"
        )
    lines.append("")
    if best:
        lines.append(
            f"**Best:** layer {best['layer']}, coefficient {best['coefficient']:+.3g}: trait "
            f"{_fmt(base['trait']['mean'])} → {_fmt(best['trait']['mean'])} at coherence "
            f"{_fmt(best['coherence']['mean'])}; projection gain {_fmt(best['projection_gain'], 2)}."
        )
        examples = [
            r for r in results["responses"] if r["layer"] == best["layer"] and r["coefficient"] == best["coefficient"]
        ][:3]
        baseline_answers = {
            r["question_index"]: r for r in results["responses"] if r["coefficient"] == 0 and r["sample"] == 0
        }
        for r in examples:
            b = baseline_answers.get(r["question_index"])
            lines += [
                "",
                f"**Q:** {r['question']}",
                f"- baseline: {(b or {}).get('text', '').strip()!r}",
                f"- steered: {r['text'].strip()!r}",
            ]
    else:
        lines.append(
            "**No coherent run improved on the baseline**: lower the coherence floor, try other layers, "
            "or check the vector's evaluation."
        )
    return "\n".join(lines) + "\n"
