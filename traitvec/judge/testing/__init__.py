"""A test double for a remote judge: an OpenAI-protocol chat-completions server on 127.0.0.1.

:class:`JudgeServer` is a real HTTP server (stdlib ``http.server.ThreadingHTTPServer``, port 0,
served from a background thread) that speaks enough of the OpenAI chat-completions protocol for
the real ``openai`` client to talk to it. It is **not** a judge: it answers with whatever its
*responder* returns, so tests and benchmarks can exercise the whole network path — concurrency,
retries, timeouts, caching, key handling — without a paid API.

A responder is any callable taking the request JSON and returning one reply:

- :class:`Completion` — a normal answer, with ``top_logprobs`` for the first token when the
  request asked for logprobs (``{"85": -0.1, "90": -2.3, "foo": -3.0}``), or no logprobs at all;
- :class:`Fault` — an HTTP error (429 with ``Retry-After``, 500, 400), a malformed body, a delay
  longer than the client's timeout, a body dripped a byte at a time (:meth:`Fault.dripping`), a
  chosen reason phrase.

A :class:`Completion` can also carry response headers, a ``finish_reason``, logprobs that are no
distribution (``{"85": 2.0}``, ``float("nan")``), and play a digit-by-digit tokenizer that cuts
its text at the request's ``max_tokens`` (``digit_tokens=True``).

Three responders come with it: :class:`KeywordResponder` (the default) derives a score from the
answer with a fixed rule, so end-to-end pipeline tests get stable, meaningful scores;
:class:`ScriptedResponder` plays a queue of replies (faults, then successes); and
:class:`EchoKeyResponder` is a hostile proxy that serves the request's API key back in tokens,
text, error bodies, headers or the status line (it reads :func:`request_headers`).

Example:
    >>> from traitvec.judge.testing import Completion, Fault, JudgeServer, ScriptedResponder
    >>> script = ScriptedResponder([Fault.rate_limited(retry_after="1")], then=Completion({"85": -0.1}))
    >>> with JudgeServer(script, latency=0.01) as server:
    ...     judge = OpenAIJudge("test-judge", base_url=server.base_url, api_key="sk-test", cache_path=False)
    ...     judge.score_coherence(["Q?"], ["A."])[0].score
    85.0

The package has three modules: :mod:`~traitvec.judge.testing.replies` (what one reply is),
:mod:`~traitvec.judge.testing.responders` (the two responders) and
:mod:`~traitvec.judge.testing.server` (the HTTP server).
"""

from __future__ import annotations

from .replies import Completion, Fault, Reply, Responder, digit_tokens, prompt_text, request_headers
from .responders import DEFAULT_KEYWORDS, EchoKeyResponder, KeywordResponder, ScriptedResponder
from .server import JudgeServer

__all__ = [
    "Completion",
    "Fault",
    "Reply",
    "Responder",
    "JudgeServer",
    "KeywordResponder",
    "ScriptedResponder",
    "EchoKeyResponder",
    "DEFAULT_KEYWORDS",
    "digit_tokens",
    "prompt_text",
    "request_headers",
]
