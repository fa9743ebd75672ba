"""The replies a :class:`~traitvec.judge.testing.JudgeServer` can send: a :class:`Completion` or a :class:`Fault`.

A *responder* is any callable taking the request JSON and returning one :data:`Reply`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Completion", "Fault", "Reply", "Responder", "prompt_text"]


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
    """

    top_logprobs: Mapping[str, float] | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 1

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
    :meth:`malformed`, :meth:`missing_choices`, :meth:`bad_request`.
    """

    status: int = 500
    body: str = '{"error": {"message": "internal error", "type": "server_error"}}'
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"

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


Reply = Completion | Fault
Responder = Callable[[dict[str, Any]], Reply]


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
