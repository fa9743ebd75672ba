"""``traitvec traits``, ``traitvec models`` and ``traitvec audit``: the data and models a run starts from."""

from __future__ import annotations

import argparse
import sys

from .._io import write_json
from ..embedded import EMBEDDED_MODELS, cache_dir, embedded_model_dir
from ..errors import ConfigError, TraitvecError
from ..render.text import format_table
from ..traits import list_traits, load_trait

__all__ = ["cmd_traits", "cmd_models", "cmd_audit"]


def _trait_names(args: argparse.Namespace, *, resolve: bool = True) -> list[str]:
    """The traits named (``resolve``: folder paths become ``category/trait``), else every trait under the root."""
    from ..stages.preflight import resolve_trait

    given = [resolve_trait(name, args.traits_root) if resolve else name for name in args.traits]
    names = given or list_traits(args.traits_root)
    if not names:
        raise ConfigError(
            f"no trait folders under {args.traits_root}; pass --traits-root or create category/trait folders"
        )
    return names


def cmd_traits(args: argparse.Namespace) -> int:
    """Validate and list traits; exit 2 when any is invalid."""
    from ..stages.preflight import resolve_trait

    rows, errors = [], []
    for name in _trait_names(args, resolve=False):
        try:
            trait = load_trait(resolve_trait(name, args.traits_root), args.traits_root)
        except TraitvecError as err:
            errors.append(f"{name}: {' '.join(str(err).split())}")
            rows.append([name, "-", "-", "-", "INVALID"])
            continue
        form = "jsonl (chat)" if trait.chat else "txt"
        status = "ok" if trait.definition else "ok (no definition.txt)"
        rows.append([name, str(trait.n_pairs), str(len(trait.questions)), form, status])
    print(format_table(rows, ["trait", "pairs", "questions", "form", "status"]))
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
    print(format_table(rows, ["model", "what", "cached", "source"]))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the audit's text report; exit 1 when any error-level check fails, else 0.

    Unknown traits raise :class:`~traitvec.errors.TraitvecError` (the CLI exits 2).
    """
    from ..audit import audit_traits, format_reports, reports_to_dict

    reports = audit_traits(_trait_names(args), args.traits_root)
    print(format_reports(reports))
    if args.json:
        write_json(args.json, reports_to_dict(reports))
        print(f"JSON report written to {args.json}")
    return 1 if any(r.errors for r in reports) else 0
