"""``traitvec judge``: score one answer with the configured judge (a check of a judge set-up)."""

from __future__ import annotations

import argparse

from ..judge import JudgeScore
from ..stages.preflight import load_traits, prepare_judge
from .settings import judge_from_args

__all__ = ["cmd_judge", "describe_score"]


def describe_score(label: str, s: JudgeScore) -> str:
    """One line: the score (or why there is none), its mode, logprob mass and whether it came from the cache."""
    mass = f", mass {s.mass:.2f}" if s.mass is not None else ""
    cached = ", cached" if s.cached else ""
    if s.status == "ok" and s.score is not None:
        return f"{label}: {s.score:.1f}  (ok, mode {s.mode}{mass}{cached})"
    return f"{label}: {s.status}  (mode {s.mode}{mass}{cached}): {s.reason}"


def cmd_judge(args: argparse.Namespace) -> int:
    """Score one answer for a trait and for coherence, and print both.

    Returns 0 when both calls produced an answer (ok or abstained) and 1 when one failed after its
    retries; a misconfiguration raises :class:`~traitvec.errors.JudgeError` (exit status 2).
    """
    (trait,) = load_traits([args.trait], args.traits_root)
    judge = prepare_judge(judge_from_args(args), [trait])
    trait_score = judge.score_trait(trait, [args.question], [args.answer])[0]
    coherence = judge.score_coherence([args.question], [args.answer])[0]
    info = judge.describe()
    print(describe_score(f"trait {trait.name}", trait_score))
    print(describe_score("coherence", coherence))
    where = f" at {info['base_url_host']}" if info.get("base_url_host") else ""
    note = "  [smoke test: tiny local judge, not a measurement]" if judge.smoke_test else ""
    print(f"judge: {judge.name}{where}{note}")
    return 1 if "failed" in (trait_score.status, coherence.status) else 0
