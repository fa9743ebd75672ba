"""From parsed arguments to library settings, and from library setting names back to flags.

Library errors name the setting they are about (``ExtractionSettings.backend = 'x' is not one of
hooks, nnsight``, with ``setting="ExtractionSettings.backend"``); :func:`flag_message` rewrites
every setting spelling of :data:`FLAGS` in a message to its flag (``--backend 'x' is not one of
hooks, nnsight``) when the command line reports it.

The stage modules load torch, so they are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from ..errors import ConfigError, JudgeError, TraitvecError

if TYPE_CHECKING:
    from ..capture import Position
    from ..experiments import ExperimentConfig
    from ..judge import Judge, JudgeSettings
    from ..stages.extract import ExtractionSettings
    from ..stages.steer import SteeringSettings
    from ..stages.vet import VetSettings

__all__ = [
    "FLAGS",
    "flag_message",
    "parse_list",
    "parse_layers",
    "extraction_settings",
    "steering_settings",
    "vet_settings",
    "judge_from_args",
    "judge_factory",
    "judge_settings",
]

FLAGS: dict[str, str] = {
    # extraction (traitvec run / extract)
    "ExtractionSettings.positions": "--position",
    "ExtractionSettings.methods": "--methods",
    "ExtractionSettings.layers": "--layers",
    "ExtractionSettings.response_tokens": "--response-tokens",
    "ExtractionSettings.answer_tokens": "--answer-tokens",
    "ExtractionSettings.backend": "--backend",
    # steering evaluation (traitvec run); the vector's method and position come from --methods / --position
    "SteeringSettings.method": "--methods",
    "SteeringSettings.position": "--position",
    "SteeringSettings.layers": "--steer-layers",
    "SteeringSettings.n_layers": "--n-layers",
    "SteeringSettings.coherence_floor": "--coherence-floor",
    "SteeringSettings.max_new_tokens": "--max-new-tokens",
    "SteeringSettings.questions": "--questions",
    "SteeringSettings.samples": "--samples",
    "SteeringSettings.search_steps": "--search-steps",
    "SteeringSettings.fluency_margin": "--fluency-margin",
    "SteeringSettings.repetition_ceiling": "--repetition-ceiling",
    "SteeringSettings.prompting_baseline": "--no-prompting-baseline",
    # scenario vetting (traitvec vet)
    "VetSettings.tokens": "--tokens",
    "VetSettings.threshold": "--threshold",
    "VetSettings.pass_score": "--pass-score",
    # the pipeline's own switches
    "run_pipeline(steer_experiment=)": "--steer-experiment",
    "run_pipeline(vetting=)": "--vet",
    "run_pipeline(vetted_only=)": "--vetted-only",
    "run_pipeline(steering=)": "--no-steering",
    "run_pipeline(force=)": "--force",
    "run_pipeline(batch_traits=)": "--no-batch-traits",
    # the executor (traitvec run --executor ray)
    "make_executor(kind=)": "--executor",
    "make_executor(address=)": "--ray-address",
    "make_executor(num_gpus_per_task=)": "--gpus-per-task",
    "RayExecutor(num_gpus_per_task=)": "--gpus-per-task",
    "run_pipeline_tasks(traits=)": "--traits",
    # monitor, compare, import-pairs
    "run_monitor(input=)": "--input",
    "run_monitor(name=)": "--name",
    "run_monitor(traits=)": "--traits",
    "run_compare(experiments=)": "--experiments",
    "run_compare(name=)": "--name",
    "ReadoutChoice.method": "--method",
    "ReadoutChoice.position": "--position",
    "ReadoutChoice.layers": "--layer",
    "MonitorSettings.rank_by": "--rank-by",
    "MonitorSettings.top": "--top",
    "MonitorSettings.report_texts": "--report-texts",
    "GenerateSettings.max_new_tokens": "--max-new-tokens",
    "GenerateSettings.steer": "--steer",
    "GenerateSettings.coefficient": "--coefficient",
    "GenerateSettings.layer": "--steer-layer",
    "import_pairs(path=)": "FILE",
    "import_pairs(format=)": "--format",
    "import_pairs(behavior=)": "--behavior",
    "import_pairs(out=)": "--out",
    "import_pairs(skip_bad=)": "--skip-bad",
    "import_pairs(holdout=)": "--holdout",
    "import_pairs(overwrite=)": "--overwrite",
    # where things are
    "load_trait(root=)": "--traits-root",
    "load_trait(name=)": "--traits",
    "list_traits(root=)": "--traits-root",
    "run_pipeline(traits_root=)": "--traits-root",
    "load_experiment(root=)": "--experiments-root",
    "list_experiments(root=)": "--experiments-root",
    "run_pipeline(experiments_root=)": "--experiments-root",
    # the judge (make_judge's arguments, and the fields of the judge settings object)
    "make_judge(model=)": "--judge-model",
    "make_judge(base_url=)": "--judge-base-url",
    "make_judge(concurrency=)": "--judge-concurrency",
    "make_judge(cache_path=)": "--judge-cache",
    "make_judge(text_mode=)": "--judge-text-mode",
    "make_judge(local=)": "--local-judge",
    "JudgeSettings.model": "--judge-model",
    "JudgeSettings.base_url": "--judge-base-url",
    "JudgeSettings.concurrency": "--judge-concurrency",
    "JudgeSettings.cache": "--judge-cache",
    "JudgeSettings.text_mode": "--judge-text-mode",
    "JudgeSettings.local": "--local-judge",
}
"""Library setting spelling → command-line flag, for error messages."""


def flag_message(err: TraitvecError) -> str:
    """The error's message with every setting spelling of :data:`FLAGS` replaced by its flag.

    ``Setting = value`` becomes ``--flag value``, so messages read as the command line is typed.

    Example:
        >>> flag_message(ConfigError("VetSettings.tokens = 8: use 16-32", setting="VetSettings.tokens"))
        '--tokens 8: use 16-32'
    """
    text = str(err)
    for name in sorted(FLAGS, key=len, reverse=True):
        if name in text:
            text = text.replace(f"{name} = ", f"{FLAGS[name]} ").replace(name, FLAGS[name])
    return text


def parse_list(value: str | Sequence[str] | None, kind: str) -> tuple[str, ...] | None:
    """Split a comma-separated (and possibly repeated) flag value: ``["mean-diff,probe"]`` → ``("mean-diff", "probe")``.

    ``None`` when the flag was not given; an error naming ``--{kind}`` when it holds nothing.
    """
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out = tuple(x.strip() for item in items for x in item.split(",") if x.strip())
    if not out:
        raise ConfigError(f"--{kind} is empty")
    return out


def parse_layers(value: str | None, flag: str = "--layers") -> tuple[int, ...] | None:
    """``"4,6,8"`` → ``(4, 6, 8)``; ``None`` or ``"all"`` → ``None``."""
    if value is None or value.strip() == "all":
        return None
    try:
        layers = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: use comma-separated integers such as 4,6,8, or 'all'") from None
    if not layers:
        raise ConfigError(f"{flag} is empty")
    return layers


def extraction_settings(args: argparse.Namespace, config: ExperimentConfig) -> ExtractionSettings:
    """``--position``, ``--methods``, ``--layers`` (default: the experiment's), ``--response-tokens``, ``--backend``."""
    from ..stages.extract import DEFAULT_METHODS, ExtractionSettings

    positions = parse_list(args.position, "position")  # None: the defaults of each trait's form
    methods = parse_list(args.methods, "methods") or DEFAULT_METHODS
    layers = parse_layers(args.layers) if args.layers else config.layers
    return ExtractionSettings(
        positions=cast("tuple[Position, ...] | None", positions),  # checked by ExtractionSettings
        methods=methods,
        layers=layers,
        response_tokens=args.response_tokens,
        answer_tokens=getattr(args, "answer_tokens", 5),
        max_batch_tokens=config.max_batch_tokens,
        backend=args.backend,
    )


def steering_settings(args: argparse.Namespace) -> SteeringSettings:
    """The steering-evaluation flags; the vector is the first ``--methods`` at the first ``--position``."""
    from ..stages.fluency_guard import FLUENCY_MARGIN, REPETITION_CEILING
    from ..stages.steer import SteeringSettings

    methods = parse_list(getattr(args, "methods", None), "methods")
    positions = parse_list(getattr(args, "position", None), "position")
    steer_layers = getattr(args, "steer_layers", None)
    return SteeringSettings(
        method=methods[0] if methods else "mean-diff",
        position=positions[0] if positions else None,
        layers=parse_layers(steer_layers, "--steer-layers") if steer_layers else None,
        n_layers=args.n_layers,
        coherence_floor=args.coherence_floor,
        max_new_tokens=args.max_new_tokens,
        questions=args.questions,
        samples=args.samples,
        search_steps=args.search_steps,
        fluency_margin=getattr(args, "fluency_margin", FLUENCY_MARGIN),
        repetition_ceiling=getattr(args, "repetition_ceiling", REPETITION_CEILING),
        prompting_baseline=not getattr(args, "no_prompting_baseline", False),
    )


def vet_settings(args: argparse.Namespace) -> VetSettings:
    """``--tokens``, ``--threshold``, ``--pass-score``."""
    from ..stages.vet import VetSettings

    return VetSettings(tokens=args.tokens, threshold=args.threshold, pass_score=args.pass_score)


def judge_from_args(args: argparse.Namespace) -> Judge:
    """:func:`~traitvec.judge.make_judge` from the ``--judge-*`` / ``--local-judge`` options of a command."""
    from ..judge import make_judge

    concurrency = args.judge_concurrency
    if concurrency is None or concurrency < 1:
        raise JudgeError(f"--judge-concurrency is {concurrency}; give a positive number of requests in flight")
    return make_judge(
        args.judge_model,
        base_url=args.judge_base_url,
        local=args.local_judge,
        cache_path=args.judge_cache,
        concurrency=concurrency,
        text_mode=args.judge_text_mode,
    )


def judge_settings(args: argparse.Namespace) -> JudgeSettings:
    """:class:`~traitvec.judge.JudgeSettings` from the ``--judge-*`` / ``--local-judge`` options (nothing built yet)."""
    from ..judge import JudgeSettings

    return JudgeSettings(
        model=args.judge_model,
        base_url=args.judge_base_url,
        local=args.local_judge,
        cache=args.judge_cache,
        concurrency=args.judge_concurrency,
        text_mode=args.judge_text_mode,
    )


def judge_factory(args: argparse.Namespace) -> Callable[[], Judge]:
    """A function that makes the judge of the ``--judge-*`` options when a stage first needs it."""
    return lambda: judge_from_args(args)
