"""Argument groups and flag types shared by several commands (the parser itself is :mod:`traitvec.cli`).

Every numeric flag parses with :data:`INT`, :data:`FLOAT` or :data:`FLOAT_OR_OFF` (kept lenient so that
:func:`~traitvec.commands.checks.invalid_numbers` can report every bad value at once); every
command that takes traits spells the flag ``--traits`` and ``--trait`` alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .checks import number

__all__ = [
    "INT",
    "FLOAT",
    "FLOAT_OR_OFF",
    "TRAIT_HELP",
    "OneValue",
    "traits_root",
    "experiments_root",
    "traits",
    "one_trait",
    "judge_options",
    "extraction_options",
    "steering_options",
]

INT = number(True)
FLOAT = number(False)
FLOAT_OR_OFF = number(False, off=True)
TRAIT_HELP = (
    "category/trait under the traits root, or its folder (datasets/traits/styles/formality, as tab completion gives)"
)


class OneValue(argparse.Action):
    """``--trait/--traits`` of a command that takes one trait: one value, or a clear error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = [values] if isinstance(values, str) else list(values or [])
        if len(items) != 1:
            parser.error(
                f"{option_string} takes one trait here, got {len(items)} ({', '.join(map(str, items))}); "
                f"{parser.prog} works on one trait at a time: run it once per trait"
            )
        setattr(namespace, self.dest, items[0])


def traits_root(p: argparse.ArgumentParser) -> None:
    """``--traits-root``."""
    p.add_argument(
        "--traits-root",
        default="datasets/traits",
        metavar="R",
        help="folder of category/trait folders, relative to the current folder (default: datasets/traits)",
    )


def experiments_root(p: argparse.ArgumentParser, *, writes: bool = True) -> None:
    """``--experiments-root`` (``writes``: the command writes its outputs beneath it)."""
    where = "; outputs are written beneath it" if writes else ""
    p.add_argument(
        "--experiments-root",
        default="experiments",
        metavar="DIR",
        help=f"folder of experiment folders, relative to the current folder (default: experiments){where}",
    )


def traits(p: argparse.ArgumentParser, what: str) -> None:
    """``--traits`` (also spelled ``--trait``): one or more traits."""
    p.add_argument(
        "--traits", "--trait", dest="traits", nargs="+", required=True, metavar="cat/trait",
        help=f"{what}: {TRAIT_HELP}",
    )  # fmt: skip


def one_trait(p: argparse.ArgumentParser, what: str) -> None:
    """``--trait`` (also spelled ``--traits``): exactly one trait."""
    p.add_argument(
        "--trait", "--traits", dest="trait", nargs="+", action=OneValue, required=True, metavar="cat/trait",
        help=f"{what} (one): {TRAIT_HELP}",
    )  # fmt: skip


def judge_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that calls the judge. The API key is read from OPENAI_API_KEY only."""
    g = p.add_argument_group(
        "judge (checked with one request before any model loads; the API key is read from OPENAI_API_KEY, "
        "never from a flag)"
    )
    g.add_argument("--judge-model", metavar="M", help="judge model (default: $TRAITVEC_JUDGE_MODEL or gpt-4.1-mini)")
    g.add_argument("--judge-base-url", metavar="URL", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    g.add_argument(
        "--judge-concurrency", type=INT, default=16, metavar="N", help="requests in flight, at least 1 (default 16)"
    )
    g.add_argument(
        "--judge-cache", metavar="PATH", help="SQLite score cache, or 'off' (default: in traitvec's cache folder)"
    )
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


def extraction_options(p: argparse.ArgumentParser) -> None:
    """The extraction group of ``run`` and ``extract``."""
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
    g.add_argument(
        "--response-tokens", type=INT, default=5, metavar="K", help="k for response-mean, at least 1 (default 5)"
    )
    g.add_argument(
        "--answer-tokens", type=INT, default=5, metavar="K", help="k for answer-first-k, at least 1 (default 5)"
    )
    g.add_argument(
        "--backend",
        default="hooks",
        metavar="B",
        help="capture backend: hooks (default, fastest) or nnsight (the same numbers through an nnsight trace)",
    )
    g.add_argument(
        "--vetted-only",
        action="store_true",
        help="use only pairs whose both sides passed scenario vetting (needs vetting.json: --vet, or traitvec vet)",
    )


def steering_options(p: argparse.ArgumentParser) -> None:
    """The steering-evaluation group of ``run``."""
    s = p.add_argument_group(
        "steering evaluation", "steers with the vector of the first --methods at the first --position"
    )
    s.add_argument("--steer-layers", metavar="L", help="candidate layers (default: best layers within 20-80%% depth)")
    s.add_argument("--n-layers", type=INT, default=2, metavar="N", help="how many candidate layers (default 2)")
    s.add_argument(
        "--coherence-floor", type=FLOAT, default=70.0, metavar="X", help="minimum coherence, 0-100 (default 70)"
    )
    s.add_argument("--max-new-tokens", type=INT, default=48, metavar="N", help="answer length in tokens (default 48)")
    s.add_argument("--questions", type=INT, metavar="N", help="use only the first N steering questions (N >= 1)")
    s.add_argument(
        "--samples", type=INT, default=1, metavar="N", help="answers per question (default 1; >1 samples, seeded)"
    )
    s.add_argument("--search-steps", type=INT, default=6, metavar="N", help="coefficient search rounds (default 6)")
    s.add_argument(
        "--fluency-margin",
        type=FLOAT_OR_OFF,
        default=1.5,
        metavar="X",
        help="nats of mean answer log-prob (under the unsteered model) a run may lose against the baseline "
        "(default 1.5; 'off' disables)",
    )
    s.add_argument(
        "--repetition-ceiling",
        type=FLOAT_OR_OFF,
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
