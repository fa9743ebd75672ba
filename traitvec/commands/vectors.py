"""``traitvec steer`` and ``traitvec export-gguf``: use a saved vector directly."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import ConfigError
from ..steering import Scale, Steer
from .settings import parse_layers

__all__ = ["cmd_steer", "cmd_export"]


def cmd_export(args: argparse.Namespace) -> int:
    """A vector as a llama.cpp control vector."""
    from ..vectors import TraitVector

    out = Path(args.out)
    if out.is_dir() or args.out.endswith(("/", os.sep)):
        raise ConfigError(
            f"--out {args.out} is a folder; give the control-vector file to write, e.g. "
            f"{out / Path(args.vector).with_suffix('.gguf').name}"
        )
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
    """Baseline and steered answers side by side, every configuration in one ``generate`` call."""
    from ..experiments import load_experiment
    from ..generation import generate
    from ..models import load_model
    from ..prompting import PLAIN_STOP
    from ..vectors import TraitVector

    config = load_experiment(args.experiment, args.experiments_root)
    vector = TraitVector.load(args.vector)
    vector.direction(args.layer)  # a layer the vector lacks fails before the model loads
    loaded = load_model(config)
    vector.check_model(loaded)
    scale: Scale = "absolute" if args.absolute else "spread"
    configs: list[list[Steer]] = [[]]
    configs += [[Steer(vector, args.layer, c, args.mode, args.positions, scale)] for c in args.coefficient]
    prompts = [q for _ in configs for q in args.questions]
    rows = [c for c in configs for _ in args.questions]
    stop = () if loaded.use_chat_template else (PLAIN_STOP,)
    answers = generate(loaded, prompts, max_new_tokens=args.max_new_tokens, steering=rows, stop_strings=stop)
    for qi, question in enumerate(args.questions):
        print(f"Q: {question}")
        for ci, config_ in enumerate(configs):
            label = "baseline" if not config_ else f"layer {args.layer} × {config_[0].coefficient:+g} ({args.mode})"
            print(f"  [{label}] {' '.join(answers[ci * len(args.questions) + qi].text.split())}")
    return 0
