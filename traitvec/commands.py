"""Handlers of the ``traitvec`` subcommands (argument parsing lives in :mod:`traitvec.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys

from .embedded import EMBEDDED_MODELS, cache_dir, embedded_model_dir
from .errors import ConfigError, TraitvecError
from .traits import list_traits, load_trait

logger = logging.getLogger(__name__)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def cmd_traits(args: argparse.Namespace) -> int:
    """Validate and list traits; exit 2 when any is invalid."""
    names = args.traits or list_traits(args.traits_root)
    if not names:
        raise ConfigError(
            f"no trait folders under {args.traits_root}; pass --traits-root or create category/trait folders"
        )
    rows, errors = [], []
    for name in names:
        try:
            trait = load_trait(name, args.traits_root)
        except TraitvecError as err:
            errors.append(f"{name}: {' '.join(str(err).split())}")
            rows.append([name, "-", "-", "-", "INVALID"])
            continue
        form = "jsonl (chat)" if trait.chat else "txt"
        rows.append(
            [
                name,
                str(trait.n_pairs),
                str(len(trait.questions)),
                form,
                "ok" if trait.definition else "ok (no definition.txt)",
            ]
        )
    print(_table(rows, ["trait", "pairs", "questions", "form", "status"]))
    for message in errors:
        print(f"traitvec: error: {message}", file=sys.stderr)
    return 2 if errors else 0


def cmd_models(args: argparse.Namespace) -> int:
    """List embedded models, or convert them now."""
    if args.prepare is not None:
        for name in args.prepare or list(EMBEDDED_MODELS):
            folder = embedded_model_dir(name)
            print(f"{name}: ready at {folder}")
        return 0
    rows = []
    for name, info in EMBEDDED_MODELS.items():
        cached = any((cache_dir() / "models").glob(f"{name}-v*/traitvec-source.json"))
        rows.append([name, info.description, "yes" if cached else "no (converted on first use)", info.source])
    print(_table(rows, ["model", "what", "cached", "source"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``traitvec export-gguf``: a vector as a llama.cpp control vector."""
    from .pipeline import parse_layers
    from .vectors import TraitVector

    vector = TraitVector.load(args.vector)
    layers = parse_layers(args.layers) if args.layers else None
    path = vector.to_gguf(
        args.out, layers=layers, coefficient=args.coefficient, scale="absolute" if args.absolute else "spread"
    )
    exported = [i for i in (layers or vector.layers) if i != 0]
    print(
        f"{path}: {vector.trait} {vector.name}, layers {exported}, coefficient {args.coefficient:g} "
        f"({'absolute' if args.absolute else 'spread units'})"
    )
    return 0


def cmd_steer(args: argparse.Namespace) -> int:
    """``traitvec steer``: baseline and steered answers, all configurations in one generate call."""
    from .experiments import load_experiment
    from .generation import generate
    from .models import load_model
    from .prompting import PLAIN_STOP
    from .steering import Steer
    from .vectors import TraitVector

    config = load_experiment(args.experiment, args.experiments_root)
    vector = TraitVector.load(args.vector)
    loaded = load_model(config)
    vector.check_model(loaded)
    scale = "absolute" if args.absolute else "spread"
    configs = [[]] + [[Steer(vector, args.layer, c, args.mode, args.positions, scale)] for c in args.coefficient]
    prompts = [q for _ in configs for q in args.questions]
    rows = [c for c in configs for _ in args.questions]
    stop = () if loaded.use_chat_template else (PLAIN_STOP,)
    answers = generate(loaded, prompts, max_new_tokens=args.max_new_tokens, steering=rows, stop_strings=stop)
    for qi, question in enumerate(args.questions):
        print(f"Q: {question}")
        for ci, config in enumerate(configs):
            label = "baseline" if not config else f"layer {args.layer} × {config[0].coefficient:+g} ({args.mode})"
            print(f"  [{label}] {' '.join(answers[ci * len(args.questions) + qi].text.split())}")
    return 0
