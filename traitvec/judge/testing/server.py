"""The HTTP side of the judge test double: :class:`JudgeServer`, a ``/v1/chat/completions`` server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .replies import Completion, Fault, Reply, Responder, set_request_headers
from .responders import KeywordResponder

__all__ = ["JudgeServer"]


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
        content, finish = reply.reply_text(body)
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
                    "finish_reason": finish,
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

        def _send(
            self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {},  # noqa: B006
            *, reason: str | None = None, drip: float = 0.0,
        ) -> None:  # fmt: skip
            try:
                self.send_response(status, reason)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if drip <= 0:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
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
            set_request_headers({k.lower(): v for k, v in self.headers.items()})
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
                self._send(reply.status, reply.body.encode(), reply.content_type, reply.headers, reason=reply.reason,
                           drip=reply.drip)  # fmt: skip
                return
            data = json.dumps(owner.completion_json(body, reply)).encode()
            self._send(200, data, "application/json", reply.headers)

    return Handler
