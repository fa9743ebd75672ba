"""How the API judge scores one prompt: cache, attempts with retries, the text fallback and the re-ask.

:class:`RequestScoring` is the base of :class:`~traitvec.judge.openai.OpenAIJudge` that holds its
per-item logic, so each module stays small: the cache lookup under the keys of both modes, the
semaphore, the logprob attempt and the fallback to text mode (remembered for later items), the
retry loop (a sane ``Retry-After``, else exponential backoff with jitter), the one re-ask of a
text reply cut by ``max_tokens``, and the outcome counters. The settings it reads are set by
:class:`~traitvec.judge.openai.OpenAIJudge`; the request and parsing helpers are in
:mod:`traitvec.judge._http`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._http import OPENAI_HOST, Cut, Failed, NoLogprobs, Retry, backoff, parse_reply, read_score, request_body, send
from ._secrets import Secret, host
from .base import BaseJudge
from .cache import cache_key
from .prompts import JudgePrompt
from .scores import JudgeScore, Mode, Status
from .textscore import TEXT_PARSER_VERSION

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["RequestScoring"]

logger = logging.getLogger("traitvec.judge.openai")


@dataclass
class LoopState:
    """What belongs to one event loop: the HTTP client and the concurrency limit."""

    client: AsyncOpenAI
    semaphore: asyncio.Semaphore


class RequestScoring(BaseJudge):
    """The per-item scoring of an API judge (see the module docstring); subclassed by ``OpenAIJudge``."""

    base_url: str | None
    max_retries: int
    timeout: float
    min_mass: float
    top_logprobs: int
    text_max_tokens: int
    backoff_base: float
    backoff_max: float
    _key: Secret
    _logprobs: bool | None

    @property
    def host(self) -> str:
        """The API's host (and port), never credentials."""
        return host(self.base_url) if self.base_url else OPENAI_HOST

    @property
    def reask_tokens(self) -> int:
        """``max_tokens`` of the second request for a text reply cut by ``text_max_tokens``."""
        return max(64, 4 * self.text_max_tokens)

    def _params(self, mode: Mode) -> dict[str, Any]:
        if mode == "logprobs":
            return {"mode": mode, "max_tokens": 1, "temperature": 0, "top_logprobs": self.top_logprobs,
                    "min_mass": self.min_mass}  # fmt: skip
        # text-mode keys name the parser and the re-ask: a score read by an older parser is never reused
        return {"mode": mode, "max_tokens": self.text_max_tokens, "temperature": 0, "parser": TEXT_PARSER_VERSION,
                "reask_tokens": self.reask_tokens}  # fmt: skip

    def _key_for(self, prompt: JudgePrompt, mode: Mode) -> str:
        return cache_key(self.name, prompt.text, self._params(mode))

    async def _score_one(self, prompt: JudgePrompt, state: LoopState) -> JudgeScore:
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
        elif result.reason:
            self._note_error(result.reason)
        outcome = {"ok": "ok", "abstained": "abstentions", "failed": "failures"}[result.status]
        self._count(**{outcome: 1})
        return result

    async def _request_score(self, prompt: JudgePrompt, state: LoopState) -> JudgeScore:
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

    async def _text_attempts(self, prompt: JudgePrompt, state: LoopState) -> JudgeScore:
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

    async def _attempts(self, prompt: JudgePrompt, mode: Mode, state: LoopState) -> JudgeScore | NoLogprobs:
        request = request_body(self.name, prompt.text, mode, top_logprobs=self.top_logprobs,
                               text_max_tokens=self.text_max_tokens)  # fmt: skip
        attempts = self.max_retries + 1
        reason = "no attempt made"
        attempt = 0
        while attempt < attempts:
            outcome = await self._attempt(prompt, mode, state, request)
            if isinstance(outcome, Cut):
                if request["max_tokens"] < self.reask_tokens:  # asked again once, with room for the whole reply
                    request = {**request, "max_tokens": self.reask_tokens}
                    self._count(text_reasks=1)
                    continue
                return self._result(prompt, None, "abstained", mode, None,
                                    f"{outcome.reason} twice, at {request['max_tokens']} tokens too")  # fmt: skip
            if not isinstance(outcome, Retry):
                return outcome
            reason = outcome.reason
            attempt += 1
            if attempt < attempts:
                wait = outcome.wait if outcome.wait is not None else backoff(attempt - 1, self.backoff_base,
                                                                            self.backoff_max)  # fmt: skip
                self._count(retries=1)
                logger.debug("judge %s: %s; retry %d/%d in %.3f s", self.name, reason, attempt, self.max_retries,
                             wait)  # fmt: skip
                await asyncio.sleep(wait)
        return self._failed(prompt, mode, f"{reason} (gave up after {attempts} attempts)")

    async def _attempt(
        self, prompt: JudgePrompt, mode: Mode, state: LoopState, request: dict[str, Any]
    ) -> JudgeScore | NoLogprobs | Retry | Cut:
        """One request: a score, a no-logprobs signal, a :class:`~traitvec.judge._http.Retry` or a cut text reply."""
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
            return Retry(reply, kind="malformed")
        if reply.tokens:
            self._count(**reply.tokens)
        read = read_score(reply, mode, self.min_mass, clean)
        if isinstance(read, NoLogprobs | Cut):
            return read
        return self._result(prompt, read.score, read.status, mode, read.mass, read.reason)

    def _result(
        self, prompt: JudgePrompt, score: float | None, status: Status, mode: Mode, mass: float | None,
        reason: str | None,
    ) -> JudgeScore:  # fmt: skip
        shown = self._key.mask(reason) if reason is not None else None  # server text in a reason is masked already
        return JudgeScore(score, status, mode, prompt.kind, shown, mass, prompt.prompt_hash, self.name, False)

    def _mask(self, text: str) -> str:
        return self._key.scrub(text, limit=500)

    def _failed(self, prompt: JudgePrompt, mode: Mode, reason: str) -> JudgeScore:
        return self._result(prompt, None, "failed", mode, None, reason)
