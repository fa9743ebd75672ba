"""The ``traitvec`` command line (also ``python -m traitvec``): the parser, dispatch, and error reporting.

This module builds the argument parser of every subcommand and dispatches to its handler in
:mod:`traitvec.commands` (imported only when it runs). A user mistake prints one line,
``traitvec: error: ...`` (library setting names rewritten to their flags, see
:data:`traitvec.commands.settings.FLAGS`), and exits with status 2; a finding (a failed audit) exits 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__
from .commands import monitor as monitor_commands
from .commands.checks import invalid_numbers
from .commands.cluster import executor_options
from .commands.logs import command_logging
from .commands.options import (
    FLOAT,
    INT,
    experiments_root,
    extraction_options,
    judge_options,
    one_trait,
    steering_options,
    traits,
    traits_root,
)
from .commands.settings import flag_message
from .errors import TraitvecError

__all__ = ["main", "build_parser"]

# the names these helpers had when they lived here, for commands added beside the ones below
_traits_root, _experiments_root, _extraction_options = traits_root, experiments_root, extraction_options

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2, that never expands abbreviated flags.

    Prefix matching is off (``allow_abbrev=False``): ``vet --traits X`` must never be read as
    ``--traits-root X``. After parsing, every numeric flag is checked against its range
    (:func:`~traitvec.commands.checks.invalid_numbers`) and all invalid ones are reported in one line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]  # same signature; typeshed spells the overloads out
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        problems = invalid_numbers(self, parsed)
        if problems:
            self.error("; ".join(problems))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(name: str, help_: str, handler: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], None]:
    """Register a subcommand: ``handler`` is ``module:function`` in :mod:`traitvec.commands`, imported when run."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        _COMMANDS[name] = (help_, add_arguments, handler)

    return register


@_command(
    "traits", "validate trait folders and list them with pair and question counts", "traitvec.commands.data:cmd_traits"
)
def _traits_args(p: argparse.ArgumentParser) -> None:
    traits_root(p)
    p.add_argument(
        "traits",
        nargs="*",
        metavar="cat/trait",
        help="traits (or their folders) to check (default: all under the root)",
    )


@_command(
    "models", "list the embedded models, or prepare (convert and cache) them", "traitvec.commands.data:cmd_models"
)
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prepare", nargs="*", metavar="NAME", help="convert these embedded models now (default with no names: all)"
    )


@_command("audit", "audit trait datasets for label leaks, clustering and confounds", "traitvec.commands.data:cmd_audit")
def _audit_args(p: argparse.ArgumentParser) -> None:
    traits_root(p)
    p.add_argument(
        "traits",
        nargs="*",
        metavar="cat/trait",
        help="traits (or their folders) to audit (default: all under the root)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the full report as JSON to PATH")


@_command("judge", "score one answer with the judge (check a judge set-up)", "traitvec.commands.judge:cmd_judge")
def _judge_args(p: argparse.ArgumentParser) -> None:
    traits_root(p)
    one_trait(p, "trait whose rubric scores the answer")
    p.add_argument("--question", required=True, help="the question the answer replies to")
    p.add_argument("--answer", required=True, help="the answer to score")
    judge_options(p)


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec run`` and ``extraction/run_pipeline.py``."""
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose model extracts the vectors")
    p.add_argument(
        "--steer-experiment",
        metavar="S",
        help="experiment whose model is steered (usually E's instruction-tuned sibling; default: E)",
    )
    traits(p, "traits to run")
    traits_root(p)
    experiments_root(p)
    p.add_argument("--no-steering", action="store_true", help="stop after extraction and evaluation")
    p.add_argument(
        "--vet", action="store_true", help="also run scenario vetting first (off by default; see traitvec vet)"
    )
    p.add_argument("--force", action="store_true", help="recompute every stage even when its outputs are current")
    extraction_options(p)
    steering_options(p)
    judge_options(p)
    executor_options(p)


@_command(
    "extract", "capture activations and compute, evaluate and save vectors", "traitvec.commands.pipeline:cmd_extract"
)
def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose model extracts the vectors")
    traits(p, "traits to extract")
    traits_root(p)
    experiments_root(p)
    p.add_argument("--force", action="store_true", help="recompute even when outputs are current")
    extraction_options(p)


@_command(
    "run",
    "run the pipeline per trait: extraction, evaluation and steering evaluation (with --vet, scenario vetting first)",
    "traitvec.commands.pipeline:cmd_run",
)
def _run_args(p: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(p)


@_command("vet", "scenario vetting: judge base-model completions of every prefill", "traitvec.commands.vet:cmd_vet")
def _vet_args(p: argparse.ArgumentParser) -> None:
    add_vet_arguments(p)


def add_vet_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec vet`` and ``extraction/vet_scenarios.py``."""
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose (base) model completes")
    one_trait(p, "trait to vet")
    traits_root(p)
    experiments_root(p)
    p.add_argument("--tokens", type=INT, default=24, metavar="N", help="completion length, 16-32 (default 24)")
    p.add_argument(
        "--threshold", type=FLOAT, default=25.0, metavar="X", help="separation needed to pass, 0-100 (default 25)"
    )
    p.add_argument(
        "--pass-score",
        type=FLOAT,
        default=50.0,
        metavar="X",
        help="a positive scenario fails under X, a negative at or over X; 0-100 (default 50)",
    )
    p.add_argument("--force", action="store_true", help="re-generate and re-score even when vetting.json is current")
    judge_options(p)


@_command(
    "export-gguf",
    "write a vector as a llama.cpp control vector (--control-vector)",
    "traitvec.commands.vectors:cmd_export",
)
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("vector", help="a vector file (.safetensors with its .json sidecar)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .gguf file (not a folder)")
    p.add_argument("--layers", metavar="L", help="layers to export, e.g. 6 or 5,6,7 (default: all but 0)")
    p.add_argument(
        "--coefficient",
        type=FLOAT,
        default=1.0,
        metavar="C",
        help="strength in spread units (multiples of each layer's activation spread), a finite number (default 1.0)",
    )
    p.add_argument("--absolute", action="store_true", help="treat the coefficient as an absolute length")


@_command("steer", "answer questions with and without a vector, side by side", "traitvec.commands.vectors:cmd_steer")
def _steer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="S", help="experiment whose model answers")
    experiments_root(p, writes=False)
    p.add_argument("--vector", required=True, help="a vector file (.safetensors with its .json sidecar)")
    p.add_argument("--layer", type=INT, required=True, metavar="L", help="decoder layer to steer (0-based)")
    p.add_argument(
        "--coefficient",
        type=FLOAT,
        action="append",
        required=True,
        metavar="C",
        help="strength in spread units (multiples of the layer's activation spread; negative pushes away "
        "from the trait); repeat for several (all run in one batch)",
    )
    p.add_argument(
        "--mode",
        choices=("add", "ablate", "pin"),
        default="add",
        help="add: add coefficient x vector to the residual stream (default); ablate: remove the component "
        "along the vector (the coefficient is ignored); pin: set the component along the vector to the "
        "coefficient",
    )
    p.add_argument(
        "--positions",
        choices=("all", "prompt", "response"),
        default="all",
        help="which tokens are steered: all (default), prompt (the question's tokens only) or response "
        "(the generated tokens)",
    )
    p.add_argument("--absolute", action="store_true", help="coefficients are absolute lengths, not spread units")
    p.add_argument(
        "--max-new-tokens",
        type=INT,
        default=64,
        metavar="N",
        help="answer length in tokens (default 64: longer than the pipeline's 48, since here you read the "
        "answers yourself; the pipeline keeps answers short to bound judge and generation cost)",
    )
    p.add_argument("questions", nargs="+", help="questions to answer")


@_command(
    "results",
    "list the steering runs of a trait (one per set of settings), newest last",
    "traitvec.commands.results:cmd_results",
)
def _results_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("trait", metavar="cat/trait", help="the trait whose steering runs to list")
    p.add_argument("--experiment", metavar="S", help="only this (steered) experiment (default: every experiment)")
    _experiments_root(p)


@_command(
    "rescore",
    "re-judge the saved answers of finished steering evaluations with another judge (no model is loaded)",
    "traitvec.commands.rescore:cmd_rescore",
)
def _rescore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="S", help="experiment whose steering results to re-judge")
    traits(p, "traits to re-judge")
    traits_root(p)
    experiments_root(p)
    p.add_argument("--run", metavar="KEY", help="re-judge this run (steering/cat/trait/runs/KEY; default: the latest)")
    judge_options(p)


# Reading texts with vectors; their arguments are defined beside their handlers (commands/monitor.py).
_command("monitor", "project every token of texts on trait vectors", "traitvec.commands.monitor:cmd_monitor")(
    monitor_commands.monitor_arguments
)
_command(
    "compare", "projection shift between two models on the same token ids", "traitvec.commands.monitor:cmd_compare"
)(monitor_commands.compare_arguments)
_command(
    "import-pairs", "turn KTO or DPO preference data into a trait folder", "traitvec.commands.monitor:cmd_import_pairs"
)(monitor_commands.import_pairs_arguments)


def run_subcommand(name: str, argv: Sequence[str], prog: str) -> int:
    """Run one subcommand under another program name (the ``extraction/*.py`` scripts)."""
    help_, add_arguments, _ = _COMMANDS[name]
    parser = _Parser(prog=prog, description=help_[:1].upper() + help_[1:] + ".")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command = name
    return _dispatch(args)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every registered subcommand)."""
    parser = _Parser(prog="traitvec", description="Extract, evaluate and steer with behavioural trait vectors.")
    parser.add_argument("--version", action="version", version=f"traitvec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_, add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_[:1].upper() + help_[1:] + "."))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    restore = command_logging(args.verbose)
    try:  # main() called from a notebook or a test leaves that process's logging as it found it
        return _run(args)
    finally:
        restore()


def _run(args: argparse.Namespace) -> int:
    module_name, function_name = _COMMANDS[args.command][2].split(":")
    import importlib

    handler: Handler = getattr(importlib.import_module(module_name), function_name)
    try:
        return handler(args)
    except TraitvecError as err:
        print(f"traitvec: error: {_one_line(flag_message(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("traitvec: interrupted; finished outputs are kept and a rerun resumes from them", file=sys.stderr)
        return 130
    except Exception as err:
        code = _system_errno(err)
        if code not in _FULL and code not in _REFUSED:
            raise
        print(f"traitvec: error: {_system_message(err, code)}", file=sys.stderr)
        return 2


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _system_errno(err: Exception) -> int | None:
    """The errno of a system error: an ``OSError``, or a safetensors error that quotes one (``(os error 28)``)."""
    if isinstance(err, OSError):
        return err.errno
    found = _OS_ERROR.search(str(err)) if type(err).__name__ == "SafetensorError" else None
    return int(found.group(1)) if found else None


def _system_message(err: Exception, code: int | None) -> str:
    """One line for a full disk or a refused path: what happened, where, and what to do."""
    filename = getattr(err, "filename", None)
    reason = (err.strerror if isinstance(err, OSError) else None) or os.strerror(code or 0)
    if code in _FULL:  # the file is often a temporary one: name its folder
        where = f" in {os.path.dirname(filename) or '.'}" if filename else ""
        return (
            f"{reason} while writing outputs{where}; free some space and rerun (every output is written "
            "atomically, so finished files are intact and the rerun resumes from them)"
        )
    where = f"{filename}: " if filename else ""
    return (
        f"{where}{reason}; make the path readable and writable for traitvec, or point the flag that names it elsewhere"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
