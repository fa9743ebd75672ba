"""The ``traitvec`` command line (also ``python -m traitvec``).

Each subcommand is a thin layer over the library. A user mistake prints one line,
``traitvec: error: ...``, and exits with status 2; a finding (a failed audit) exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .errors import TraitvecError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(name: str, help_: str, handler: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], None]:
    """Register a subcommand: ``handler`` is ``module:function`` imported only when it runs."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        _COMMANDS[name] = (help_, add_arguments, handler)

    return register


def _traits_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--traits-root",
        default="datasets/traits",
        metavar="R",
        help="folder of category/trait folders (default: datasets/traits)",
    )


def _experiments_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--experiments-root",
        default="experiments",
        metavar="DIR",
        help="folder of experiment folders (default: experiments)",
    )


@_command(
    "traits", "validate trait folders and list them with pair and question counts", "traitvec.commands:cmd_traits"
)
def _traits_args(p: argparse.ArgumentParser) -> None:
    _traits_root(p)
    p.add_argument("traits", nargs="*", metavar="cat/trait", help="traits to check (default: all under the root)")


@_command("models", "list the embedded models, or prepare (convert and cache) them", "traitvec.commands:cmd_models")
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prepare", nargs="*", metavar="NAME", help="convert these embedded models now (default with no names: all)"
    )


@_command("audit", "audit trait datasets for label leaks, clustering and confounds", "traitvec.audit:main_audit")
def _audit_args(p: argparse.ArgumentParser) -> None:
    _traits_root(p)
    p.add_argument("traits", nargs="*", metavar="cat/trait", help="traits to audit (default: all under the root)")
    p.add_argument("--json", metavar="PATH", help="also write the full report as JSON to PATH")


def judge_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that calls the judge. The API key is read from OPENAI_API_KEY only."""
    g = p.add_argument_group("judge (the API key is read from OPENAI_API_KEY, never from a flag)")
    g.add_argument("--judge-model", metavar="M", help="judge model (default: $TRAITVEC_JUDGE_MODEL or gpt-4.1-mini)")
    g.add_argument("--judge-base-url", metavar="URL", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    g.add_argument("--judge-concurrency", type=int, default=16, metavar="N", help="requests in flight (default 16)")
    g.add_argument("--judge-cache", metavar="PATH", help="SQLite score cache (default: in traitvec's cache folder)")
    g.add_argument(
        "--local-judge",
        metavar="MODEL",
        help="score with this in-process model instead of an API (a smoke test, not a measurement); "
        "used automatically, with smollm2-135m-instruct, when no API key or base URL is configured",
    )


@_command("judge", "score one answer with the judge (check a judge set-up)", "traitvec.judge:main_judge")
def _judge_args(p: argparse.ArgumentParser) -> None:
    _traits_root(p)
    p.add_argument("--trait", required=True, metavar="cat/trait", help="trait whose rubric scores the answer")
    p.add_argument("--question", required=True, help="the question the answer replies to")
    p.add_argument("--answer", required=True, help="the answer to score")
    judge_options(p)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every registered subcommand)."""
    parser = _Parser(prog="traitvec", description="Extract, evaluate and steer with behavioural trait vectors.")
    parser.add_argument("--version", action="version", version=f"traitvec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_, add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_[:1].upper() + help_[1:] + "."))
    return parser


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("traitvec")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for noisy in ("httpx", "httpx2", "openai", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not message.startswith("traitvec:"):
            return f"traitvec: warning: {message}"
        return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    module_name, function_name = _COMMANDS[args.command][2].split(":")
    import importlib

    handler: Handler = getattr(importlib.import_module(module_name), function_name)
    try:
        return handler(args)
    except TraitvecError as err:
        print(f"traitvec: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("traitvec: interrupted; finished outputs are kept and a rerun resumes from them", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
