"""The API judge's preflight: one cheap request before any model work, failing fast when the judge is unusable.

:func:`preflight` sends one chat completion of a single token (``max_tokens=1``, a prompt of a few
words, no logprobs — servers without logprobs pass) under a short overall deadline
(:data:`CHECK_DEADLINE`, 5 s, or the judge's ``timeout`` when shorter), with no retries:

| the server                                   | the check                                             |
|----------------------------------------------|-------------------------------------------------------|
| answers (any 200)                            | passes                                                |
| refuses the connection, unknown host, no     | raises :class:`~traitvec.errors.JudgeError` naming    |
| answer within the deadline                   | the URL, at once or within the deadline               |
| answers 401/403 (key) or 404 (model or path) | raises, as scoring does                               |
| answers another 4xx (a rejected parameter)   | raises: every score would fail the same way           |
| answers 429/5xx, or a body that is not JSON  | passes with a warning (the scores retry those)        |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import JudgeError
from ._http import Failed, Retry, parse_reply, send

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["CHECK_DEADLINE", "CHECK_PROMPT", "preflight"]

CHECK_DEADLINE = 5.0
"""Seconds the preflight waits at most for its one request."""
CHECK_PROMPT = "Reply with the number 0."


async def preflight(
    client: AsyncOpenAI, *, model: str, host: str, url: str, deadline: float, clean: Callable[[str], str]
) -> tuple[str | None, dict[str, int]]:
    """Send the one test request: ``(warning or None, tokens the server reported)``.

    Args:
        client: the judge's client.
        model: the judge model.
        host: the server's host, for messages raised by :func:`~traitvec.judge._http.send`.
        url: the base URL without credentials, for the messages raised here.
        deadline: seconds for the whole request.
        clean: masks the key in server text.

    Raises:
        JudgeError: the judge is unreachable or misconfigured (see the module docstring).
    """
    request = {"model": model, "messages": [{"role": "user", "content": CHECK_PROMPT}], "max_tokens": 1,
               "temperature": 0}  # fmt: skip
    sent = await send(client, request, mode="text", timeout=deadline, clean=clean, host=host, model=model)
    if isinstance(sent, str):
        reply = parse_reply(sent, clean)
        if isinstance(reply, str):
            return f"judge at {url} answered the test request with a {reply}; scores will retry such replies", {}
        return None, reply.tokens
    if isinstance(sent, Retry) and sent.kind in ("timeout", "connection"):
        raise JudgeError(
            f"judge at {url} is unreachable ({sent.reason}); check make_judge(base_url=) (or OPENAI_BASE_URL) "
            "and that the server is running",
            setting="make_judge(base_url=)",
        )
    if isinstance(sent, Retry):
        return f"judge at {url} answered the test request with {sent.reason}; scores will retry such answers", {}
    if isinstance(sent, Failed):
        raise JudgeError(
            f"judge at {url} rejected a 1-token test request for model {model!r} ({sent.reason}); every score "
            "would fail the same way: check make_judge(model=) and what the server accepts",
            setting="make_judge(model=)",
        )
    raise AssertionError(f"a text-mode test request reported missing logprobs: {sent.reason}")
