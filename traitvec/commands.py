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
