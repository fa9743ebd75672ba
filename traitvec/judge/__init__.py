"""The LLM judge: scores for a trait, for coherence and for continuations, and how a judge is chosen.

A judge turns (question, answer) pairs into 0–100 scores for a trait, for coherence, for relevance
(does the answer address the question; :func:`gate_coherence` caps an off-topic answer's
coherence), or — in scenario vetting — for the continuation a model wrote after a prefill. Two implementations share
the :class:`Judge` protocol and the :class:`~traitvec.judge.base.BaseJudge` bookkeeping:

- :class:`~traitvec.judge.openai.OpenAIJudge` — any OpenAI-compatible chat-completions API (OpenAI,
  vLLM, llama.cpp server, Ollama): one request per score with ``max_tokens=1`` and
  ``top_logprobs=20``, the score being the probability-weighted mean of the integer tokens 0–100;
  retried, cached in SQLite, and accounted.
- :class:`~traitvec.judge.local.LocalJudge` — an in-process Hugging Face model (the embedded
  ``smollm2-135m-instruct`` by default): a smoke test that needs no network, not a measurement.

Every score is a :class:`JudgeScore`. A call that failed after its retries, or where the judge put
too little probability on numbers, has ``score=None`` and says why — it is never a 0 and is never
dropped — and :func:`summarize` reports ``n``, ``n_failed`` and ``n_abstained`` next to the mean.

Stages key their outputs on ``judge.key_for(traits)`` (everything that changes the scores,
computed up front), call ``judge.check()`` before any model work (an unreachable judge fails in
seconds, naming its URL) and report ``judge.usage()["last_error"]`` when items failed.

Sync and async: every judge has ``score_*`` methods for plain code and ``ascore_*`` coroutines for
code already inside an event loop. A ``score_*`` call made while an event loop is running (a
notebook, an async app) runs its work on a fresh loop in a worker thread and blocks until done, so
it works everywhere; inside async code prefer ``await judge.ascore_*``.

The package: :mod:`~traitvec.judge.scores` (scores and their arithmetic),
:mod:`~traitvec.judge.base` (the protocol and the shared base class),
:mod:`~traitvec.judge.factory` (:func:`make_judge`, :class:`JudgeSettings`),
:mod:`~traitvec.judge.openai`, :mod:`~traitvec.judge.local` (with :mod:`~traitvec.judge.digits`),
:mod:`~traitvec.judge.prompts` (every prompt), :mod:`~traitvec.judge.cache` (the score cache) and
:mod:`traitvec.judge.testing` (a server speaking the protocol, for tests). ``import traitvec.judge``
imports neither ``openai`` nor ``torch``: the two judges load when first used. See ``docs/judge.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BaseJudge, Judge
from .factory import DEFAULT_JUDGE_MODEL, DEFAULT_LOCAL_JUDGE, JudgeSettings, make_judge
from .scores import JudgeScore, ScoreSummary, gate_coherence, parse_text_score, summarize, weighted_score

if TYPE_CHECKING:
    from .local import LocalJudge
    from .openai import OpenAIJudge

__all__ = [
    "DEFAULT_JUDGE_MODEL",
    "DEFAULT_LOCAL_JUDGE",
    "BaseJudge",
    "Judge",
    "JudgeScore",
    "JudgeSettings",
    "LocalJudge",
    "OpenAIJudge",
    "ScoreSummary",
    "gate_coherence",
    "make_judge",
    "parse_text_score",
    "summarize",
    "weighted_score",
]

_LAZY = {
    "OpenAIJudge": "openai",  # imports openai
    "LocalJudge": "local",  # imports torch
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
