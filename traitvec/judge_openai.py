""":class:`OpenAIJudge`: scores from any OpenAI-compatible chat-completions API.

How one score is made:

1. **Cache.** The SQLite cache (:mod:`traitvec.judge_cache`) is looked up by (model, full prompt,
   mode and parameters); a hit makes no request.
2. **Logprobs mode** (the default). One request with ``max_tokens=1``, ``temperature=0``,
   ``logprobs=true``, ``top_logprobs=20``. The score is the probability-weighted mean of the top
   tokens that are integers 0–100, divided by their probability mass
   (:func:`~traitvec.judge.weighted_score`); below ``min_mass`` (0.25) the judge abstains.
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
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import JudgeError
from .judge import JudgeScore, Mode, parse_text_score, run_sync, weighted_score
from .judge_cache import CachedScore, ScoreCache, cache_key, default_cache_path
from .judge_prompts import (
    COHERENCE_TEMPLATE,
    JudgePrompt,
    coherence_prompts,
    continuation_prompts,
    trait_prompts,
)
from .traits import Trait

__all__ = ["OpenAIJudge"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 120.0
_OPENAI_HOST = "api.openai.com"


class _Secret:
    """Holds an API key; prints as ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


@dataclass
class _LoopState:
    """What belongs to one event loop: the HTTP client and the concurrency limit."""

    client: Any  # openai.AsyncOpenAI
    semaphore: asyncio.Semaphore


@dataclass(frozen=True)
class _NoLogprobs:
    """The server gave no logprobs (``certain``) or rejected the logprob parameters with 400."""

    reason: str
    certain: bool


class OpenAIJudge:
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

    Example:
        >>> judge = OpenAIJudge("gpt-4.1-mini")  # key from OPENAI_API_KEY
        >>> scores = judge.score_trait(trait, trait.questions, answers)
        >>> summarize(scores).mean, judge.usage()["prompt_tokens"]
    """

    smoke_test = False

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
        _check("concurrency", concurrency, int, 1, None)
        _check("max_retries", max_retries, int, 0, None)
        _check("top_logprobs", top_logprobs, int, 1, 20)
        _check("text_max_tokens", text_max_tokens, int, 1, None)
        _check("timeout", timeout, (int, float), 1e-3, None)
        _check("min_mass", min_mass, (int, float), 0.0, 1.0)
        _check("backoff_base", backoff_base, (int, float), 0.0, None)
        _check("backoff_max", backoff_max, (int, float), 0.0, None)
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise JudgeError(
                    f"judge base URL {_strip_userinfo(url)!r} is not an http(s) URL; "
                    "use e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama)"
                )
        if key is None and url is None:
            raise JudgeError(
                "no judge API key: set OPENAI_API_KEY, or pass --judge-base-url (OPENAI_BASE_URL) for a local "
                "OpenAI-compatible server that needs no key, or use --local-judge for a smoke test"
            )
        self.name = model
        self.base_url = url
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.min_mass = float(min_mass)
        self.top_logprobs = top_logprobs
        self.text_max_tokens = text_max_tokens
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._key = _Secret(key or "no-key")  # servers without auth accept any bearer token
        self._has_key = key is not None
        if cache_path is False:
            self.cache_path: Path | None = None
        else:
            self.cache_path = Path(cache_path) if cache_path is not None else default_cache_path()
        self._cache: ScoreCache | None = None
        self._logprobs: bool | None = None if logprobs else False
        self._forced_text = not logprobs
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._usage = dict.fromkeys(_USAGE_KEYS, 0)
        self._hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ public

    @property
    def host(self) -> str:
        """The API's host (and port), never credentials."""
        return _host(self.base_url) if self.base_url else _OPENAI_HOST

    @property
    def mode(self) -> Mode:
        """The mode new requests use: ``"logprobs"`` until the server proves it has none."""
        return "text" if self._logprobs is False else "logprobs"

    async def ascore_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_trait`."""
        prompts = trait_prompts(trait, questions, answers)
        self._note(f"trait:{trait.name}", prompts)
        return await self.ascore_prompts(prompts)

    async def ascore_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_coherence`."""
        return await self.ascore_prompts(coherence_prompts(questions, answers))

    async def ascore_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Coroutine version of :meth:`score_continuations`."""
        prompts = continuation_prompts(trait, prefills, continuations)
        self._note(f"continuation:{trait.name}", prompts)
        return await self.ascore_prompts(prompts)

    async def ascore_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Score ready-made prompts (see :mod:`traitvec.judge_prompts`), in order.

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
        return self._sync(self.ascore_trait(trait, questions, answers))

    def score_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for coherence (grammar and sense, not the trait)."""
        return self._sync(self.ascore_coherence(questions, answers))

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for ``trait``; its prefill is shown as context."""
        return self._sync(self.ascore_continuations(trait, prefills, continuations))

    def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Synchronous :meth:`ascore_prompts`."""
        return self._sync(self.ascore_prompts(prompts))

    def usage(self) -> dict[str, Any]:
        """Totals since the judge was made (or :meth:`reset_usage`).

        Keys: ``requests`` (HTTP requests sent, retries included), ``cache_hits``, ``prompt_tokens``,
        ``completion_tokens``, ``retries``, ``failures``, ``abstentions``, ``ok``,
        ``text_fallbacks`` (items re-asked in text mode because logprobs were missing).
        """
        with self._lock:
            return dict(self._usage)

    def reset_usage(self) -> dict[str, Any]:
        """Return the totals and start counting from zero."""
        with self._lock:
            totals, self._usage = dict(self._usage), dict.fromkeys(_USAGE_KEYS, 0)
        return totals

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

    def prompt_hashes(self) -> dict[str, str]:
        """Template hashes: coherence, and each trait/continuation prompt used so far."""
        from ._io import sha256_text

        with self._lock:
            return {"coherence": sha256_text(COHERENCE_TEMPLATE), **self._hashes}

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (sync calls close theirs themselves)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    def close(self) -> None:
        """Close the score cache's database connection."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

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
                base_url=self.base_url or f"https://{_OPENAI_HOST}/v1",
                max_retries=0,
                timeout=self.timeout,
            )
            state = _LoopState(client, asyncio.Semaphore(self.concurrency))
            self._states[loop] = state
        return state

    def _note(self, label: str, prompts: Sequence[JudgePrompt]) -> None:
        if prompts:
            with self._lock:
                self._hashes[label] = prompts[0].prompt_hash

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self._usage[key] += amount

    def _cache_db(self) -> ScoreCache | None:
        if self.cache_path is None:
            return None
        with self._lock:
            if self._cache is None:
                self._cache = ScoreCache(self.cache_path)
            return self._cache

    def _params(self, mode: Mode) -> dict[str, Any]:
        if mode == "logprobs":
            return {"mode": mode, "max_tokens": 1, "temperature": 0, "top_logprobs": self.top_logprobs,
                    "min_mass": self.min_mass}  # fmt: skip
        return {"mode": mode, "max_tokens": self.text_max_tokens, "temperature": 0}

    async def _score_one(self, prompt: JudgePrompt, state: _LoopState) -> JudgeScore:
        cache = self._cache_db()
        if cache is not None:
            modes: tuple[Mode, ...] = ("text",) if self._logprobs is False else ("logprobs", "text")
            for mode in modes:
                hit = cache.get(cache_key(self.name, prompt.text, self._params(mode)))
                if hit is not None:
                    self._count(cache_hits=1)
                    return self._from_cache(prompt, hit)
        async with state.semaphore:
            result = await self._request_score(prompt, state)
        if cache is not None and result.status != "failed" and result.mode is not None:
            cache.put(
                cache_key(self.name, prompt.text, self._params(result.mode)),
                judge=self.name,
                kind=result.kind,
                prompt_hash=result.prompt_hash,
                score=result.score,
                status=result.status,
                mode=result.mode,
                mass=result.mass,
                reason=result.reason,
            )
        outcome = {"ok": "ok", "abstained": "abstentions", "failed": "failures"}[result.status]
        self._count(**{outcome: 1})
        return result

    def _from_cache(self, prompt: JudgePrompt, hit: CachedScore) -> JudgeScore:
        return JudgeScore(
            score=hit.score,
            status=hit.status,  # type: ignore[arg-type]
            mode=hit.mode,  # type: ignore[arg-type]
            kind=prompt.kind,
            reason=hit.reason,
            mass=hit.mass,
            prompt_hash=prompt.prompt_hash,
            judge=self.name,
            cached=True,
        )

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
            text = await self._attempts(prompt, "text", state)
            assert isinstance(text, JudgeScore)  # text mode never asks for logprobs
            if not outcome.certain and text.status != "failed":
                self._no_logprobs(outcome.reason)
            return text
        text = await self._attempts(prompt, "text", state)
        assert isinstance(text, JudgeScore)
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

    async def _attempts(self, prompt: JudgePrompt, mode: Mode, state: _LoopState) -> JudgeScore | _NoLogprobs:
        import httpx2
        import openai

        request: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": "user", "content": prompt.text}],
            "temperature": 0,
        }
        if mode == "logprobs":
            request.update(max_tokens=1, logprobs=True, top_logprobs=self.top_logprobs)
        else:
            request.update(max_tokens=self.text_max_tokens)
        attempts = self.max_retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            wait: float | None = None
            self._count(requests=1)
            try:
                # The call chat.completions.create makes, minus its typed-body transform (a no-op for this
                # plain JSON body, and ~15% of the client's CPU per request); the raw response is parsed here.
                raw = await state.client.post(
                    "/chat/completions", body=request, cast_to=httpx2.Response, options=_REQUEST_OPTIONS
                )
                body = raw.text
            except openai.BadRequestError as err:
                message = f"HTTP 400: {self._clean(err.message)}"
                if mode == "logprobs":
                    return _NoLogprobs(f"the server rejected the logprob parameters: {message}", certain=False)
                return self._failed(prompt, mode, message)
            except openai.APIStatusError as err:
                status = err.status_code
                message = f"HTTP {status}: {self._clean(err.message)}"
                if status in (401, 403):
                    raise JudgeError(
                        f"judge at {self.host} refused the API key ({message}); check OPENAI_API_KEY"
                    ) from None
                if status == 404:
                    raise JudgeError(
                        f"judge at {self.host} answered 404 for model {self.name!r} ({message}); check --judge-model "
                        "and that the base URL ends in /v1"
                    ) from None
                if status not in _RETRY_STATUS and status < 500:
                    return self._failed(prompt, mode, message)
                reason = message
                wait = _retry_after(err.response.headers)
            except openai.APITimeoutError:
                reason = f"timed out after {self.timeout:g} s"
            except openai.APIConnectionError as err:
                cause = f" ({type(err.__cause__).__name__})" if err.__cause__ is not None else ""
                reason = f"connection error{cause}: {self._clean(str(err))}"
            except openai.APIError as err:
                return self._failed(prompt, mode, f"{type(err).__name__}: {self._clean(str(err))}")
            else:
                parsed = self._parse(prompt, mode, body)
                if not isinstance(parsed, str):
                    return parsed
                reason = parsed
            if attempt + 1 < attempts:
                if wait is None:
                    wait = min(self.backoff_max, self.backoff_base * 2**attempt) * (0.5 + random.random() / 2)
                self._count(retries=1)
                logger.debug("judge %s: %s; retry %d/%d in %.2f s", self.name, reason, attempt + 1, self.max_retries,
                             wait)  # fmt: skip
                await asyncio.sleep(wait)
        return self._failed(prompt, mode, f"{reason} (gave up after {attempts} attempts)")

    def _parse(self, prompt: JudgePrompt, mode: Mode, body: str) -> JudgeScore | _NoLogprobs | str:
        """A score, a no-logprobs signal, or (a str) why the body is malformed and worth a retry."""
        try:
            data = json.loads(body)
        except ValueError:
            return f"malformed response body (not JSON: {self._clean(body[:60])!r})"
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return "malformed response body (no choices)"
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            return "malformed response body (choice has no message)"
        usage = data.get("usage")
        if isinstance(usage, dict):
            tokens = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")}
            self._count(**{k: int(v) for k, v in tokens.items() if isinstance(v, int | float)})
        if mode == "logprobs":
            top = _top_logprobs(choice.get("logprobs"))
            if top is None:
                return _NoLogprobs("its reply has no logprobs content", certain=True)
            score, mass = weighted_score(top)
            if score is None or mass < self.min_mass:
                shown = ", ".join(repr(t) for t, _ in sorted(top, key=lambda kv: -kv[1])[:3])
                return self._result(
                    prompt, None, "abstained", mode, mass,
                    f"only {mass:.3f} of the probability is on numbers 0-100 (threshold {self.min_mass:g}); "
                    f"top tokens {shown}",
                )  # fmt: skip
            return self._result(prompt, score, "ok", mode, mass, None)
        content = message.get("content")
        text = content if isinstance(content, str) else None
        value = parse_text_score(text)
        if value is None:
            shown = self._clean((text or "")[:40])
            return self._result(prompt, None, "abstained", mode, None, f"the reply {shown!r} holds no number 0-100")
        return self._result(prompt, value, "ok", mode, None, None)

    def _result(
        self,
        prompt: JudgePrompt,
        score: float | None,
        status: Literal["ok", "abstained", "failed"],
        mode: Mode,
        mass: float | None,
        reason: str | None,
    ) -> JudgeScore:
        return JudgeScore(score, status, mode, prompt.kind, reason, mass, prompt.prompt_hash, self.name, False)

    def _failed(self, prompt: JudgePrompt, mode: Mode, reason: str) -> JudgeScore:
        return self._result(prompt, None, "failed", mode, None, reason)

    def _clean(self, text: str) -> str:
        """Error text with the key (and anything that looks like a key or bearer token) masked, on one line."""
        key = self._key.reveal()
        if len(key) >= 4:
            text = text.replace(key, "***")
        text = re.sub(r"sk-[A-Za-z0-9_\-]{4,}", "sk-***", text)
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
        return " ".join(text.split())[:300]


_REQUEST_OPTIONS: Any = {"security": {"bearer_auth": True}}  # as chat.completions.create sends it

_USAGE_KEYS = (
    "requests",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "retries",
    "failures",
    "abstentions",
    "ok",
    "text_fallbacks",
)


def _top_logprobs(logprobs: Any) -> list[tuple[str, float]] | None:
    """(token, logprob) pairs of the first generated token's alternatives, or None when absent."""
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs")
    if not isinstance(top, list) or not top:
        return None
    pairs = [
        (entry["token"], float(entry["logprob"]))
        for entry in top
        if isinstance(entry, dict)
        and isinstance(entry.get("token"), str)
        and isinstance(entry.get("logprob"), int | float)
    ]
    return pairs or None


def _retry_after(headers: Any) -> float | None:
    """Seconds a 429/5xx asks the client to wait (``retry-after-ms``, ``Retry-After`` seconds or date)."""
    wait: float | None = None
    try:
        if headers.get("retry-after-ms") is not None:
            wait = float(headers["retry-after-ms"]) / 1000
    except (TypeError, ValueError):
        wait = None
    value = headers.get("retry-after") if wait is None else None
    if value is not None:
        try:
            wait = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                wait = when.timestamp() - time.time()
    if wait is None or not math.isfinite(wait):
        return None
    return min(max(wait, 0.0), _MAX_RETRY_AFTER)


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def _strip_userinfo(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def _check(name: str, value: Any, kind: type | tuple[type, ...], low: float | None, high: float | None) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        bounds = f"≥ {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise JudgeError(f"OpenAIJudge {name}={value!r} is invalid; expected a number {bounds}")
