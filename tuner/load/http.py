"""An HTTP/1.1 client on asyncio.Protocol, built for streaming many responses at once from one core.

Why not httpx or aiohttp: per received chunk they run several layers of Python (pool, stream wrappers, async
iterators), which caps a one-core client well below what vLLM on a big accelerator can stream
(benchmarks/loadgen_capacity.py). Here `data_received` takes the receive timestamp once per socket read, as early as
the event loop allows, and hands the bytes to httptools (llhttp, the parser uvicorn and Node.js use), whose body
callback goes straight to the request's SSE consumer. One connection carries one request at a time (keep-alive, no
pipelining).

Connection lifecycle, as real servers behave: uvicorn (vLLM's server) closes a keep-alive connection after a few
idle seconds (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, default 5), which happens whenever streams wait while requests queue in
the server. A closed connection reports itself through `on_lost` so its owner drops it from any idle pool at once
and never sends on it. When the close races a new request (the server closed as the request was written), the
request ends with `CLOSED_BEFORE_RESPONSE` and `reused` set: safe to send again on a new connection, as mature
clients do; anything after the first response byte is a real failure.

A malformed response fails its request ("bad_http_response"). An exception raised by the consumer is not the
server's fault but a bug here: it goes to `on_error` (the driver fails the level with it) instead of being counted
as a failed request or dying in the event loop. llhttp reports a callback's exception as HttpParserCallbackError
with the original as its context, which is how the two are told apart.

Supported: http and https (asyncio's TLS), Content-Length, chunked transfer encoding, read-until-close bodies,
`Connection: close` and HTTP/1.0 responses. Not supported: proxies, HTTP/2, redirects (a benchmark must not follow
them silently anyway).
"""
from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

import httptools

from tuner.errors import ConnectionNotUsable, InvalidURL

perf_counter = time.perf_counter
CLOSED_BEFORE_RESPONSE = "closed_before_response"  # no response byte arrived: the request may be sent again
CONNECTION_CLOSED = "connection_closed"  # closed mid-response: a failure


class _UnexpectedResponse(Exception):
    """Raised inside the parser to stop it: response bytes arrived while no request was waiting for them. Control
    flow private to this module, caught where the parser is fed; never reaches a caller (tuner.errors holds those)."""


class BodyConsumer(TypingProtocol):
    """Receives a response as it arrives. `now` is the perf_counter() of the socket read that carried it."""

    def on_status(self, status: int, now: float) -> None: ...
    def on_body(self, data: bytes, now: float) -> None: ...
    def on_end(self, now: float, error: str | None) -> None: ...


@dataclass(frozen=True)
class Target:
    """Where requests go: scheme, host, port and path prefix of a base URL."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidURL(base_url)
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))

    def request_bytes(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        host = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n{extra}\r\n")
        return head.encode("latin-1") + body


class Connection(asyncio.Protocol):
    """One keep-alive connection; `send` starts a request whose response is fed to a BodyConsumer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_lost: Callable[[Connection], None] | None = None  # told once, when the connection is gone
        # Told about an exception raised by a consumer (a bug, not a server fault); without it, it is re-raised.
        self.on_error: Callable[[BaseException], None] | None = None
        self.requests_sent = 0
        self._consumer: BodyConsumer | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._now = 0.0
        self._got_response_bytes = False
        self._headers_done = False
        self._framed = False  # the body has a length or is chunked (else it ends when the server closes)

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # One parser for the connection's life: llhttp reads keep-alive responses one after another.
        self._parser = httptools.HttpResponseParser(self)

    def connection_lost(self, exc: Exception | None) -> None:
        now = perf_counter()
        self.transport = None
        try:
            if self._consumer is not None:
                self._finish(now, self._error_at_close(exc))
            if self.on_lost is not None:
                on_lost, self.on_lost = self.on_lost, None
                on_lost(self)
        except Exception as bug:
            self._surface(bug)

    def _error_at_close(self, exc: Exception | None) -> str | None:
        if self._headers_done and not self._framed and exc is None:
            # A body without length or chunking ends when the server closes (HTTP/1.0, `Connection: close`).
            # httptools exposes no llhttp_finish(), so the close itself is the end of the message.
            return None
        return CONNECTION_CLOSED if self._got_response_bytes else CLOSED_BEFORE_RESPONSE

    def data_received(self, data: bytes) -> None:
        if self._consumer is None or self._parser is None:  # bytes outside a request: never reuse this connection
            self.abort()
            return
        self._now = perf_counter()
        self._got_response_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # llhttp wraps what a callback raised; the original is the exception's context.
            cause = exc.__context__
            if isinstance(cause, _UnexpectedResponse):
                self._bad_response()
            else:
                self._surface(cause if cause is not None else exc)
        except httptools.HttpParserError:
            self._bad_response()

    def _bad_response(self) -> None:
        self._parser = None
        self._finish(self._now, "bad_http_response")
        self.abort()

    def _surface(self, bug: BaseException) -> None:
        """A consumer raised: that is a bug in this program, so the level must fail with it, not count a failure."""
        self._parser = None
        self.abort()
        if self.on_error is None:
            raise bug
        self.on_error(bug)

    # --- httptools callbacks (run inside feed_data, so self._now is the read's timestamp)
    def on_message_begin(self) -> None:
        if self._consumer is None:  # a response nobody asked for
            raise _UnexpectedResponse()
        self._headers_done = self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._consumer is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim response; the real head follows
            self._framed = False
            return
        self._headers_done = True
        self._consumer.on_status(status, self._now)

    def on_body(self, body: bytes) -> None:
        if self._consumer is not None and self._headers_done:
            self._consumer.on_body(body, self._now)

    def on_message_complete(self) -> None:
        if self._headers_done:
            self._finish(self._now, None)

    # --- requests
    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and self._consumer is None

    @property
    def reused(self) -> bool:
        """The current (or last) request was not the first on this connection."""
        return self.requests_sent > 1

    def send(self, request: bytes, consumer: BodyConsumer) -> float:
        """Write the request; returns the send timestamp (the request's start)."""
        if not self.usable:
            raise ConnectionNotUsable("send on a connection that is closed, closing or busy")
        assert self.transport is not None
        self._consumer = consumer
        self._got_response_bytes = self._headers_done = self._framed = False
        self.requests_sent += 1
        start = perf_counter()
        self.transport.write(request)
        return start

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _finish(self, now: float, error: str | None) -> None:
        consumer, self._consumer = self._consumer, None
        keep_alive = self._parser is not None and error is None and self._framed and self._parser.should_keep_alive()
        if not keep_alive and self.transport is not None:
            self.transport.close()  # `Connection: close`, HTTP/1.0, or a broken exchange: never reused
        if consumer is not None:
            try:
                consumer.on_end(now, error)
            except Exception as bug:
                self._surface(bug)


async def open_connection(target: Target, timeout_s: float = 10.0) -> Connection:
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if target.tls else None
    _, protocol = await asyncio.wait_for(
        loop.create_connection(Connection, target.host, target.port, ssl=context), timeout_s)
    return protocol
