"""Scenario vetting: does the base model actually continue each prefill in the intended direction?

For every positive and negative prefill the experiment's model writes a greedy continuation of
16–32 tokens (exact token ids kept; the prefill is never re-joined with the text by string
concatenation for the model), and the judge scores only the continuation, with the prefill shown
as context. Reported: per-scenario scores, positive mean, negative mean, their separation with a
pair-bootstrap 95% interval, pass when the separation exceeds the threshold (default 25), and
the failing scenarios — a positive scoring under 50 or a negative at or over 50 — with their
text. ``vetting.json`` also records, per pair, whether both sides passed, which vetted-only
extraction (``run_pipeline(vetted_only=True)``) uses.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import __version__
from .._io import write_json
from ..errors import ConfigError
from ..experiments import ExperimentConfig
from ..generation import Generation, generate
from ..judge import Judge, JudgeScore, summarize
from ..models import LoadedModel, ModelPool
from ..prompting import encode_prefill
from ..traits import Prompt, Trait
from .judge_record import judge_for_trait, usage_since
from .layout import OutputLayout
from .resume import inputs_key, read_if_current

__all__ = ["VetSettings", "vet_trait", "bootstrap_separation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VetSettings:
    """Vetting settings.

    Attributes:
        tokens: continuation length (16–32).
        threshold: separation (points) needed to pass.
        pass_score: a positive fails under it, a negative at or over it.
        bootstrap: bootstrap resamples for the interval.
        seed: bootstrap seed.

    Raises:
        ConfigError: a length outside 16–32 or a pass score outside 0–100.
    """

    tokens: int = 24
    threshold: float = 25.0
    pass_score: float = 50.0
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.tokens <= 32:
            raise ConfigError(
                f"VetSettings.tokens = {self.tokens}: vetting continuations are 16-32 tokens",
                setting="VetSettings.tokens",
            )
        if not 0 <= self.pass_score <= 100:
            raise ConfigError(
                f"VetSettings.pass_score = {self.pass_score}: use a score between 0 and 100",
                setting="VetSettings.pass_score",
            )


def bootstrap_separation(
    positive: Sequence[float | None], negative: Sequence[float | None], *, reps: int = 2000, seed: int = 0
) -> tuple[float | None, tuple[float, float] | None]:
    """Separation (mean positive − mean negative over scored items) and a pair-bootstrap 95% interval.

    Pairs are resampled with replacement; unscored items (failed or abstained) are left out of
    each mean, never counted as 0.

    Example:
        >>> bootstrap_separation([80, 70, None], [20, 30, 10])[0]
        55.0
    """
    pos = np.array([np.nan if s is None else s for s in positive], dtype=float)
    neg = np.array([np.nan if s is None else s for s in negative], dtype=float)
    if np.isnan(pos).all() or np.isnan(neg).all():
        return None, None
    point = float(np.nanmean(pos) - np.nanmean(neg))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pos), size=(reps, len(pos)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample may hold no scored item
        samples = np.nanmean(pos[idx], axis=1) - np.nanmean(neg[idx], axis=1)
    samples = samples[np.isfinite(samples)]
    if len(samples) < reps // 2:
        return point, None
    low, high = np.percentile(samples, [2.5, 97.5])
    return point, (float(low), float(high))


def vet_trait(
    trait: Trait,
    config: ExperimentConfig,
    pool: ModelPool,
    judge: Judge,
    *,
    settings: VetSettings | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Vet every scenario of ``trait`` on ``config``'s model; write and return ``vetting.json``.

    Args:
        trait: the trait.
        config: the experiment (its model writes the continuations).
        pool: loads the model when the report is not current.
        judge: scores the continuations.
        settings: lengths and thresholds.
        force: redo even when ``vetting.json`` is current.
        show_progress: progress bars.

    Example:
        >>> report = vet_trait(trait, config, ModelPool(), make_judge())
        >>> report["separation"], report["n_pairs_passed"]
    """
    settings = settings or VetSettings()
    path = OutputLayout(config.path).extraction(trait.name).vetting_json
    fingerprint = pool.fingerprint(config)
    model_key = pool.model_key(config)
    judge_info = judge_for_trait(judge.describe(), trait.name)
    key = inputs_key(
        {
            "trait_hash": trait.files_hash,
            "model": fingerprint,
            "settings": asdict(settings),
            "judge": {k: judge_info.get(k) for k in ("name", "prompt_hashes")},
            "format": 1,
        }
    )
    # An unknown fingerprint (a hub model not loaded yet) cannot prove the report current.
    previous = read_if_current(path, key, force=force or fingerprint is None)
    if previous is not None:
        logger.info("%s: vetting is current (%s)", trait.name, path)
        return previous
    if trait.definition is None and trait.eval_prompt is None:
        raise ConfigError(f"{trait.path}: vetting needs definition.txt (the judge's rubric)")
    loaded = pool.get(config)
    started, usage_before = time.perf_counter(), judge.usage()
    prompts = list(trait.positive) + list(trait.negative)
    generations = _continuations(trait, prompts, loaded, settings, show_progress)
    prefills = [p.text if p.system_prompt is None else f"{p.system_prompt}\n\n{p.text}" for p in prompts]
    scores = judge.score_continuations(trait, prefills, [g.text for g in generations])
    report = {
        "trait": trait.name,
        "trait_hash": trait.files_hash,
        "inputs_key": key,
        "model": loaded.describe(),
        "model_key": model_key,
        "judge": judge_info,
        "smoke_test": bool(judge.smoke_test),
        "settings": asdict(settings),
        **_verdict(trait, scores, generations, settings),
        "usage": usage_since(judge.usage(), usage_before),
        "seconds": round(time.perf_counter() - started, 1),
        "traitvec_version": __version__,
    }
    if report["smoke_test"]:
        report["warning"] = "scored by a tiny local judge: a smoke test, not a measurement"
    write_json(path, report)
    return report


def _continuations(
    trait: Trait, prompts: Sequence[Prompt], loaded: LoadedModel, settings: VetSettings, show_progress: bool
) -> list[Generation]:
    """Greedy continuations of every prefill."""
    encoded = [encode_prefill(loaded, p, chat=trait.chat) for p in prompts]
    logger.info("%s: %d continuations of %d tokens from %s", trait.name, len(encoded), settings.tokens, loaded.name)
    return generate(
        loaded, encoded, max_new_tokens=settings.tokens, show_progress=show_progress, desc="vetting continuations"
    )


def _verdict(
    trait: Trait, scores: Sequence[JudgeScore], generations: Sequence[Generation], settings: VetSettings
) -> dict[str, Any]:
    """Class summaries, separation and its interval, verdict, and every scenario (failing ones also listed apart)."""
    n = trait.n_pairs
    pos_scores, neg_scores = scores[:n], scores[n:]
    pos_values = [s.score if s.ok else None for s in pos_scores]
    neg_values = [s.score if s.ok else None for s in neg_scores]
    separation, interval = bootstrap_separation(pos_values, neg_values, reps=settings.bootstrap, seed=settings.seed)
    scenarios: list[dict[str, Any]] = []
    failing: list[dict[str, Any]] = []
    pair_passed: list[bool] = []
    for i in range(n):
        for side, prompt, score, gen in (
            ("positive", trait.positive[i], pos_scores[i], generations[i]),
            ("negative", trait.negative[i], neg_scores[i], generations[n + i]),
        ):
            value = score.score if score.ok else None
            ok = value is not None and (
                value >= settings.pass_score if side == "positive" else value < settings.pass_score
            )
            entry = {
                "line": trait.lines[i],
                "side": side,
                "prefill": prompt.text,
                "continuation": gen.text,
                "continuation_tokens": list(gen.tokens),
                "score": score.score,
                "status": score.status,
                "mode": score.mode,
                "reason": score.reason,
                "passed": bool(ok),
            }
            scenarios.append(entry)
            if not ok:
                failing.append(entry)
        pair_passed.append(all(e["passed"] for e in scenarios[-2:]))
    return {
        "positive": summarize(pos_scores).to_dict(),
        "negative": summarize(neg_scores).to_dict(),
        "separation": separation,
        "separation_ci95": list(interval) if interval else None,
        "passed": separation is not None and separation > settings.threshold,
        "n_pairs": n,
        "n_pairs_passed": int(sum(pair_passed)),
        "pair_passed": pair_passed,
        "failing": failing,
        "scenarios": scenarios,
    }
