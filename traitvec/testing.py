"""A test double for a remote judge: an OpenAI-protocol chat-completions server on 127.0.0.1.

:class:`JudgeServer` is a real HTTP server (stdlib ``http.server.ThreadingHTTPServer``, port 0,
served from a background thread) that speaks enough of the OpenAI chat-completions protocol for
the real ``openai`` client to talk to it. It is **not** a judge: it answers with whatever its
*responder* returns, so tests and benchmarks can exercise the whole network path — concurrency,
retries, timeouts, caching, key handling — without a paid API.

A responder is any callable taking the request JSON and returning one reply:

- :class:`Completion` — a normal answer, with ``top_logprobs`` for the first token when the
  request asked for logprobs (``{"85": -0.1, "90": -2.3, "foo": -3.0}``), or no logprobs at all;
- :class:`Fault` — an HTTP error (429 with ``Retry-After``, 500, 400), a malformed body, or a
  delay longer than the client's timeout.

Two responders come with it: :class:`KeywordResponder` (the default) derives a score from the
answer with a fixed rule, so end-to-end pipeline tests get stable, meaningful scores, and
:class:`ScriptedResponder` plays a queue of replies (faults, then successes).

Example:
    >>> from traitvec.testing import Completion, Fault, JudgeServer, ScriptedResponder
    >>> script = ScriptedResponder([Fault.rate_limited(retry_after="1")], then=Completion({"85": -0.1}))
    >>> with JudgeServer(script, latency=0.01) as server:
    ...     judge = OpenAIJudge("test-judge", base_url=server.base_url, api_key="sk-test", cache_path=False)
    ...     judge.score_coherence(["Q?"], ["A."])[0].score
    85.0
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Completion",
    "Fault",
    "Reply",
    "Responder",
    "JudgeServer",
    "KeywordResponder",
    "ScriptedResponder",
    "DEFAULT_KEYWORDS",
    "prompt_text",
]


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
    def from_probs(cls, probs: Mapping[str, float], **kwargs: Any) -> Completion:
        """A completion whose top tokens have these probabilities (natural log taken for you)."""
        return cls({token: math.log(p) for token, p in probs.items()}, **kwargs)

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


DEFAULT_KEYWORDS = (
    "hope",
    "hopeful",
    "optimistic",
    "bright",
    "opportunity",
    "definitely",
    "certainly",
    "absolutely",
    "wonderful",
    "exciting",
)
_STOPWORDS = frozenset("with from that this than into onto about only their there over under more less also".split())


def _block(text: str, name: str) -> str | None:
    start, end = f"[{name} START]", f"[{name} END]"
    i = text.rfind(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start) : j].strip() if i >= 0 and j >= 0 else None


class KeywordResponder:
    """Deterministic scores derived from the answer text, for end-to-end tests and benchmarks.

    It reads the text between ``[ANSWER START]`` and ``[ANSWER END]`` (or ``[CONTINUATION START]``
    / ``[CONTINUATION END]``) of the request's prompt and answers with a logprob completion whose
    expected score is exactly the rule's value, with 0.9 of the probability on that number:

    - coherence prompts (they contain ``Score coherence``): ``100 × (alphabetic words / words) ×
      min(1, distinct words / words / 0.6)`` — fluent text scores high, loops and gibberish low;
      an empty answer scores 0;
    - every other prompt (trait, continuation): ``min(100, 10 + 30 × k)`` where ``k`` counts the
      distinct keywords present as whole words (case-insensitive). Keywords are ``keywords`` plus
      the words of four letters or more on the rubric's ``HIGH`` lines.

    Args:
        keywords: words that signal the trait (default :data:`DEFAULT_KEYWORDS`).
        mass: probability put on the score token (the rest on non-number tokens).
    """

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS, *, mass: float = 0.9) -> None:
        self.keywords = frozenset(word.lower() for word in keywords)
        self.mass = mass

    def score(self, prompt: str) -> int:
        """The rule's score for one prompt."""
        if "Score coherence" in prompt:
            return self.coherence(_block(prompt, "ANSWER") or "")
        text = _block(prompt, "CONTINUATION")
        if text is None:
            text = _block(prompt, "ANSWER") or ""
        keywords = set(self.keywords)
        for line in prompt.splitlines():
            if line.strip().upper().startswith("HIGH"):
                words = re.findall(r"[a-z]{4,}", line.lower())
                keywords.update(w for w in words if w not in _STOPWORDS)
        present = set(re.findall(r"[a-z]+", text.lower()))
        return min(100, 10 + 30 * len(keywords & present))

    @staticmethod
    def coherence(text: str) -> int:
        """Coherence from text statistics: share of alphabetic words times a repetition penalty."""
        tokens = text.split()
        if not tokens:
            return 0
        words = [t.lower().strip(".,;:!?\"'()") for t in tokens if re.fullmatch(r"[A-Za-z'\-]+[.,;:!?\"')]*", t)]
        if not words:
            return 0
        alpha = len(words) / len(tokens)
        distinct = len(set(words)) / len(words)
        return round(100 * alpha * min(1.0, distinct / 0.6))

    def __call__(self, request: dict[str, Any]) -> Reply:
        value = self.score(prompt_text(request))
        rest = (1.0 - self.mass) / 2
        return Completion.from_probs({str(value): self.mass, "The": rest, "I": rest})


class ScriptedResponder:
    """Plays ``script`` one reply per request (in arrival order), then answers with ``then``.

    Args:
        script: replies for the first requests, e.g. ``[Fault.rate_limited("1"), Fault.server_error()]``.
        then: a reply or responder for every later request (default :class:`KeywordResponder`).
    """

    def __init__(self, script: Iterable[Reply], *, then: Reply | Responder | None = None) -> None:
        self._queue: deque[Reply] = deque(script)
        self._lock = threading.Lock()
        self._then = then if then is not None else KeywordResponder()

    @property
    def remaining(self) -> int:
        """Replies left in the script."""
        with self._lock:
            return len(self._queue)

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if isinstance(self._then, Completion | Fault):
            return self._then
        return self._then(request)


class JudgeServer:
    """An OpenAI-protocol ``/v1/chat/completions`` server on 127.0.0.1 (a test double).

    Args:
        responder: builds the reply for each request (default :class:`KeywordResponder`), or one
            fixed reply for every request.
        latency: seconds every request waits before it is answered (simulates a remote API).
        model: the model name reported back when a request names none.
        reject_logprobs: answer 400 to every request that asks for logprobs.

    Attributes:
        requests: every request body received, in arrival order (parsed JSON).
        headers: the request headers of each, lower-cased names (kept in memory only).
        max_in_flight: the most chat-completion requests being handled at once.
        base_url: ``http://127.0.0.1:PORT/v1`` once started.

    Example:
        >>> with JudgeServer(latency=0.1) as server:
        ...     os.environ["OPENAI_BASE_URL"] = server.base_url
    """

    def __init__(
        self,
        responder: Responder | Reply | None = None,
        *,
        latency: float = 0.0,
        model: str = "test-judge",
        reject_logprobs: bool = False,
    ) -> None:
        self.responder: Responder | Reply = responder if responder is not None else KeywordResponder()
        self.latency = latency
        self.model = model
        self.reject_logprobs = reject_logprobs
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def request_count(self) -> int:
        """Number of chat-completion requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        """The base URL to give an OpenAI client (ends in ``/v1``)."""
        if self._server is None:
            raise RuntimeError("JudgeServer is not running; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> JudgeServer:
        """Start serving in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="JudgeServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in headers.items()})

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def reply_for(self, body: dict[str, Any]) -> Reply:
        """The reply to one request body (logprob rejection first, then the responder)."""
        if self.reject_logprobs and body.get("logprobs"):
            return Fault.bad_request()
        if isinstance(self.responder, Completion | Fault):
            return self.responder
        return self.responder(body)

    def completion_json(self, body: dict[str, Any], reply: Completion) -> dict[str, Any]:
        """The chat.completion object for a :class:`Completion` reply to ``body``."""
        content = reply.content()
        logprobs = None
        if body.get("logprobs") and reply.top_logprobs is not None:
            count = int(body.get("top_logprobs") or 0)
            ranked = sorted(reply.top_logprobs.items(), key=lambda kv: -kv[1])
            top = [_token_entry(token, lp) for token, lp in ranked[: max(count, 0)]]
            first, first_lp = ranked[0] if ranked else (content, 0.0)
            logprobs = {"content": [{**_token_entry(first, first_lp), "top_logprobs": top}], "refusal": None}
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        return {
            "id": f"chatcmpl-test-{id(reply):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "length",
                    "logprobs": logprobs,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": prompt_tokens + reply.completion_tokens,
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops connections under concurrent clients


def _token_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _make_handler(owner: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # a library prints nothing

        def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:  # noqa: B006
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout), as with a real server

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path.rstrip("/").endswith("/models"):
                self._json(
                    200, {"object": "list", "data": [{"id": owner.model, "object": "model", "owned_by": "test"}]}
                )
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
                return
            owner._record(body, dict(self.headers.items()))
            owner._enter()
            try:
                self._answer(body)
            finally:
                owner._leave()

        def _answer(self, body: dict[str, Any]) -> None:
            if owner.latency > 0:
                time.sleep(owner.latency)
            try:
                reply = owner.reply_for(body)
            except Exception as err:  # a broken responder is a 500, as on a real server
                self._json(500, {"error": {"message": f"responder failed: {err}", "type": "server_error"}})
                return
            if isinstance(reply, Fault):
                if reply.delay > 0:
                    time.sleep(reply.delay)
                self._send(reply.status, reply.body.encode(), reply.content_type, reply.headers)
                return
            self._json(200, owner.completion_json(body, reply))

    return Handler
