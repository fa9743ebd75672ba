"""The :class:`Judge` protocol, and :class:`BaseJudge`, the bookkeeping every judge shares.

A judge turns (question, answer) pairs into 0–100 scores for a trait, for coherence, or — in
scenario vetting — for the continuation a model wrote after a prefill. :class:`Judge` is what the
rest of traitvec needs from one; any object with these methods will do.

:class:`BaseJudge` is the base of the two judges traitvec ships
(:class:`~traitvec.judge.openai.OpenAIJudge`, :class:`~traitvec.judge.local.LocalJudge`). It owns
what they have in common: the usage counters (under a lock), the prompt-hash notes recorded in
:meth:`~BaseJudge.describe`, the lazily opened :class:`~traitvec.judge.cache.ScoreCache`, and the
``score_trait`` / ``score_coherence`` / ``score_continuations`` methods with their ``ascore_*``
coroutines, all built on two methods a subclass writes: :meth:`~BaseJudge.score_prompts` and
:meth:`~BaseJudge.ascore_prompts`.

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
from .prompts import COHERENCE_TEMPLATE, JudgePrompt, coherence_prompts, continuation_prompts, trait_prompts
from .scores import JudgeScore

__all__ = ["BaseJudge", "Judge", "USAGE_KEYS", "run_sync"]

T = TypeVar("T")

USAGE_KEYS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "retries", "failures", "abstentions",
              "ok")  # fmt: skip
"""Usage counters every :class:`BaseJudge` keeps (a subclass adds its own after these)."""


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

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for the trait, with its prefill shown as context."""
        ...

    def usage(self) -> dict[str, int]:
        """Requests, cache hits, tokens, retries and failures summed since the judge was made."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain data recorded with outputs: name, mode, host (never a key), prompt hashes, smoke_test."""
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

    async def ascore_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_continuations`."""
        return await self.ascore_prompts(self._continuation_prompts(trait, prefills, continuations))

    # ------------------------------------------------------------------ bookkeeping

    def usage(self) -> dict[str, int]:
        """Totals since the judge was made.

        Keys: ``requests``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``, ``retries``,
        ``failures``, ``abstentions``, ``ok``, then the subclass's own (:attr:`extra_usage`).
        """
        with self._lock:
            return dict(self._usage)

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
