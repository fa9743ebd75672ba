"""Scenario vetting: does the base model actually continue each prefill in the intended direction?

For every positive and negative prefill the experiment's model writes a greedy continuation of
16–32 tokens (exact token ids kept; the prefill is never re-joined with the text by string
concatenation for the model), and the judge scores only the continuation, with the prefill shown
as context. Reported: per-scenario scores, positive mean, negative mean, their separation with a
pair-bootstrap 95% interval, pass when the separation exceeds the threshold (default 25), and
the failing scenarios — a positive scoring under 50 or a negative at or over 50 — with their
text. ``vetting.json`` also records, per pair, whether both sides passed, which
``--vetted-only`` extraction uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import __version__
from ._io import sha256_text, write_json
from .errors import ConfigError
from .experiments import ExperimentConfig, load_experiment
from .generation import generate
from .prompting import encode_prefill
from .traits import Trait, load_trait

__all__ = ["VetSettings", "vet_trait", "bootstrap_separation", "format_vetting", "cmd_vet"]

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
    """

    tokens: int = 24
    threshold: float = 25.0
    pass_score: float = 50.0
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.tokens <= 32:
            raise ConfigError(f"--tokens {self.tokens}: vetting continuations are 16-32 tokens")
        if not 0 <= self.pass_score <= 100:
            raise ConfigError(f"--pass-score {self.pass_score}: use a score between 0 and 100")


def bootstrap_separation(
    positive: list[float | None], negative: list[float | None], *, reps: int = 2000, seed: int = 0
) -> tuple[float | None, tuple[float, float] | None]:
    """Separation (mean positive − mean negative over scored items) and a pair-bootstrap 95% interval.

    Pairs are resampled with replacement; unscored items (failed or abstained) are left out of
    each mean, never counted as 0.
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
    pool: Any,
    judge: Any,
    *,
    settings: VetSettings | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Vet every scenario of ``trait`` on ``config``'s model; write and return ``vetting.json``.

    Args:
        trait: the trait.
        config: the experiment (its model writes the continuations).
        pool: a :class:`traitvec.pipeline.ModelPool` (loads the model when needed).
        judge: a :class:`traitvec.judge.Judge`.
        settings: lengths and thresholds.
        force: redo even when ``vetting.json`` is current.
        show_progress: progress bars.
    """
    settings = settings or VetSettings()
    path = config.path / "extraction" / trait.name / "vetting.json"
    fingerprint = pool.fingerprint(config)
    judge_info = judge.describe()
    key_inputs = {
        "trait_hash": trait.files_hash,
        "model": fingerprint,
        "settings": asdict(settings),
        "judge": {k: judge_info.get(k) for k in ("name", "prompt_hashes")},
        "format": 1,
    }
    key = sha256_text(json.dumps(key_inputs, sort_keys=True, default=str))[:24]
    if not force and fingerprint is not None and path.is_file():
        try:
            previous = json.loads(path.read_text())
            if previous.get("inputs_key") == key:
                logger.info("%s: vetting is current (%s)", trait.name, path)
                return previous
        except json.JSONDecodeError:
            pass
    if trait.definition is None and trait.eval_prompt is None:
        raise ConfigError(f"{trait.path}: vetting needs definition.txt (the judge's rubric)")
    loaded = pool.get(config)
    started = time.perf_counter()
    prompts = list(trait.positive) + list(trait.negative)
    encoded = [encode_prefill(loaded, p, chat=trait.chat) for p in prompts]
    logger.info("%s: %d continuations of %d tokens from %s", trait.name, len(encoded), settings.tokens, loaded.name)
    generations = generate(
        loaded, encoded, max_new_tokens=settings.tokens, show_progress=show_progress, desc="vetting continuations"
    )
    continuations = [g.text for g in generations]
    prefills = [p.text if p.system_prompt is None else f"{p.system_prompt}\n\n{p.text}" for p in prompts]
    scores = judge.score_continuations(trait, prefills, continuations)
    n = trait.n_pairs
    pos_scores, neg_scores = scores[:n], scores[n:]
    pos_values = [s.score if s.ok else None for s in pos_scores]
    neg_values = [s.score if s.ok else None for s in neg_scores]
    separation, interval = bootstrap_separation(pos_values, neg_values, reps=settings.bootstrap, seed=settings.seed)
    scenarios, failing, pair_passed = [], [], []
    for i in range(n):
        for side, prompt, score, gen in (
            ("positive", trait.positive[i], pos_scores[i], generations[i]),
            ("negative", trait.negative[i], neg_scores[i], generations[n + i]),
        ):
            ok = score.ok and (
                score.score >= settings.pass_score if side == "positive" else score.score < settings.pass_score
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
    from .judge import summarize

    report = {
        "trait": trait.name,
        "trait_hash": trait.files_hash,
        "inputs_key": key,
        "model": loaded.describe(),
        "judge": judge_info,
        "smoke_test": bool(getattr(judge, "smoke_test", False)),
        "settings": asdict(settings),
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
        "usage": judge.usage(),
        "seconds": round(time.perf_counter() - started, 1),
        "traitvec_version": __version__,
    }
    if report["smoke_test"]:
        report["warning"] = "scored by a tiny local judge: a smoke test, not a measurement"
    write_json(path, report)
    return report


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_vetting(report: dict[str, Any], *, max_failing: int = 40) -> str:
    """A readable summary: class means, separation, verdict and the failing scenarios."""
    pos, neg = report["positive"], report["negative"]
    sep, ci = report["separation"], report["separation_ci95"]
    lines = [
        f"{report['trait']}: scenario vetting on {report['model']['name']}, judge {report['judge'].get('name')}",
        f"  positive mean {_num(pos['mean'])}  {_counts(pos)}",
        f"  negative mean {_num(neg['mean'])}  {_counts(neg)}",
        f"  separation    {_num(sep)}  95% CI {('[' + _num(ci[0]) + ', ' + _num(ci[1]) + ']') if ci else '-'}"
        f"  -> {'PASS' if report['passed'] else 'FAIL'} (needs > {report['settings']['threshold']:g})",
        f"  pairs with both sides passing: {report['n_pairs_passed']} / {report['n_pairs']}",
    ]
    failing = report["failing"]
    if failing:
        lines.append(
            f"  failing scenarios ({len(failing)}; positive < {report['settings']['pass_score']:g}, "
            f"negative >= {report['settings']['pass_score']:g}, or unscored):"
        )
        lines.append(f"    {'line':>4}  {'side':8}  {'score':>5}  prefill → continuation")
        for e in failing[:max_failing]:
            score = _num(e["score"]) if e["score"] is not None else e["status"]
            text = _clip(f"{e['prefill'][-70:]} → {e['continuation']}", 110)
            lines.append(f"    {e['line']:>4}  {e['side']:8}  {score:>5}  {text}")
        if len(failing) > max_failing:
            lines.append(f"    … {len(failing) - max_failing} more in vetting.json")
    if report.get("smoke_test"):
        lines.append("  WARNING: scored by a tiny local judge: a smoke test, not a measurement")
    return "\n".join(lines)


def _counts(summary: dict[str, Any]) -> str:
    return f"(n={summary['n']}, failed {summary['n_failed']}, abstained {summary['n_abstained']})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def cmd_vet(args: argparse.Namespace) -> int:
    """``traitvec vet`` / ``extraction/vet_scenarios.py``: exit 0 on pass, 1 when the separation fails."""
    from .judge import judge_from_args
    from .pipeline import ModelPool

    config = load_experiment(args.experiment, args.experiments_root)
    trait = load_trait(args.trait, args.traits_root)
    settings = VetSettings(tokens=args.tokens, threshold=args.threshold, pass_score=args.pass_score)
    judge = judge_from_args(args)
    report = vet_trait(
        trait, config, ModelPool(), judge, settings=settings, force=args.force, show_progress=sys.stderr.isatty()
    )
    print(format_vetting(report))
    print(f"  written: {config.path / 'extraction' / trait.name / 'vetting.json'}")
    return 0 if report["passed"] else 1
