"""The per-trait pipeline behind ``traitvec run`` / ``extraction/run_pipeline.py`` and ``traitvec extract``.

For each trait: (scenario vetting, when asked) → extraction (activations, vectors, evaluation)
→ steering evaluation on the steer experiment's model. Each stage skips itself when its outputs
exist and their recorded inputs are unchanged, so an interrupted run resumes where it stopped;
models load only when a stage needs them. Every trait is validated before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, TraitvecError
from .experiments import ExperimentConfig, load_experiment
from .extraction import (
    DEFAULT_METHODS,
    DEFAULT_POSITIONS,
    ExtractionResult,
    ExtractionSettings,
    extract_trait,
    parse_list,
)
from .judge import judge_from_args
from .models import LoadedModel, load_model
from .traits import Trait, load_trait

__all__ = ["ModelPool", "run_pipeline", "cmd_run", "cmd_extract", "parse_layers", "format_table"]

logger = logging.getLogger(__name__)


class ModelPool:
    """Loads each experiment's model once, on first use."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def get(self, config: ExperimentConfig) -> LoadedModel:
        key = config.name
        if key not in self._models:
            logger.info("loading %s (%s) for experiment %s", config.model, config.dtype, config.name)
            self._models[key] = load_model(config)
        return self._models[key]

    def fingerprint(self, config: ExperimentConfig) -> str | None:
        """The model's fingerprint without loading it, when cheaply known (embedded or local models)."""
        from .embedded import cache_dir, is_embedded, source_fingerprint

        if config.name in self._models:
            return self._models[config.name].fingerprint
        if is_embedded(config.model):
            for folder in sorted((cache_dir() / "models").glob(f"{config.model}-v*")):
                found = source_fingerprint(folder)
                if found:
                    return f"gguf-sha256:{found}"
        return None


def parse_layers(value: str | None) -> tuple[int, ...] | None:
    """``"4,6,8"`` → ``(4, 6, 8)``; ``None`` or ``"all"`` → ``None``."""
    if value is None or value.strip() == "all":
        return None
    try:
        layers = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--layers {value!r}: use comma-separated integers such as 4,6,8, or 'all'") from None
    if not layers:
        raise ConfigError("--layers is empty")
    return layers


def _settings(args: argparse.Namespace, config: ExperimentConfig) -> ExtractionSettings:
    positions = parse_list(args.position, "position") or DEFAULT_POSITIONS
    methods = parse_list(args.methods, "methods") or DEFAULT_METHODS
    layers = parse_layers(args.layers) if args.layers else config.layers
    return ExtractionSettings(
        positions=positions,
        methods=methods,
        layers=layers,
        response_tokens=args.response_tokens,
        max_batch_tokens=config.max_batch_tokens,
        backend=args.backend,
    )


def _load_traits(names: list[str], root: str) -> list[Trait]:
    traits, errors = [], []
    for name in names:
        try:
            traits.append(load_trait(name, root))
        except TraitvecError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError(" | ".join(errors))
    return traits


def _vetted(trait: Trait, folder: Path) -> Trait:
    path = folder / "vetting.json"
    if not path.is_file():
        raise ConfigError(f"--vetted-only needs {path}; run `traitvec vet` (or add --vet) first")
    data = json.loads(path.read_text())
    if data.get("trait_hash") != trait.files_hash:
        raise ConfigError(f"{path} was made from other trait files; rerun vetting (add --vet)")
    keep = [i for i, ok in enumerate(data["pair_passed"]) if ok]
    if len(keep) < 3:
        raise ConfigError(f"{path}: only {len(keep)} pairs passed vetting; fix the failing scenarios listed there")
    logger.info("%s: using %d of %d pairs that passed vetting", trait.name, len(keep), trait.n_pairs)
    return trait.select(keep)


@dataclass
class TraitRun:
    """What the pipeline produced for one trait (one row of the final table)."""

    trait: str
    extraction: ExtractionResult | None = None
    steering: dict[str, Any] | None = None
    vetting: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def run_pipeline(args: argparse.Namespace, *, show_progress: bool = True) -> list[TraitRun]:
    """Run every stage for every trait named in ``args`` (see :func:`traitvec.cli.add_pipeline_arguments`)."""
    config = load_experiment(args.experiment, args.experiments_root)
    steer_config = None
    if not args.no_steering:
        steer_config = load_experiment(args.steer_experiment or args.experiment, args.experiments_root)
    traits = _load_traits(args.traits, args.traits_root)
    settings = _settings(args, config)
    pool = ModelPool()
    judge = None
    runs = []
    for trait in traits:
        run = TraitRun(trait.name)
        folder = config.path / "extraction" / trait.name
        if getattr(args, "vet", False):
            from .vetting import VetSettings, vet_trait

            judge = judge or judge_from_args(args)
            report = vet_trait(
                trait, config, pool, judge, settings=VetSettings(), force=args.force, show_progress=show_progress
            )
            run.vetting = report
        use = _vetted(trait, folder) if getattr(args, "vetted_only", False) else trait
        run.extraction = extract_trait(
            use,
            config.path,
            lambda: pool.get(config),
            settings=settings,
            model_fingerprint=pool.fingerprint(config),
            force=args.force,
            show_progress=show_progress,
        )
        if steer_config is not None:
            from .steering_eval import SteeringSettings, run_steering_eval

            judge = judge or judge_from_args(args)
            steering_settings = SteeringSettings.from_args(args)
            run.steering = run_steering_eval(
                trait,
                run.extraction,
                steer_config,
                pool,
                judge,
                settings=steering_settings,
                force=args.force,
                show_progress=show_progress,
            )
        runs.append(run)
    return runs


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def extraction_table(runs: list[TraitRun]) -> str:
    rows = []
    for run in runs:
        assert run.extraction is not None
        for position, ev in run.extraction.evaluations.items():
            for method, layer in ev.recommended.items():
                metric = next(m for m in ev.for_method(method) if m.layer == layer)
                rows.append(
                    [
                        run.trait,
                        position,
                        method,
                        str(layer),
                        _fmt(metric.auroc, 3),
                        _fmt(metric.cohens_d, 2),
                        _fmt(metric.accuracy, 3),
                    ]
                )
    return format_table(rows, ["trait", "position", "method", "best layer", "AUROC", "Cohen's d", "accuracy"])


def steering_table(runs: list[TraitRun]) -> str:
    rows = []
    for run in runs:
        s = run.steering or {}
        best = s.get("best") or {}
        base = s.get("baseline") or {}
        rows.append(
            [
                run.trait,
                _fmt(best.get("layer")),
                _fmt(best.get("coefficient"), 2),
                _fmt(base.get("trait", {}).get("mean")),
                _fmt(best.get("trait", {}).get("mean")),
                _fmt(best.get("coherence", {}).get("mean")),
                _fmt(best.get("projection_gain"), 2),
                "yes" if s.get("smoke_test") else "no",
            ]
        )
    header = [
        "trait",
        "layer",
        "coef",
        "baseline trait",
        "steered trait",
        "coherence",
        "projection gain",
        "smoke-test judge",
    ]
    return format_table(rows, header)


def cmd_run(args: argparse.Namespace) -> int:
    """``traitvec run`` / ``extraction/run_pipeline.py``."""
    runs = run_pipeline(args, show_progress=sys.stderr.isatty())
    print("\nExtraction (held-out, recommended layer per method):")
    print(extraction_table(runs))
    if not args.no_steering:
        print("\nSteering (best coefficient under the coherence floor; projection gain in spread units):")
        print(steering_table(runs))
        if any((r.steering or {}).get("smoke_test") for r in runs):
            print(
                "\nWARNING: scored by a tiny local judge: these numbers are a smoke test, not a measurement. "
                "Set OPENAI_API_KEY (and OPENAI_BASE_URL for another server) for real judging."
            )
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """``traitvec extract``."""
    args.no_steering = True
    args.vet = False
    runs = run_pipeline(args, show_progress=sys.stderr.isatty())
    print(extraction_table(runs))
    for run in runs:
        assert run.extraction is not None
        print(f"{run.trait}: {run.extraction.folder}")
    return 0
