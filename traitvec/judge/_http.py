"""The HTTP side of :class:`~traitvec.judge.openai.OpenAIJudge`: request bodies, reply parsing, retry timing, secrets.

Small values and functions; only :func:`send` touches the client, and none keeps state:

- :func:`request_body` — the chat-completions request for one prompt in logprobs or text mode;
  :func:`send` posts it once under an overall deadline (``asyncio.wait_for``: the client's own
  timeout is per read, so a server dripping a byte a second would otherwise hold a request for
  minutes) and sorts what went wrong (retry, give up, or raise for a bad key);
- :func:`parse_reply` — the raw JSON body read into a :class:`Reply` (or, as a ``str``, why it is
  malformed and worth a retry); :func:`top_logprobs` reads the first token's alternatives;
  :func:`read_score` turns a reply into a score, an abstention, a failure (a "distribution" that
  is not one: a logprob above 0, NaN, probabilities summing past 1) or :class:`Cut` (a text reply
  stopped by ``max_tokens``, which is never parsed);
- :func:`retry_after` — how long a 429/5xx asks the client to wait (``None`` for a non-positive,
  non-finite or absurd value); :func:`backoff` — the exponential delay with jitter otherwise;
- :func:`check_number`, :func:`check_endpoint` — the constructor's checks.

Every string from the server passes through the judge's mask (:mod:`traitvec.judge._secrets`)
before it is put in a reason or a message, and is masked *before* it is cut to length, so a key
cut in half cannot slip through.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..errors import JudgeError
from ._secrets import strip_userinfo
from .scores import Mode, weighted_score
from .textscore import read_text_score

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = [
    "ABSURD_RETRY_AFTER",
    "MASS_TOLERANCE",
    "MAX_RETRY_AFTER",
    "OPENAI_HOST",
    "REQUEST_OPTIONS",
    "RETRY_STATUS",
    "Cut",
    "Failed",
    "NoLogprobs",
    "Reading",
    "Reply",
    "Retry",
    "backoff",
    "check_endpoint",
    "check_number",
    "distribution_problem",
    "parse_reply",
    "read_score",
    "request_body",
    "retry_after",
    "send",
    "top_logprobs",
]

RETRY_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 120.0
"""The longest wait a ``Retry-After`` is honoured with (a longer, sane one is cut to this)."""
ABSURD_RETRY_AFTER = 3600.0
"""A ``Retry-After`` beyond this (or ≤ 0, or not finite) is ignored: exponential backoff instead."""
MASS_TOLERANCE = 0.02
"""How far past 1 the probabilities of the top tokens may sum (rounding) before the reply is refused."""
OPENAI_HOST = "api.openai.com"
REQUEST_OPTIONS: Any = {"security": {"bearer_auth": True}}  # as chat.completions.create sends it


@dataclass(frozen=True)
class NoLogprobs:
    """The server gave no logprobs (``certain``) or rejected the logprob parameters with 400."""

    reason: str
    certain: bool


@dataclass(frozen=True)
class Retry:
    """One attempt failed in a way worth retrying: why, how long the server asked to wait, and how.

    ``kind``: ``"status"`` (the server answered with 408/409/429/5xx), ``"malformed"`` (it answered
    with a body that is not a completion), ``"timeout"`` (no whole answer within the deadline) or
    ``"connection"`` (no connection).
    """

    reason: str
    wait: float | None = None
    kind: Literal["status", "malformed", "timeout", "connection"] = "status"


@dataclass(frozen=True)
class Cut:
    """A text reply stopped by ``max_tokens`` (``finish_reason`` ``"length"``): never parsed."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """One attempt failed for good (an HTTP 4xx other than the retryable ones, an unknown client error)."""

    reason: str


@dataclass(frozen=True)
class Reading:
    """The score read from a reply: ``ok`` with a score; ``abstained`` or ``failed`` with the reason."""

    score: float | None
    status: Literal["ok", "abstained", "failed"]
    mass: float | None
    reason: str | None


@dataclass(frozen=True)
class Reply:
    """What traitvec reads from a well-formed chat.completion body.

    Attributes:
        content: the message text (``None`` when it is not a string).
        top: (token, logprob) alternatives of the first generated token, or ``None`` when absent.
        tokens: ``prompt_tokens`` / ``completion_tokens`` the server reported (numbers only).
        finish: the choice's ``finish_reason`` (``None`` when absent or not a string).
    """

    content: str | None
    top: list[tuple[str, float]] | None
    tokens: dict[str, int]
    finish: str | None = None


def request_body(model: str, text: str, mode: Mode, *, top_logprobs: int, text_max_tokens: int) -> dict[str, Any]:
    """The chat-completions request scoring ``text``: one token with logprobs, or a few tokens of text."""
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}
    if mode == "logprobs":
        request.update(max_tokens=1, logprobs=True, top_logprobs=top_logprobs)
    else:
        request.update(max_tokens=text_max_tokens)
    return request


def parse_reply(body: str, clean: Callable[[str], str]) -> Reply | str:
    """The reply in ``body``, or (a str) why the body is malformed and worth a retry."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"malformed response body (not JSON: {clean(body)[:60]!r})"
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "malformed response body (no choices)"
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return "malformed response body (choice has no message)"
    tokens: dict[str, int] = {}
    usage = data.get("usage")
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            if isinstance(value, int | float):
                tokens[key] = int(value)
    content = message.get("content")
    finish = choice.get("finish_reason")
    return Reply(content if isinstance(content, str) else None, top_logprobs(choice.get("logprobs")), tokens,
                 finish if isinstance(finish, str) else None)  # fmt: skip


async def send(
    client: AsyncOpenAI, request: dict[str, Any], *, mode: Mode, timeout: float, clean: Callable[[str], str],
    host: str, model: str,
) -> str | NoLogprobs | Retry | Failed:  # fmt: skip
    """Post one chat-completions request: the raw body, or why there is none.

    ``timeout`` is the deadline of the whole attempt (connecting, sending, every byte of the reply).

    Raises:
        JudgeError: the API refused the key (401/403) or does not know the model or path (404).
    """
    import httpx2
    import openai

    try:
        # The call chat.completions.create makes, minus its typed-body transform (a no-op for this
        # plain JSON body, and ~15% of the client's CPU per request); the raw response is parsed here.
        post = client.post("/chat/completions", body=request, cast_to=httpx2.Response, options=REQUEST_OPTIONS)
        raw = await asyncio.wait_for(post, timeout)
        return raw.text
    except TimeoutError:
        return Retry(f"timed out: no complete reply within the {timeout:g} s deadline", kind="timeout")
    except openai.BadRequestError as err:
        message = f"HTTP 400: {clean(err.message)}"
        if mode == "logprobs":
            return NoLogprobs(f"the server rejected the logprob parameters: {message}", certain=False)
        return Failed(message)
    except openai.APIStatusError as err:
        status = err.status_code
        message = f"HTTP {status}: {clean(err.message)}"
        if status in (401, 403):
            raise JudgeError(f"judge at {host} refused the API key ({message}); check OPENAI_API_KEY") from None
        if status == 404:
            raise JudgeError(
                f"judge at {host} answered 404 for model {model!r} ({message}); check make_judge(model=) "
                "and that the base URL ends in /v1",
                setting="make_judge(model=)",
            ) from None
        if status not in RETRY_STATUS and status < 500:
            return Failed(message)
        return Retry(message, retry_after(err.response.headers))
    except openai.APITimeoutError:
        return Retry(f"timed out after {timeout:g} s", kind="timeout")
    except openai.APIConnectionError as err:
        cause = f" ({type(err.__cause__).__name__})" if err.__cause__ is not None else ""
        return Retry(f"connection error{cause}: {clean(str(err))}", kind="connection")
    except openai.APIError as err:
        return Failed(f"{type(err).__name__}: {clean(str(err))}")


def distribution_problem(top: list[tuple[str, float]], tolerance: float = MASS_TOLERANCE) -> str | None:
    """Why ``top`` is not a probability distribution (``None`` when it is one).

    A logprob that is NaN, or top tokens whose probabilities sum past ``1 + tolerance`` (a logprob
    above 0 alone does), cannot come from a model: such a reply is a failed response, not a score.
    """
    if any(math.isnan(lp) for _, lp in top):
        return "a logprob is NaN"
    total = math.fsum(math.exp(min(lp, 700.0)) for _, lp in top)
    if total > 1.0 + tolerance:
        worst = max(lp for _, lp in top)
        return f"the top tokens' probabilities sum to {total:.2f} (largest logprob {worst:g}); a distribution sums to 1"
    return None


def read_score(reply: Reply, mode: Mode, min_mass: float, clean: Callable[[str], str]) -> Reading | NoLogprobs | Cut:
    """The score in ``reply``: the logprob-weighted number (abstaining below ``min_mass``) or the written one."""
    if mode == "logprobs":
        top = reply.top
        if top is None:
            return NoLogprobs("its reply has no logprobs content", certain=True)
        problem = distribution_problem(top)
        if problem is not None:
            return Reading(None, "failed", None, f"invalid logprobs from the server: {problem}")
        score, mass = weighted_score(top)
        if score is None or mass < min_mass:
            shown = clean(", ".join(repr(t) for t, _ in sorted(top, key=lambda kv: -kv[1])[:3]))
            return Reading(
                None, "abstained", mass,
                f"only {mass:.3f} of the probability is on numbers 0-100 (threshold {min_mass:g}); top tokens {shown}",
            )  # fmt: skip
        return Reading(score, "ok", mass, None)
    shown = clean(reply.content or "")[:60]
    if reply.finish == "length":
        return Cut(f"the reply {shown!r} was cut by max_tokens (finish_reason 'length')")
    if reply.finish == "content_filter":
        return Reading(
            None, "abstained", None, f"the server filtered the reply {shown!r} (finish_reason 'content_filter')"
        )
    value, why = read_text_score(reply.content)
    if value is None:
        return Reading(None, "abstained", None, f"the reply {shown!r} holds no clear score 0-100: {why}")
    return Reading(value, "ok", None, None)


def top_logprobs(logprobs: object) -> list[tuple[str, float]] | None:
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


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429/5xx asks the client to wait (``retry-after-ms``, ``Retry-After`` seconds or date).

    ``None`` — use exponential backoff — when neither header is there or readable, or when the wait
    is not positive, not finite or absurd (over :data:`ABSURD_RETRY_AFTER`): ``Retry-After: -5``
    must not turn retries into a tight loop. A sane wait is cut to :data:`MAX_RETRY_AFTER`.
    """
    wait: float | None = None
    try:
        if headers.get("retry-after-ms") is not None:
            wait = float(headers["retry-after-ms"]) / 1000
    except (TypeError, ValueError):
        wait = None
    value = headers.get("retry-after") if wait is None or not math.isfinite(wait) or wait <= 0 else None
    if value is not None:
        try:
            wait = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            wait = when.timestamp() - time.time() if when is not None else None
    if wait is None or not math.isfinite(wait) or wait <= 0 or wait > ABSURD_RETRY_AFTER:
        return None
    return min(wait, MAX_RETRY_AFTER)


def backoff(attempt: int, base: float, longest: float) -> float:
    """Exponential delay before retry ``attempt + 1``: ``min(longest, base · 2^attempt)``, jittered to 50–100%."""
    return min(longest, base * 2.0**attempt) * (0.5 + random.random() / 2)


def check_number(name: str, value: object, *, integer: bool, low: float, high: float | None = None) -> None:
    """Raise :class:`JudgeError` unless ``value`` is a number (an ``int`` when ``integer``) in [low, high]."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    ok = number is not None and (isinstance(number, int) or not integer)
    if number is None or not ok or number < low or (high is not None and number > high):
        bounds = f"≥ {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise JudgeError(f"OpenAIJudge {name}={value!r} is invalid; expected a number {bounds}")


def check_endpoint(url: str | None, key: str | None) -> None:
    """A base URL must be http(s); without one there must be a key."""
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JudgeError(
                f"judge base URL {strip_userinfo(url)!r} is not an http(s) URL; "
                "use e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama)",
                setting="make_judge(base_url=)",
            )
    if key is None and url is None:
        raise JudgeError(
            "no judge API key: set OPENAI_API_KEY, or pass make_judge(base_url=) (or OPENAI_BASE_URL) for a local "
            "OpenAI-compatible server that needs no key, or use make_judge(local=) for a smoke test",
            setting="make_judge(base_url=)",
        )
