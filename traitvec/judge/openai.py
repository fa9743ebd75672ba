""":class:`OpenAIJudge`: scores from any OpenAI-compatible chat-completions API.

How one score is made:

1. **Cache.** The SQLite cache (:mod:`traitvec.judge.cache`) is looked up by (model, full prompt,
   mode and parameters); a hit makes no request.
2. **Logprobs mode** (the default). One request with ``max_tokens=1``, ``temperature=0``,
   ``logprobs=true``, ``top_logprobs=20``. The score is the probability-weighted mean of the top
   tokens that are integers 0–100, divided by their probability mass
   (:func:`~traitvec.judge.scores.weighted_score`); below ``min_mass`` (0.25) the judge abstains.
   A reply whose top tokens are not a distribution (a logprob above 0, NaN, probabilities summing
   past 1) is a failed response, counted and never a score.
3. **Text mode.** When the server gives no logprobs (a reply without logprob content, or HTTP 400
   to the logprob parameters) the same prompt is sent again asking for up to ``text_max_tokens``
   (16) tokens of text, and :mod:`traitvec.judge.textscore` reads the score the reply clearly gives
   (none clear → abstain). A reply cut by ``max_tokens`` (``finish_reason`` ``"length"``) is never
   parsed — ``"Score: 100"`` cut after ``"Score: 10"`` would read as 10 — but asked again once with
   :attr:`OpenAIJudge.reask_tokens` tokens, and abstains if cut again. The judge then remembers
   that logprobs are unavailable and sends text requests directly. Each score records its ``mode``.
   Requests go through the ``openai`` client (``AsyncOpenAI.post("/chat/completions")``, the call
   ``chat.completions.create`` makes, without its typed-body transform) and the raw JSON is parsed
   here, so malformed bodies are caught and any OpenAI-compatible server's replies are read alike.
4. **Retries.** 429 (honouring a sane ``Retry-After``/``retry-after-ms``), 408, 409, 5xx, timeouts,
   connection errors and malformed bodies (not JSON, no choices) are retried with exponential
   backoff and jitter; the client's own retries are off (``max_retries=0``) so this is the only
   retry logic. After the last attempt the item is ``failed`` with its reason — never a 0, never
   dropped. 401/403 (bad key) and 404 (unknown model or path) are misconfigurations: they raise
   :class:`~traitvec.errors.JudgeError` at once. ``timeout`` is an overall deadline per attempt
   (connect, send and every byte of the reply), not a per-read timeout.

At most ``concurrency`` items are in flight (an ``asyncio.Semaphore``). Token usage, requests,
retries, cache hits and failures are summed in :meth:`OpenAIJudge.usage`.

The API key is held in a wrapper whose ``repr`` is ``'***'``; it never reaches a file, a log line,
an exception message or :meth:`OpenAIJudge.describe` (which shows only the base URL's host). Every
string from the server — error text, reply text, top tokens, response headers — is masked before
it is recorded, logged or cached (:mod:`traitvec.judge._secrets`).

:meth:`OpenAIJudge.check` is the preflight (:mod:`traitvec.judge._preflight`). The request,
parsing and retry-timing helpers live in :mod:`traitvec.judge._http`; the usage counters,
last error, prompt-hash notes and the cache in :class:`~traitvec.judge.base.BaseJudge`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import JudgeError
from ._http import OPENAI_HOST, check_endpoint, check_number
from ._preflight import CHECK_DEADLINE, preflight
from ._scoring import LoopState, RequestScoring
from ._secrets import Secret, scrubbing_client, strip_userinfo
from .base import run_sync
from .cache import default_cache_path
from .prompts import JudgePrompt
from .scores import JudgeScore, Mode
from .textscore import TEXT_PARSER_VERSION

__all__ = ["OpenAIJudge"]

logger = logging.getLogger(__name__)


class OpenAIJudge(RequestScoring):
    """A judge served by an OpenAI-compatible chat-completions API.

    Args:
        model: judge model name (``gpt-4.1-mini``; for vLLM/Ollama the served model's name).
        base_url: API base URL ending in ``/v1``; default ``$OPENAI_BASE_URL``, else OpenAI.
        api_key: API key; default ``$OPENAI_API_KEY``. Servers that need none (vLLM, llama.cpp,
            Ollama) work without it when ``base_url`` is set.
        concurrency: requests in flight at most.
        max_retries: retries after the first attempt for retryable errors.
        timeout: seconds one attempt may take in all (connect, send, the whole reply).
        cache_path: SQLite score cache; ``None`` → ``cache_dir()/judge-cache.sqlite``; ``False`` → off.
        min_mass: abstain when the probability on integer tokens 0–100 is below this.
        logprobs: False sends text requests only (for judges whose tokenizer splits numbers into
            digits, where the first token alone cannot carry a 0–100 score).
        top_logprobs: alternatives requested per score (20, the API's maximum).
        text_max_tokens: tokens asked for in text mode (a reply cut at this many is asked again
            with ``max(64, 4 × text_max_tokens)``).
        backoff_base: first retry delay in seconds (doubled each retry, with jitter).
        backoff_max: longest retry delay, unless ``Retry-After`` asks for more (up to 120 s).

    Raises:
        JudgeError: no key and no base URL, a base URL without ``http(s)://``, or a bad setting.

    :meth:`usage` counts ``requests`` (HTTP requests sent, retries included), ``cache_hits``,
    ``prompt_tokens``, ``completion_tokens``, ``retries``, ``failures``, ``abstentions``, ``ok``,
    ``last_error``, ``text_fallbacks`` (items re-asked in text mode because logprobs were missing),
    ``text_reasks`` (text replies cut by ``max_tokens`` and asked again) and ``checks`` (preflight
    requests, not counted in ``requests``).

    Example:
        >>> judge = OpenAIJudge("gpt-4.1-mini")  # key from OPENAI_API_KEY
        >>> scores = judge.score_trait(trait, trait.questions, answers)
        >>> summarize(scores).mean, judge.usage()["prompt_tokens"]
    """

    extra_usage = ("text_fallbacks", "text_reasks", "checks")

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
        text_max_tokens: int = 16,
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
        self._key = Secret(key)  # servers without auth get a placeholder bearer token
        self._has_key = key is not None
        self._forced_text = not logprobs
        self._checked = False
        self._logprobs: bool | None = None if logprobs else False
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ public

    @property
    def mode(self) -> Mode:
        """The mode new requests use: ``"logprobs"`` until the server proves it has none."""
        return "text" if self._logprobs is False else "logprobs"

    def check(self, *, deadline: float | None = None) -> None:
        """Preflight: the score cache is readable, and one 1-token request, so an unusable judge fails
        before any model work.

        Connection refused, an unknown host or no answer within ``deadline`` (default 5 s, or
        ``timeout`` when shorter) raise at once, naming the URL; so do a rejected key (401/403),
        an unknown model or path (404) and a rejected request (other 4xx). A 429/5xx passes with a
        warning. Passing once is remembered: later calls send nothing. Counted in
        ``usage()["checks"]``, not in ``requests``.

        Raises:
            JudgeError: the judge is unreachable or misconfigured; the message names the URL.

        Example:
            >>> make_judge(base_url="http://127.0.0.1:9/v1").check()  # nothing listens on port 9
            JudgeError: judge at http://127.0.0.1:9/v1 is unreachable (connection error ...
        """
        if not self._checked:
            self._check_cache()
            run_sync(lambda: self._acheck(deadline))

    async def _acheck(self, deadline: float | None) -> None:
        url = strip_userinfo(self.base_url or f"https://{OPENAI_HOST}/v1")
        limit = min(self.timeout, CHECK_DEADLINE) if deadline is None else float(deadline)
        self._count(checks=1)
        try:
            warning, tokens = await preflight(self._state().client, model=self.name, host=self.host, url=url,
                                              deadline=limit, clean=self._key.scrub)  # fmt: skip
        except JudgeError as err:
            self._note_error(str(err))
            raise
        finally:
            await self.aclose()
        if tokens:
            self._count(**tokens)
        if warning is not None:
            self._note_error(warning)
            logger.warning("%s", warning)
        self._checked = True

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
        except BaseException as err:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(err, JudgeError):
                self._note_error(str(err))
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

    def _key_settings(self) -> dict[str, Any]:
        """What changes this judge's scores (the part of :meth:`key_for` before the prompt hashes)."""
        return {
            "mode": "text" if self._forced_text else "logprobs",  # as configured: the fallback is the same each run
            "host": self.host,
            "min_mass": self.min_mass,
            "top_logprobs": self.top_logprobs,
            "temperature": 0,
            "text": {
                "max_tokens": self.text_max_tokens,
                "reask_tokens": self.reask_tokens,
                "parser": TEXT_PARSER_VERSION,
            },  # fmt: skip
        }

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

    def _state(self) -> LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=self._key.reveal(),
                base_url=self.base_url or f"https://{OPENAI_HOST}/v1",
                max_retries=0,
                timeout=self.timeout,
                http_client=scrubbing_client(self._key, timeout=self.timeout),
            )
            state = LoopState(client, asyncio.Semaphore(self.concurrency))
            self._states[loop] = state
        return state
