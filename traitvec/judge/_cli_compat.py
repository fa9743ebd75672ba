"""``traitvec judge`` and the ``--judge-*`` options, kept here until they move to ``traitvec/commands/``.

Temporary: :func:`judge_from_args` and :func:`main_judge` read an ``argparse.Namespace`` and print,
which the library does not do; the command-line layer takes them over, and then this module goes.
:mod:`traitvec.judge` exports both lazily, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import JudgeError
from .base import Judge
from .factory import make_judge
from .scores import JudgeScore

if TYPE_CHECKING:
    import argparse

__all__ = ["judge_from_args", "main_judge"]


def _describe_score(label: str, s: JudgeScore) -> str:
    mass = f", mass {s.mass:.2f}" if s.mass is not None else ""
    cached = ", cached" if s.cached else ""
    if s.status == "ok" and s.score is not None:
        return f"{label}: {s.score:.1f}  (ok, mode {s.mode}{mass}{cached})"
    return f"{label}: {s.status}  (mode {s.mode}{mass}{cached}): {s.reason}"


def judge_from_args(args: argparse.Namespace) -> Judge:
    """:func:`make_judge` from the ``--judge-*`` / ``--local-judge`` options of a command."""
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


def main_judge(args: argparse.Namespace) -> int:
    """``traitvec judge``: score one answer for a trait and for coherence, and print both.

    Returns 0 when both calls produced an answer (ok or abstained) and 1 when one failed after its
    retries; a misconfiguration raises :class:`~traitvec.errors.JudgeError` (exit status 2).
    """
    from ..traits import load_trait

    trait = load_trait(args.trait, args.traits_root)
    judge = judge_from_args(args)
    trait_score = judge.score_trait(trait, [args.question], [args.answer])[0]
    coherence = judge.score_coherence([args.question], [args.answer])[0]
    info = judge.describe()
    print(_describe_score(f"trait {trait.name}", trait_score))
    print(_describe_score("coherence", coherence))
    where = f" at {info['base_url_host']}" if info.get("base_url_host") else ""
    note = "  [smoke test: tiny local judge, not a measurement]" if judge.smoke_test else ""
    print(f"judge: {judge.name}{where}{note}")
    return 1 if "failed" in (trait_score.status, coherence.status) else 0
