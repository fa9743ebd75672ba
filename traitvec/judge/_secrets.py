"""Keeping the API key out of everything the judge writes, logs or returns.

Every string that comes from a judge server — error bodies, reply text, ``top_logprobs`` tokens,
response headers, the status line's reason phrase — may hold the key (a proxy that echoes the
``Authorization`` header back). :class:`Secret` holds the key and masks it:

- every occurrence of the whole key, **whatever its length** (a 3-character key too) and in any
  letter case;
- every run of text that holds 8 or more consecutive characters of the key (a key cut short by a
  length limit, or split across tokens);
- anything shaped like an OpenAI key (``sk-…``) and every ``Bearer …`` token.

Masking prefers safety to tidy messages: a short key is masked inside unrelated words as well.

:func:`scrubbing_client` builds the ``openai`` client's HTTP client with a transport that masks
response headers and the reason phrase *before* ``httpx2`` and ``openai`` log them (their debug
logs print the status line and the ``x-request-id`` header); proxies and limits stay the client's
defaults. Below any transport, ``httpcore2`` logs the raw response headers at DEBUG level; so the
client also puts a filter on ``httpcore2``'s loggers (once, when the first client of a judge with a
key is made) that masks the keys of every live judge in their records. That is the one change
traitvec makes to another library's state; it only rewrites records that hold a key.
:func:`host` and :func:`strip_userinfo` keep credentials out of URLs shown to users.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx2

__all__ = ["FRAGMENT", "Secret", "host", "scrubbing_client", "strip_userinfo"]

FRAGMENT = 8
"""Consecutive characters of the key that are masked wherever they appear."""
_SCAN_LIMIT = 20_000  # characters of one string masked and kept; longer server strings are cut first
_LOOKS_LIKE_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_HTTPCORE_LOGGERS = ("httpcore2.http11", "httpcore2.http2", "httpcore2.connection", "httpcore2.proxy",
                     "httpcore2.socks")  # fmt: skip


class Secret:
    """Holds an API key (or none); prints as ``'***'``.

    Args:
        value: the key; ``None`` when the server needs none (a placeholder is sent instead).
    """

    __slots__ = ("_fragments", "_value", "_whole", "__weakref__")

    def __init__(self, value: str | None) -> None:
        self._value = value or None
        self._whole: re.Pattern[str] | None = None
        self._fragments: re.Pattern[str] | None = None
        if self._value is not None:
            key = self._value
            self._whole = re.compile(re.escape(key), re.IGNORECASE)
            if len(key) >= FRAGMENT:
                grams = sorted({key[i : i + FRAGMENT] for i in range(len(key) - FRAGMENT + 1)})
                # a lookahead finds every start, overlapping ones too, so a run of key characters is masked whole
                self._fragments = re.compile("(?=(?:" + "|".join(map(re.escape, grams)) + "))", re.IGNORECASE)

    def reveal(self) -> str:
        """The key itself, or a placeholder (only for the client's ``Authorization`` header)."""
        return self._value or "no-key"

    def mask(self, text: str) -> str:
        """``text`` with the key, its fragments and anything shaped like a key or bearer token masked.

        Example:
            >>> Secret("k9z").mask("Incorrect API key provided: k9z")
            'Incorrect API key provided: ***'
        """
        text = text[:_SCAN_LIMIT]
        if self._whole is not None:
            text = self._whole.sub("***", text)
        if self._fragments is not None and self._fragments.search(text):
            text = _mask_runs(text, [m.start() for m in self._fragments.finditer(text)])
        text = _LOOKS_LIKE_KEY.sub("sk-***", text)
        return _BEARER.sub(r"\1***", text)

    def mask_all(self, text: str) -> str:
        """:meth:`mask` without a length limit on what is kept (for log records)."""
        parts = [text[i : i + _SCAN_LIMIT] for i in range(0, len(text), _SCAN_LIMIT)] or [""]
        return "".join(self.mask(part) for part in parts)

    def scrub(self, text: str, limit: int = 300) -> str:
        """:meth:`mask`, then on one line and at most ``limit`` characters (for reasons and messages)."""
        return " ".join(self.mask(text).split())[:limit]

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _mask_runs(text: str, starts: list[int]) -> str:
    """Replace each run of characters covered by a :data:`FRAGMENT`-long match at ``starts`` with ``***``."""
    out: list[str] = []
    kept = 0  # text[:kept] is written out
    end = -1  # end of the run being masked
    for start in starts:
        if start > end:
            if end >= 0:
                out.append("***")
                kept = end
            out.append(text[kept:start])
        end = max(end, start + FRAGMENT)
    out.append("***")
    out.append(text[end:])
    return "".join(out)


def host(url: str) -> str:
    """The host (and port) of ``url``, never its credentials."""
    parts = urlsplit(url)
    name = parts.hostname or ""
    return f"{name}:{parts.port}" if parts.port else name


def strip_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def scrubbing_client(secret: Secret, *, timeout: float) -> httpx2.AsyncClient:
    """The ``openai`` client's default async HTTP client, whose responses reach no log unmasked.

    Args:
        secret: the judge's key.
        timeout: the client's per-read timeout in seconds (the overall deadline is the judge's).
    """
    if secret._value is not None:
        _guard_http_logs(secret)
    client: httpx2.AsyncClient = _client_class()(secret.mask, timeout=timeout)
    return client


_live: weakref.WeakSet[Secret] = weakref.WeakSet()
_guard_lock = threading.Lock()


class _MaskingFilter(logging.Filter):
    """Masks the keys of live judges in a record (``httpcore2`` logs raw response headers at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _guard_lock:  # another thread may add a judge's secret meanwhile
            secrets = list(_live)
        if secrets:
            message = record.getMessage()
            masked = message
            for secret in secrets:
                masked = secret.mask_all(masked)
            if masked != message:
                record.msg, record.args = masked, None
        return True


_FILTER = _MaskingFilter()


def _guard_http_logs(secret: Secret) -> None:
    with _guard_lock:
        _live.add(secret)
        for name in _HTTPCORE_LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


@functools.cache
def _client_class() -> Any:
    """The client class, built on first use (it imports ``httpx2`` and ``openai``)."""
    import httpx2
    from openai import DefaultAsyncHttpxClient

    class ScrubbingTransport(httpx2.AsyncBaseTransport):
        """Masks response headers and the reason phrase, then hands the response on unchanged otherwise."""

        def __init__(self, inner: httpx2.AsyncBaseTransport, mask: Callable[[str], str]) -> None:
            self._inner = inner
            self._mask = mask

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            response = await self._inner.handle_async_request(request)
            headers = [(name, self._mask(value)) for name, value in response.headers.multi_items()]
            extensions = dict(response.extensions)
            phrase = extensions.get("reason_phrase")
            if isinstance(phrase, bytes):
                extensions["reason_phrase"] = self._mask(phrase.decode("latin-1")).encode("latin-1", "replace")
            if headers == response.headers.multi_items() and extensions.get("reason_phrase") == phrase:
                return response
            return httpx2.Response(response.status_code, headers=headers, stream=response.stream,
                                   extensions=extensions)  # fmt: skip

        async def aclose(self) -> None:
            pass  # the client closes its own transports

    class ScrubbingClient(DefaultAsyncHttpxClient):
        def __init__(self, mask: Callable[[str], str], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._traitvec_mask = mask
            self._traitvec_wrapped: dict[int, ScrubbingTransport] = {}

        def _transport_for_url(self, url: httpx2.URL) -> httpx2.AsyncBaseTransport:
            inner = super()._transport_for_url(url)
            wrapped = self._traitvec_wrapped.get(id(inner))
            if wrapped is None:
                wrapped = self._traitvec_wrapped[id(inner)] = ScrubbingTransport(inner, self._traitvec_mask)
            return wrapped

    return ScrubbingClient
