"""A minimal HTTP/1.1 client on asyncio.Protocol, built for streaming many responses at once from one core.

Why not httpx or aiohttp: per received chunk they run several layers of Python (pool, stream wrappers, async
iterators), which caps a one-core client well below what vLLM on a big accelerator can stream
(../shared/reference/load-generator-anchors.md). Here `data_received` goes straight from the socket to the
chunked-transfer decoder and the SSE consumer, and the receive timestamp is taken once per socket read, as early
as the event loop allows. One connection carries one request at a time (keep-alive, no pipelining).

Supported: http and https (asyncio's TLS), Content-Length, chunked transfer encoding, read-until-close bodies.
Not supported: proxies, HTTP/2, redirects (a benchmark must not follow them silently anyway).
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from tuner.errors import InputError

perf_counter = time.perf_counter


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
    def parse(cls, base_url: str) -> "Target":
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("URL", base_url, "an http:// or https:// base URL, e.g. http://127.0.0.1:8000")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))

    def request_bytes(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        host = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n{extra}\r\n")
        return head.encode("latin-1") + body


# Response parsing states
_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _LENGTH, _UNTIL_CLOSE, _IDLE = range(8)


class Connection(asyncio.Protocol):
    """One keep-alive connection; `send` starts a request whose response is fed to a BodyConsumer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._consumer: BodyConsumer | None = None
        self._state = _IDLE
        self._buf = b""
        self._remaining = 0
        self._keep_alive = True
        self._status = 0

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        now = perf_counter()
        self.transport = None
        if self._consumer is not None:
            if self._state == _UNTIL_CLOSE:
                self._finish(now, None)
            else:
                self._finish(now, "connection_closed")
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if self._consumer is None:
            return  # bytes outside a request (should not happen with HTTP/1.1 servers)
        if self._buf:
            data = self._buf + data
            self._buf = b""
        try:
            self._parse(data, now)
        except ValueError:
            self._finish(now, "bad_http_response")
            self.abort()

    # --- requests
    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and self._consumer is None

    def send(self, request: bytes, consumer: BodyConsumer) -> float:
        """Write the request; returns the send timestamp (the request's start)."""
        assert self._consumer is None and self.transport is not None
        self._consumer = consumer
        self._state = _HEAD
        self._buf = b""
        self._keep_alive = True
        start = perf_counter()
        self.transport.write(request)
        return start

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- parsing
    def _parse(self, data: bytes, now: float) -> None:
        consumer = self._consumer
        while data and consumer is not None:
            state = self._state
            if state == _CHUNK_SIZE:
                i = data.find(b"\r\n")
                if i < 0:
                    self._buf = data
                    return
                size = int(data[:i].split(b";", 1)[0], 16)
                data = data[i + 2:]
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                n = self._remaining
                if len(data) <= n:
                    self._remaining = n - len(data)
                    consumer.on_body(data, now)
                    if self._remaining == 0:
                        self._state = _CHUNK_CRLF
                    return
                consumer.on_body(data[:n], now)
                data = data[n:]
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(data) < 2:
                    self._buf = data
                    return
                data = data[2:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                # Trailers end with an empty line; usually there are none and this is just "\r\n".
                i = data.find(b"\r\n")
                if i < 0:
                    self._buf = data
                    return
                data = data[i + 2:]
                if i == 0:
                    self._finish(now, None)
                    return
            elif state == _LENGTH:
                n = self._remaining
                take = data[:n]
                self._remaining = n - len(take)
                consumer.on_body(take, now)
                if self._remaining == 0:
                    self._finish(now, None)
                return
            elif state == _UNTIL_CLOSE:
                consumer.on_body(data, now)
                return
            elif state == _HEAD:
                i = data.find(b"\r\n\r\n")
                if i < 0:
                    if len(data) > 65536:
                        raise ValueError("header too long")
                    self._buf = data
                    return
                self._head(data[:i], now)
                data = data[i + 4:]
                consumer = self._consumer
            else:
                return

    def _head(self, head: bytes, now: float) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        self._status = int(status)
        chunked = False
        length: int | None = None
        self._keep_alive = version != "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "content-length":
                length = int(value)
            elif name == "connection":
                self._keep_alive = "close" not in value if version != "HTTP/1.0" else "keep-alive" in value
        if self._status == 100:  # "100 Continue": the real head follows
            self._state = _HEAD
            return
        assert self._consumer is not None
        self._consumer.on_status(self._status, now)
        if chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH
            if length == 0:
                self._finish(now, None)
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE

    def _finish(self, now: float, error: str | None) -> None:
        consumer, self._consumer = self._consumer, None
        self._state = _IDLE
        self._buf = b""
        if not self._keep_alive and self.transport is not None:
            self.transport.close()
        if consumer is not None:
            consumer.on_end(now, error)


async def open_connection(target: Target, timeout_s: float = 10.0) -> Connection:
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if target.tls else None
    _, protocol = await asyncio.wait_for(
        loop.create_connection(Connection, target.host, target.port, ssl=context), timeout_s)
    return protocol
