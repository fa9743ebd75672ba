"""The replies a :class:`~traitvec.judge.testing.JudgeServer` can send: a :class:`Completion` or a :class:`Fault`.

A *responder* is any callable taking the request JSON and returning one :data:`Reply`; one that
needs the request's headers (a proxy echoing ``Authorization``) reads :func:`request_headers`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Completion", "Fault", "Reply", "Responder", "digit_tokens", "prompt_text", "request_headers"]

_current = threading.local()


@dataclass(frozen=True)
class Completion:
    """A successful chat completion.

    Attributes:
        top_logprobs: token → log-probability for the first generated token, sent when the request
            asks for ``logprobs`` (cut to its ``top_logprobs`` count, most likely first). ``None``
            sends no logprobs even when asked, as servers without logprob support do.
        text: the message content; by default the most likely token of ``top_logprobs``.
        prompt_tokens: reported prompt tokens (default: a word count of the messages).
        completion_tokens: reported completion tokens.
        finish_reason: the choice's ``finish_reason``; by default ``"length"`` for a logprob request
            (its one token) and ``"stop"`` for a text request, or ``"length"`` when cut (below).
        digit_tokens: play a tokenizer that writes numbers digit by digit: the text is cut to the
            request's ``max_tokens``, counting each digit, word, run of spaces and punctuation
            mark as one token (:func:`digit_tokens`), and ``finish_reason`` is ``"length"`` when cut.
        headers: extra response headers (e.g. ``x-request-id``).
    """

    top_logprobs: Mapping[str, float] | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 1
    finish_reason: str | None = None
    digit_tokens: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_probs(
        cls,
        probs: Mapping[str, float],
        *,
        text: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int = 1,
    ) -> Completion:
        """A completion whose top tokens have these probabilities (natural log taken for you)."""
        top = {token: math.log(p) for token, p in probs.items()}
        return cls(top, text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def reply_text(self, request: Mapping[str, Any]) -> tuple[str, str]:
        """The content and ``finish_reason`` sent for ``request`` (cut to its ``max_tokens`` if asked)."""
        content = self.content()
        asks_logprobs = bool(request.get("logprobs"))
        finish = self.finish_reason or ("length" if asks_logprobs else "stop")
        limit = request.get("max_tokens")
        if self.digit_tokens and not asks_logprobs and isinstance(limit, int):
            pieces = digit_tokens(content)
            if len(pieces) > limit:
                content, finish = "".join(pieces[:limit]), "length"
        return content, finish

    def content(self) -> str:
        """The message content this completion sends."""
        if self.text is not None:
            return self.text
        if self.top_logprobs:
            return max(self.top_logprobs.items(), key=lambda kv: kv[1])[0]
        return ""


@dataclass(frozen=True)
class Fault:
    """An error reply: a status, a (possibly malformed) body, headers, and a delay before it.

    Use the constructors: :meth:`rate_limited`, :meth:`server_error`, :meth:`timeout`,
    :meth:`malformed`, :meth:`missing_choices`, :meth:`bad_request`, :meth:`dripping`.

    Attributes:
        status: the HTTP status.
        body: the body, sent as is.
        headers: extra response headers.
        delay: seconds before anything is sent.
        content_type: the ``Content-Type`` header.
        reason: the status line's reason phrase (default: the standard one).
        drip: seconds between the bytes of the body (0: all at once) — a server that keeps a
            request alive a byte at a time, which a per-read timeout never ends.
    """

    status: int = 500
    body: str = '{"error": {"message": "internal error", "type": "server_error"}}'
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"
    reason: str | None = None
    drip: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1") -> Fault:
        """HTTP 429, with ``Retry-After`` (seconds or an HTTP date) unless ``None``."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = '{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
        return cls(429, body, headers)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """An HTTP 5xx error."""
        return cls(status)

    @classmethod
    def timeout(cls, seconds: float = 5.0) -> Fault:
        """Answer only after ``seconds`` (make it longer than the client's timeout)."""
        return cls(500, delay=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls(200, '{"id": "chatcmpl-broken", "choices": [')

    @classmethod
    def missing_choices(cls) -> Fault:
        """HTTP 200 with JSON that has no ``choices``."""
        return cls(200, '{"id": "chatcmpl-empty", "object": "chat.completion", "created": 0, "model": "x"}')

    @classmethod
    def bad_request(cls, message: str = "logprobs are not supported by this model", param: str = "logprobs") -> Fault:
        """HTTP 400, as a server that rejects a parameter sends."""
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param}})
        return cls(400, body)

    @classmethod
    def dripping(cls, seconds_per_byte: float = 1.0, score: str = "50") -> Fault:
        """HTTP 200 with a valid logprob completion scoring ``score``, sent one byte every ``seconds_per_byte``."""
        body = {
            "id": "chatcmpl-drip", "object": "chat.completion", "created": 0, "model": "drip",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": score}, "finish_reason": "length",
                         "logprobs": {"content": [{"token": score, "logprob": 0.0, "top_logprobs": [
                             {"token": score, "logprob": 0.0}]}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
        return cls(200, json.dumps(body), drip=seconds_per_byte)


Reply = Completion | Fault
Responder = Callable[[dict[str, Any]], Reply]


def digit_tokens(text: str) -> list[str]:
    """``text`` as a digit-by-digit tokenizer splits it: each digit, word, run of spaces, other character.

    Example:
        >>> digit_tokens("Score: 100")
        ['Score', ':', ' ', '1', '0', '0']
    """
    return re.findall(r"\d|[^\W\d_]+|\s+|.", text, flags=re.DOTALL)


def request_headers() -> Mapping[str, str]:
    """The headers (lower-case names) of the request being answered, for a responder called by the server."""
    headers: Mapping[str, str] = getattr(_current, "headers", {})
    return headers


def set_request_headers(headers: Mapping[str, str]) -> None:
    """Called by the server before it calls the responder (the headers are per handler thread)."""
    _current.headers = dict(headers)


def prompt_text(request: Mapping[str, Any]) -> str:
    """The text of the last user message of a chat-completions request."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""
