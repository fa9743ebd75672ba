"""``traitvec audit``'s handler, kept here until it moves to ``traitvec/commands/``.

Temporary: :func:`main_audit` reads an ``argparse.Namespace`` and prints, which the library does
not do; the command-line layer takes it over, and then this module goes. :mod:`traitvec.audit`
exports it lazily, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._io import write_json
from ..errors import ConfigError
from ..traits import list_traits
from .report import format_reports, reports_to_dict
from .run import audit_traits

if TYPE_CHECKING:
    import argparse

__all__ = ["main_audit"]


def main_audit(args: argparse.Namespace) -> int:
    """``traitvec audit``: print the text report; exit 1 when any error-level check fails, else 0.

    Unknown traits raise :class:`~traitvec.errors.TraitvecError` (the CLI exits 2).
    """
    names = list(args.traits) or list_traits(args.traits_root)
    if not names:
        raise ConfigError(
            f"no trait folders under {args.traits_root}; pass --traits-root or create category/trait folders"
        )
    reports = audit_traits(names, args.traits_root)
    print(format_reports(reports))
    if args.json:
        write_json(args.json, reports_to_dict(reports))
        print(f"JSON report written to {args.json}")
    return 1 if any(r.errors for r in reports) else 0
