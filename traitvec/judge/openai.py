""":class:`OpenAIJudge`: scores from any OpenAI-compatible chat-completions API.

How one score is made:

1. **Cache.** The SQLite cache (:mod:`traitvec.judge.cache`) is looked up by (model, full prompt,
   mode and parameters); a hit makes no request.
2. **Logprobs mode** (the default). One request with ``max_tokens=1``, ``temperature=0``,
   ``logprobs=true``, ``top_logprobs=20``. The score is the probability-weighted mean of the top
   tokens that are integers 0–100, divided by their probability mass
   (:func:`~traitvec.judge.scores.weighted_score`); below ``min_mass`` (0.25) the judge abstains.
3. **Text mode.** When the server gives no logprobs (a reply without logprob content, or HTTP 400
   to the logprob parameters) the same prompt is sent again asking for a few tokens of text, and
   the first number 0–100 in the reply is the score. The judge then remembers that logprobs are
   unavailable and sends text requests directly. Each score records its ``mode``.
   Requests go through the ``openai`` client (``AsyncOpenAI.post("/chat/completions")``, the call
   ``chat.completions.create`` makes, without its typed-body transform) and the raw JSON is parsed
   here, so malformed bodies are caught and any OpenAI-compatible server's replies are read alike.
4. **Retries.** 429 (honouring ``Retry-After``/``retry-after-ms``), 408, 409, 5xx, timeouts,
   connection errors and malformed bodies (not JSON, no choices) are retried with exponential
   backoff and jitter; the client's own retries are off (``max_retries=0``) so this is the only
   retry logic. After the last attempt the item is ``failed`` with its reason — never a 0, never
   dropped. 401/403 (bad key) and 404 (unknown model or path) are misconfigurations: they raise
   :class:`~traitvec.errors.JudgeError` at once.

At most ``concurrency`` items are in flight (an ``asyncio.Semaphore``). Token usage, requests,
retries, cache hits and failures are summed in :meth:`OpenAIJudge.usage`.

The API key is held in a wrapper whose ``repr`` is ``'***'``; it never reaches a file, a log line,
an exception message or :meth:`OpenAIJudge.describe` (which shows only the base URL's host), and
error text from the server or client is scrubbed of it before it is recorded.

The request, parsing and retry-timing helpers live in :mod:`traitvec.judge._http`; the usage
counters, prompt-hash notes and the cache in :class:`~traitvec.judge.base.BaseJudge`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import JudgeError
from ._http import (
    OPENAI_HOST,
    Failed,
    NoLogprobs,
    Retry,
    Secret,
    backoff,
    check_endpoint,
    check_number,
    host,
    parse_reply,
    read_score,
    request_body,
    send,
)
from .base import BaseJudge, run_sync
from .cache import cache_key, default_cache_path
from .prompts import JudgePrompt
from .scores import JudgeScore, Mode, Status

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["OpenAIJudge"]

logger = logging.getLogger(__name__)


@dataclass
class _LoopState:
    """What belongs to one event loop: the HTTP client and the concurrency limit."""

    client: AsyncOpenAI
    semaphore: asyncio.Semaphore


class OpenAIJudge(BaseJudge):
    """A judge served by an OpenAI-compatible chat-completions API.

    Args:
        model: judge model name (``gpt-4.1-mini``; for vLLM/Ollama the served model's name).
        base_url: API base URL ending in ``/v1``; default ``$OPENAI_BASE_URL``, else OpenAI.
        api_key: API key; default ``$OPENAI_API_KEY``. Servers that need none (vLLM, llama.cpp,
            Ollama) work without it when ``base_url`` is set.
        concurrency: requests in flight at most.
        max_retries: retries after the first attempt for retryable errors.
        timeout: seconds per request.
        cache_path: SQLite score cache; ``None`` → ``cache_dir()/judge-cache.sqlite``; ``False`` → off.
        min_mass: abstain when the probability on integer tokens 0–100 is below this.
        logprobs: False sends text requests only (for judges whose tokenizer splits numbers into
            digits, where the first token alone cannot carry a 0–100 score).
        top_logprobs: alternatives requested per score (20, the API's maximum).
        text_max_tokens: tokens asked for in text mode.
        backoff_base: first retry delay in seconds (doubled each retry, with jitter).
        backoff_max: longest retry delay, unless ``Retry-After`` asks for more (up to 120 s).

    Raises:
        JudgeError: no key and no base URL, a base URL without ``http(s)://``, or a bad setting.

    :meth:`usage` counts ``requests`` (HTTP requests sent, retries included), ``cache_hits``,
    ``prompt_tokens``, ``completion_tokens``, ``retries``, ``failures``, ``abstentions``, ``ok`` and
    ``text_fallbacks`` (items re-asked in text mode because logprobs were missing).

    Example:
        >>> judge = OpenAIJudge("gpt-4.1-mini")  # key from OPENAI_API_KEY
        >>> scores = judge.score_trait(trait, trait.questions, answers)
        >>> summarize(scores).mean, judge.usage()["prompt_tokens"]
    """

    extra_usage = ("text_fallbacks",)

    def __init__(
        self,
        model: str = "gpt-4.1-mini",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        max_retries: int = 6,
        timeout: float = 30.0,
        cache_path: str | os.PathLike[str] | Literal[False] | None = None,
        min_mass: float = 0.25,
        logprobs: bool = True,
        top_logprobs: int = 20,
        text_max_tokens: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise JudgeError(f"judge model {model!r} is empty; pass a model name such as gpt-4.1-mini")
        check_number("concurrency", concurrency, integer=True, low=1)
        check_number("max_retries", max_retries, integer=True, low=0)
        check_number("top_logprobs", top_logprobs, integer=True, low=1, high=20)
        check_number("text_max_tokens", text_max_tokens, integer=True, low=1)
        check_number("timeout", timeout, integer=False, low=1e-3)
        check_number("min_mass", min_mass, integer=False, low=0.0, high=1.0)
        check_number("backoff_base", backoff_base, integer=False, low=0.0)
        check_number("backoff_max", backoff_max, integer=False, low=0.0)
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        check_endpoint(url, key)
        if cache_path is False:
            path: Path | None = None
        else:
            path = Path(cache_path) if cache_path is not None else default_cache_path()
        super().__init__(model, cache_path=path)
        self.base_url = url
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.min_mass = float(min_mass)
        self.top_logprobs = top_logprobs
        self.text_max_tokens = text_max_tokens
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._key = Secret(key or "no-key")  # servers without auth accept any bearer token
        self._has_key = key is not None
        self._logprobs: bool | None = None if logprobs else False
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ public

    @property
    def host(self) -> str:
        """The API's host (and port), never credentials."""
        return host(self.base_url) if self.base_url else OPENAI_HOST

    @property
    def mode(self) -> Mode:
        """The mode new requests use: ``"logprobs"`` until the server proves it has none."""
        return "text" if self._logprobs is False else "logprobs"

    async def ascore_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Score ready-made prompts (see :mod:`traitvec.judge.prompts`), in order.

        Raises:
            JudgeError: the API rejected the key (401/403) or does not know the model or path (404).
        """
        if not prompts:
            return []
        state = self._state()
        slot: dict[str, int] = {}  # identical prompts in one batch (the same answer twice) cost one request
        distinct: list[JudgePrompt] = []
        for p in prompts:
            if p.text not in slot:
                slot[p.text] = len(distinct)
                distinct.append(p)
        tasks = [asyncio.ensure_future(self._score_one(p, state)) for p in distinct]
        try:
            scored = list(await asyncio.gather(*tasks))
            results = [scored[slot[p.text]] for p in prompts]
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        failed = [r for r in results if r.status == "failed"]
        if failed:
            logger.warning(
                "judge %s: %d of %d %s scores failed after retries and are recorded as failed (first: %s)",
                self.name,
                len(failed),
                len(results),
                prompts[0].kind,
                failed[0].reason,
            )
        logger.debug(
            "judge %s: %d %s scores, %d from cache", self.name, len(results), prompts[0].kind,
            sum(r.cached for r in results),
        )  # fmt: skip
        return results

    def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Synchronous :meth:`ascore_prompts` (works inside a running event loop too)."""
        return self._sync(self.ascore_prompts(prompts))

    def describe(self) -> dict[str, Any]:
        """Name, mode, host (never the key), settings and the prompt hashes used so far."""
        return {
            "class": type(self).__name__,
            "name": self.name,
            "mode": self.mode,
            "logprobs_available": self._logprobs,
            "base_url_host": self.host,
            "api_key": "set" if self._has_key else "none",
            "min_mass": self.min_mass,
            "top_logprobs": self.top_logprobs,
            "temperature": 0,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "concurrency": self.concurrency,
            "cache": str(self.cache_path) if self.cache_path else None,
            "prompt_hashes": self.prompt_hashes(),
            "smoke_test": self.smoke_test,
        }

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (sync calls close theirs themselves)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    def __repr__(self) -> str:
        return (
            f"OpenAIJudge(model={self.name!r}, host={self.host!r}, mode={self.mode!r}, concurrency={self.concurrency})"
        )

    # ------------------------------------------------------------------ internals

    def _sync(self, coro: Coroutine[Any, Any, list[JudgeScore]]) -> list[JudgeScore]:
        async def closing() -> list[JudgeScore]:
            try:
                return await coro
            finally:
                await self.aclose()

        return run_sync(closing)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=self._key.reveal(),
                base_url=self.base_url or f"https://{OPENAI_HOST}/v1",
                max_retries=0,
                timeout=self.timeout,
            )
            state = _LoopState(client, asyncio.Semaphore(self.concurrency))
            self._states[loop] = state
        return state

    def _params(self, mode: Mode) -> dict[str, Any]:
        if mode == "logprobs":
            return {"mode": mode, "max_tokens": 1, "temperature": 0, "top_logprobs": self.top_logprobs,
                    "min_mass": self.min_mass}  # fmt: skip
        return {"mode": mode, "max_tokens": self.text_max_tokens, "temperature": 0}

    def _key_for(self, prompt: JudgePrompt, mode: Mode) -> str:
        return cache_key(self.name, prompt.text, self._params(mode))

    async def _score_one(self, prompt: JudgePrompt, state: _LoopState) -> JudgeScore:
        if self.cache_path is not None:
            modes: tuple[Mode, ...] = ("text",) if self._logprobs is False else ("logprobs", "text")
            for mode in modes:
                hit = self._cached(prompt, self._key_for(prompt, mode))
                if hit is not None:
                    return hit
        async with state.semaphore:
            result = await self._request_score(prompt, state)
        if result.status != "failed" and result.mode is not None:
            self._store(self._key_for(prompt, result.mode), result)
        outcome = {"ok": "ok", "abstained": "abstentions", "failed": "failures"}[result.status]
        self._count(**{outcome: 1})
        return result

    async def _request_score(self, prompt: JudgePrompt, state: _LoopState) -> JudgeScore:
        if self._logprobs is not False:
            outcome = await self._attempts(prompt, "logprobs", state)
            if isinstance(outcome, JudgeScore):
                if outcome.status != "failed" and self._logprobs is None:
                    self._logprobs = True
                return outcome
            if outcome.certain:
                self._no_logprobs(outcome.reason)
            self._count(text_fallbacks=1)
            text = await self._text_attempts(prompt, state)
            if not outcome.certain and text.status != "failed":
                self._no_logprobs(outcome.reason)
            return text
        return await self._text_attempts(prompt, state)

    async def _text_attempts(self, prompt: JudgePrompt, state: _LoopState) -> JudgeScore:
        text = await self._attempts(prompt, "text", state)
        if not isinstance(text, JudgeScore):  # text requests never ask for logprobs
            raise AssertionError(f"a text-mode request reported missing logprobs: {text.reason}")
        return text

    def _no_logprobs(self, reason: str) -> None:
        with self._lock:
            first = self._logprobs is not False
            self._logprobs = False
        if first:
            logger.warning(
                "judge %s at %s gives no logprobs (%s); scoring from short text answers from now on (mode 'text')",
                self.name,
                self.host,
                reason,
            )

    async def _attempts(self, prompt: JudgePrompt, mode: Mode, state: _LoopState) -> JudgeScore | NoLogprobs:
        request = request_body(self.name, prompt.text, mode, top_logprobs=self.top_logprobs,
                               text_max_tokens=self.text_max_tokens)  # fmt: skip
        attempts = self.max_retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            outcome = await self._attempt(prompt, mode, state, request)
            if not isinstance(outcome, Retry):
                return outcome
            reason = outcome.reason
            if attempt + 1 < attempts:
                wait = outcome.wait if outcome.wait is not None else backoff(attempt, self.backoff_base,
                                                                            self.backoff_max)  # fmt: skip
                self._count(retries=1)
                logger.debug("judge %s: %s; retry %d/%d in %.2f s", self.name, reason, attempt + 1, self.max_retries,
                             wait)  # fmt: skip
                await asyncio.sleep(wait)
        return self._failed(prompt, mode, f"{reason} (gave up after {attempts} attempts)")

    async def _attempt(
        self, prompt: JudgePrompt, mode: Mode, state: _LoopState, request: dict[str, Any]
    ) -> JudgeScore | NoLogprobs | Retry:
        """One request: a score, a no-logprobs signal, or a :class:`~traitvec.judge._http.Retry`."""
        self._count(requests=1)
        clean = self._key.scrub
        sent = await send(state.client, request, mode=mode, timeout=self.timeout, clean=clean, host=self.host,
                          model=self.name)  # fmt: skip
        if isinstance(sent, Failed):
            return self._failed(prompt, mode, sent.reason)
        if not isinstance(sent, str):
            return sent
        reply = parse_reply(sent, clean)
        if isinstance(reply, str):
            return Retry(reply)
        if reply.tokens:
            self._count(**reply.tokens)
        read = read_score(reply, mode, self.min_mass, clean)
        if isinstance(read, NoLogprobs):
            return read
        return self._result(prompt, read.score, read.status, mode, read.mass, read.reason)

    def _result(
        self, prompt: JudgePrompt, score: float | None, status: Status, mode: Mode, mass: float | None,
        reason: str | None,
    ) -> JudgeScore:  # fmt: skip
        return JudgeScore(score, status, mode, prompt.kind, reason, mass, prompt.prompt_hash, self.name, False)

    def _failed(self, prompt: JudgePrompt, mode: Mode, reason: str) -> JudgeScore:
        return self._result(prompt, None, "failed", mode, None, reason)
