"""The ``traitvec`` command line (also ``python -m traitvec``): the parser, dispatch, and error reporting.

This module builds the argument parser of every subcommand and dispatches to its handler in
:mod:`traitvec.commands` (imported only when it runs). A user mistake prints one line,
``traitvec: error: ...`` (library setting names rewritten to their flags, see
:data:`traitvec.commands.settings.FLAGS`), and exits with status 2; a finding (a failed audit) exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .commands.settings import flag_message
from .errors import TraitvecError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(name: str, help_: str, handler: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], None]:
    """Register a subcommand: ``handler`` is ``module:function`` in :mod:`traitvec.commands`, imported when run."""

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
    "traits", "validate trait folders and list them with pair and question counts", "traitvec.commands.data:cmd_traits"
)
def _traits_args(p: argparse.ArgumentParser) -> None:
    _traits_root(p)
    p.add_argument("traits", nargs="*", metavar="cat/trait", help="traits to check (default: all under the root)")


@_command(
    "models", "list the embedded models, or prepare (convert and cache) them", "traitvec.commands.data:cmd_models"
)
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prepare", nargs="*", metavar="NAME", help="convert these embedded models now (default with no names: all)"
    )


@_command("audit", "audit trait datasets for label leaks, clustering and confounds", "traitvec.commands.data:cmd_audit")
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
        "--judge-text-mode",
        action="store_true",
        help="ask for a written number instead of logprobs (judge models that write numbers digit by digit)",
    )
    g.add_argument(
        "--local-judge",
        metavar="MODEL",
        help="score with this in-process model instead of an API (a smoke test, not a measurement); "
        "used automatically, with smollm2-135m-instruct, when no API key or base URL is configured",
    )


@_command("judge", "score one answer with the judge (check a judge set-up)", "traitvec.commands.judge:cmd_judge")
def _judge_args(p: argparse.ArgumentParser) -> None:
    _traits_root(p)
    p.add_argument("--trait", required=True, metavar="cat/trait", help="trait whose rubric scores the answer")
    p.add_argument("--question", required=True, help="the question the answer replies to")
    p.add_argument("--answer", required=True, help="the answer to score")
    judge_options(p)


def _extraction_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("extraction")
    g.add_argument(
        "--position",
        action="append",
        metavar="P",
        help="capture position(s): prefill-mean, last-token, response-mean (prefill traits); answer-mean, "
        "answer-first-k, prefill-mean (conversation traits); repeat or comma-separate "
        "(default: prefill-mean,last-token, or answer-mean,answer-first-k for conversation traits)",
    )
    g.add_argument(
        "--methods",
        action="append",
        metavar="M",
        help="vector methods: mean-diff, probe, pca; comma-separated (default: all three)",
    )
    g.add_argument("--layers", metavar="L", help="layers, e.g. 4,6,8 or 'all' (default: the config's, else all)")
    g.add_argument("--response-tokens", type=int, default=5, metavar="K", help="k for response-mean (default 5)")
    g.add_argument("--answer-tokens", type=int, default=5, metavar="K", help="k for answer-first-k (default 5)")
    g.add_argument(
        "--backend",
        default="hooks",
        metavar="B",
        help="capture backend: hooks (default, fastest) or nnsight (the same numbers through an nnsight trace)",
    )
    g.add_argument(
        "--vetted-only",
        action="store_true",
        help="use only pairs whose both sides passed scenario vetting (needs vetting.json)",
    )


def _number_or_off(value: str) -> float | None:
    """A flag value that is a number, or ``off`` (``None``)."""
    if value.strip().lower() == "off":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor 'off'") from None


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec run`` and ``extraction/run_pipeline.py``."""
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose model extracts the vectors")
    p.add_argument(
        "--steer-experiment",
        metavar="S",
        help="experiment whose model is steered (usually E's instruction-tuned sibling; default: E)",
    )
    p.add_argument("--traits", nargs="+", required=True, metavar="cat/trait", help="traits to run")
    _traits_root(p)
    _experiments_root(p)
    p.add_argument("--no-steering", action="store_true", help="stop after extraction and evaluation")
    p.add_argument("--vet", action="store_true", help="run scenario vetting before extraction")
    p.add_argument("--force", action="store_true", help="recompute every stage even when its outputs are current")
    _extraction_options(p)
    s = p.add_argument_group("steering evaluation")
    s.add_argument("--steer-layers", metavar="L", help="candidate layers (default: best layers within 20-80%% depth)")
    s.add_argument("--n-layers", type=int, default=2, metavar="N", help="how many candidate layers (default 2)")
    s.add_argument("--coherence-floor", type=float, default=70.0, metavar="X", help="minimum coherence (default 70)")
    s.add_argument("--max-new-tokens", type=int, default=48, metavar="N", help="answer length (default 48)")
    s.add_argument("--questions", type=int, metavar="N", help="use only the first N steering questions")
    s.add_argument("--samples", type=int, default=1, metavar="N", help="samples per question (>1 samples, seeded)")
    s.add_argument("--search-steps", type=int, default=6, metavar="N", help="coefficient search rounds (default 6)")
    s.add_argument(
        "--fluency-margin",
        type=_number_or_off,
        default=1.5,
        metavar="X",
        help="nats of mean answer log-prob (under the unsteered model) a run may lose against the baseline "
        "(default 1.5; 'off' disables)",
    )
    s.add_argument(
        "--repetition-ceiling",
        type=_number_or_off,
        default=0.5,
        metavar="X",
        help="highest mean 3-gram repetition of a run's answers, or the baseline's + 0.15 if higher "
        "(default 0.5; 'off' disables)",
    )
    s.add_argument(
        "--no-prompting-baseline",
        action="store_true",
        help="skip the prompting baseline (the unsteered model asked to show the trait)",
    )
    judge_options(p)


@_command(
    "extract", "capture activations and compute, evaluate and save vectors", "traitvec.commands.pipeline:cmd_extract"
)
def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose model extracts the vectors")
    p.add_argument("--traits", nargs="+", required=True, metavar="cat/trait", help="traits to extract")
    _traits_root(p)
    _experiments_root(p)
    p.add_argument("--force", action="store_true", help="recompute even when outputs are current")
    _extraction_options(p)


@_command(
    "run",
    "run the whole pipeline per trait: vetting, extraction, evaluation, steering",
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
    p.add_argument("--trait", required=True, metavar="cat/trait", help="trait to vet")
    _traits_root(p)
    _experiments_root(p)
    p.add_argument("--tokens", type=int, default=24, metavar="N", help="completion length, 16-32 (default 24)")
    p.add_argument("--threshold", type=float, default=25.0, metavar="X", help="separation needed to pass (default 25)")
    p.add_argument(
        "--pass-score",
        type=float,
        default=50.0,
        metavar="X",
        help="a positive scenario fails under X, a negative at or over X (default 50)",
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
    p.add_argument("--out", required=True, help="output .gguf path")
    p.add_argument("--layers", help="layers to export, e.g. 6 or 5,6,7 (default: all but 0)")
    p.add_argument("--coefficient", type=float, default=1.0, help="strength in spread units (default 1.0)")
    p.add_argument("--absolute", action="store_true", help="treat the coefficient as an absolute length")


@_command("steer", "answer questions with and without a vector, side by side", "traitvec.commands.vectors:cmd_steer")
def _steer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="S", help="experiment whose model answers")
    _experiments_root(p)
    p.add_argument("--vector", required=True, help="a vector file (.safetensors with its .json sidecar)")
    p.add_argument("--layer", type=int, required=True, help="layer to steer")
    p.add_argument(
        "--coefficient",
        type=float,
        action="append",
        required=True,
        help="strength in spread units; repeat for several (all run in one batch)",
    )
    p.add_argument("--mode", choices=("add", "ablate", "pin"), default="add")
    p.add_argument("--positions", choices=("all", "prompt", "response"), default="all")
    p.add_argument("--absolute", action="store_true", help="coefficients are absolute lengths, not spread units")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
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
    p.add_argument("--traits", nargs="+", required=True, metavar="cat/trait", help="traits to re-judge")
    _traits_root(p)
    _experiments_root(p)
    p.add_argument("--run", metavar="KEY", help="re-judge this run (steering/cat/trait/runs/KEY; default: the latest)")
    judge_options(p)


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
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
