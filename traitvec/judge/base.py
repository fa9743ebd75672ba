"""The :class:`Judge` protocol, and :class:`BaseJudge`, the bookkeeping every judge shares.

A judge turns (question, answer) pairs into 0–100 scores for a trait, for coherence, or — in
scenario vetting — for the continuation a model wrote after a prefill. :class:`Judge` is what the
rest of traitvec needs from one; any object with these methods will do.

:class:`BaseJudge` is the base of the two judges traitvec ships
(:class:`~traitvec.judge.openai.OpenAIJudge`, :class:`~traitvec.judge.local.LocalJudge`). It owns
what they have in common: the usage counters and the last error (under a lock), the prompt-hash
notes recorded in :meth:`~BaseJudge.describe`, the staleness key :meth:`~BaseJudge.key_for`, the
lazily opened :class:`~traitvec.judge.cache.ScoreCache`, a do-nothing :meth:`~BaseJudge.check`,
and the ``score_trait`` / ``score_coherence`` / ``score_relevance`` / ``score_continuations``
methods with their ``ascore_*`` coroutines, all built on two methods a subclass writes:
:meth:`~BaseJudge.score_prompts` and :meth:`~BaseJudge.ascore_prompts`.

Sync and async: a ``score_*`` call made while an event loop is running (a notebook, an async app)
must not block that loop's thread forever; :func:`run_sync` runs such work on a fresh loop in a
worker thread. Inside async code prefer ``await judge.ascore_*``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from .._io import sha256_text
from ..traits import Trait
from .cache import CachedScore, ScoreCache
from .prompts import (
    COHERENCE_TEMPLATE,
    JudgePrompt,
    coherence_prompts,
    continuation_prompts,
    relevance_prompts,
    template_hashes,
    trait_prompts,
)
from .scores import JudgeScore

__all__ = ["BaseJudge", "Judge", "USAGE_KEYS", "run_sync"]

T = TypeVar("T")

USAGE_KEYS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "retries", "failures", "abstentions",
              "ok")  # fmt: skip
"""Usage counters every :class:`BaseJudge` keeps (then ``last_error``, then a subclass's own counters)."""

Usage = dict[str, int | str | None]
"""What :meth:`Judge.usage` returns: counters (int) and ``last_error`` (str or None)."""


@runtime_checkable
class Judge(Protocol):
    """What the rest of traitvec needs from a judge.

    Attributes:
        name: the judge model's name (recorded with every score).
        smoke_test: True for a tiny local judge whose results are a smoke test, not a measurement.
    """

    name: str
    smoke_test: bool

    def score_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for the trait (its ``eval_prompt``, else its ``definition.txt`` rubric)."""
        ...

    def score_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for coherence (grammar and sense, not the trait)."""
        ...

    def score_relevance(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score whether each answer addresses its question (not the trait, not grammar)."""
        ...

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for the trait, with its prefill shown as context."""
        ...

    def usage(self) -> Usage:
        """Requests, cache hits, tokens, retries, failures (and the last error) since the judge was made."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain data recorded with outputs: name, mode, host (never a key), prompt hashes, smoke_test."""
        ...

    def key_for(self, traits: Sequence[Trait]) -> dict[str, Any]:
        """Plain data of everything that changes this judge's scores of these traits (a staleness key)."""
        ...

    def check(self) -> None:
        """Fail fast (a :class:`~traitvec.errors.JudgeError`) when the judge cannot be reached or used."""
        ...


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``factory()`` to completion from synchronous code.

    With no event loop running this is ``asyncio.run``. Inside a running loop (a notebook, an
    async app) the coroutine runs on a new loop in a worker thread while the caller blocks.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="traitvec-judge") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class BaseJudge(ABC):
    """Shared bookkeeping of a judge; a subclass writes :meth:`score_prompts`, :meth:`ascore_prompts`
    and :meth:`describe`.

    Args:
        name: the judge's name, recorded with every score.
        cache_path: the SQLite score cache, opened on first use; ``None`` for no cache.

    Attributes:
        name: as given.
        cache_path: as given.
        smoke_test: class attribute; True for judges whose scores are a smoke test.
        extra_usage: class attribute; usage counters a subclass keeps beyond :data:`USAGE_KEYS`.
    """

    smoke_test: bool = False
    extra_usage: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, *, cache_path: Path | None) -> None:
        self.name = name
        self.cache_path = cache_path
        self._lock = threading.RLock()
        self._usage: dict[str, int] = dict.fromkeys((*USAGE_KEYS, *self.extra_usage), 0)
        self._hashes: dict[str, str] = {}
        self._cache: ScoreCache | None = None
        self._last_error: str | None = None

    # ------------------------------------------------------------------ what a subclass writes

    @abstractmethod
    def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Score ready-made prompts (see :mod:`traitvec.judge.prompts`), in order."""

    @abstractmethod
    async def ascore_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_prompts`."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Plain data recorded with outputs: name, mode, host (never a key), prompt hashes, smoke_test."""

    # ------------------------------------------------------------------ scoring

    def score_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for ``trait`` (its ``eval_prompt``, else its ``definition.txt`` rubric).

        Args:
            trait: the trait whose rubric the judge applies.
            questions: the questions, paired by index with ``answers``.
            answers: the answers to score.

        Returns:
            One :class:`~traitvec.judge.JudgeScore` per answer, in order.

        Example:
            >>> judge.score_trait(trait, ["How will the economy do?"], ["It will recover, and fast!"])[0].score
        """
        return self.score_prompts(self._trait_prompts(trait, questions, answers))

    def score_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for coherence (grammar and sense, not the trait)."""
        return self.score_prompts(coherence_prompts(questions, answers))

    def score_relevance(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score whether each answer addresses its question, 0–100 (``kind="relevance"``).

        Not the trait, not grammar: the relevance gate
        (:func:`~traitvec.judge.scores.gate_coherence`) uses it to cap an off-topic answer's coherence.

        Example:
            >>> [r] = judge.score_relevance(["What causes rain?"], ["My favourite colour is blue."])
            >>> gate_coherence(judge.score_coherence(["What causes rain?"], ["My favourite colour is blue."])[0], r)
        """
        return self.score_prompts(relevance_prompts(questions, answers))

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for ``trait``; its prefill is shown as context."""
        return self.score_prompts(self._continuation_prompts(trait, prefills, continuations))

    async def ascore_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_trait`."""
        return await self.ascore_prompts(self._trait_prompts(trait, questions, answers))

    async def ascore_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_coherence`."""
        return await self.ascore_prompts(coherence_prompts(questions, answers))

    async def ascore_relevance(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_relevance`."""
        return await self.ascore_prompts(relevance_prompts(questions, answers))

    async def ascore_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_continuations`."""
        return await self.ascore_prompts(self._continuation_prompts(trait, prefills, continuations))

    # ------------------------------------------------------------------ bookkeeping

    def usage(self) -> Usage:
        """Totals since the judge was made, and the last error.

        Keys: ``requests``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``, ``retries``,
        ``failures``, ``abstentions``, ``ok``, ``last_error`` (the reason of the latest failed
        item, refused key or failed check, with the key masked; ``None`` when nothing failed),
        then the subclass's own counters (:attr:`extra_usage`).
        """
        with self._lock:
            counts = dict(self._usage)
            return {**{k: counts.pop(k) for k in USAGE_KEYS}, "last_error": self._last_error, **counts}

    def key_for(self, traits: Sequence[Trait]) -> dict[str, Any]:
        """Everything that changes this judge's scores of ``traits``, as plain data: a staleness key.

        The judge's class and name, the settings a subclass names (:meth:`_key_settings`: mode,
        host, thresholds...) and the template hash of every prompt these traits will be judged with
        (:func:`~traitvec.judge.prompts.template_hashes`: trait, continuation, coherence,
        relevance). Computed up front: nothing is scored, and the key does not depend on what the
        judge scored before. Concurrency, retries, timeouts and the cache file are not in it.

        Example:
            >>> inputs = {"judge": judge.key_for([trait]), ...}  # then stages.resume.inputs_key(inputs)
        """
        return {"class": type(self).__name__, "name": self.name, **self._key_settings(),
                "prompts": template_hashes(traits)}  # fmt: skip

    def check(self) -> None:
        """Preflight before any model work: the score cache is readable (a judge with a server checks it too).

        Raises:
            JudgeError: the cache file is damaged or not a score cache (the message names the fix).
        """
        self._check_cache()

    def _check_cache(self) -> None:
        cache = self._cache_db()
        if cache is not None:
            cache.verify()

    def prompt_hashes(self) -> dict[str, str]:
        """Template hashes: coherence, and each trait/continuation prompt used so far."""
        with self._lock:
            return {"coherence": sha256_text(COHERENCE_TEMPLATE), **self._hashes}

    def close(self) -> None:
        """Close the score cache's database connection (it reopens on the next score)."""
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    def _trait_prompts(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgePrompt]:
        prompts = trait_prompts(trait, questions, answers)
        self._note(f"trait:{trait.name}", prompts)
        return prompts

    def _continuation_prompts(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgePrompt]:
        prompts = continuation_prompts(trait, prefills, continuations)
        self._note(f"continuation:{trait.name}", prompts)
        return prompts

    def _key_settings(self) -> dict[str, Any]:
        """The settings that change this judge's scores (for :meth:`key_for`); a subclass names its own."""
        return {}

    def _mask(self, text: str) -> str:
        """``text`` as it may be recorded (an API judge masks its key)."""
        return text

    def _note_error(self, text: str) -> None:
        """Remember ``text`` (masked) as the last error, shown by :meth:`usage`."""
        masked = self._mask(text)
        with self._lock:
            self._last_error = masked

    def _note(self, label: str, prompts: Sequence[JudgePrompt]) -> None:
        """Record the template hash of the prompts used under ``label`` (shown by :meth:`prompt_hashes`)."""
        if prompts:
            with self._lock:
                self._hashes[label] = prompts[0].prompt_hash

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self._usage[key] += amount

    def _cache_db(self) -> ScoreCache | None:
        """The score cache, opened on first use (``None`` when the judge has none)."""
        if self.cache_path is None:
            return None
        with self._lock:
            if self._cache is None:
                self._cache = ScoreCache(self.cache_path)
            return self._cache

    def _cached(self, prompt: JudgePrompt, key: str) -> JudgeScore | None:
        """The cached score of ``prompt`` under ``key`` (counted as a cache hit), or ``None``."""
        cache = self._cache_db()
        hit = cache.get(key) if cache is not None else None
        if hit is None:
            return None
        self._count(cache_hits=1)
        return self._from_cache(prompt, hit)

    def _from_cache(self, prompt: JudgePrompt, hit: CachedScore) -> JudgeScore:
        return JudgeScore(hit.score, hit.status, hit.mode, prompt.kind, hit.reason, hit.mass, prompt.prompt_hash,
                          self.name, cached=True)  # fmt: skip

    def _store(self, key: str, result: JudgeScore) -> None:
        """Cache an ``ok`` or ``abstained`` score under ``key`` (no-op without a cache)."""
        cache = self._cache_db()
        if cache is not None:
            cache.put(key, judge=self.name, kind=result.kind, prompt_hash=result.prompt_hash, score=result.score,
                      status=result.status, mode=result.mode, mass=result.mass, reason=result.reason)  # fmt: skip
