"""One streaming request and what it measured, with `vllm bench serve`'s definitions.

queued = when the load pattern wanted the request sent (arrival time in open loop; the moment a stream was free
         in closed loop); queue time = start - queued, reported separately and never part of TTFT
start  = just before the request is written to the socket
TTFT   = first SSE event with non-empty `choices` - start
ITL    = gaps between successive such events (per event, not per token). Events that arrive in one socket read
         share that read's timestamp, so their gaps are 0: that is what the client saw
E2EL   = last such event - start
tokens = `usage.completion_tokens` from the usage event (prompt tokens from `usage.prompt_tokens`)
A request fails on a non-200 status, an error event, a stream that ends without content or `usage`, a broken
connection or a timeout. Failed requests stay in the records and in the level's duration. Error kinds:
http_<status>, error_event, malformed_event, empty_stream, no_usage, truncated_stream, timeout (request timeout),
closed_before_response / connection_closed (lost before / after the first response byte), bad_http_response,
connect_<exception> (no connection could be opened), level_timeout and aborted (the level was cut short).
A reused connection lost before any response byte is not a failure: the driver sends the request once more.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tuner.load.http import CLOSED_BEFORE_RESPONSE, Connection
from tuner.load.sse import DONE, SSEParser

# Content events are recognised without a JSON parse: that is most of the client's per-token work. A quoted key
# cannot occur inside a JSON string unescaped, so these byte patterns only match real keys; anything unusual
# (usage, errors, other shapes) takes the full json.loads path.
_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*(\S)')
_ERROR_BODY_LIMIT = 300


@dataclass
class RequestRecord:
    start: float = 0.0
    ok: bool = False
    error: str | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    e2el: float | None = None
    end: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    queued: float | None = None
    chunks: int = 0  # content events seen (per event, as vLLM counts ITL)
    status: int = 0
    error_detail: str = ""  # server's message for an error event or a non-200 body

    @property
    def tpot(self) -> float | None:
        if not self.ok or self.ttft is None or self.e2el is None or self.output_tokens < 2:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def queue_time(self) -> float | None:
        return None if self.queued is None else max(0.0, self.start - self.queued)


class StreamingRequest:
    """The BodyConsumer of one request: turns bytes into a RequestRecord, then calls `done(record)`."""

    __slots__ = ("_error_body", "connection", "done", "finished", "last", "parser", "record", "timed_out", "timer")

    def __init__(self, done: Callable[[RequestRecord], None], queued: float | None = None) -> None:
        self.record = RequestRecord(queued=queued)
        self.parser = SSEParser()
        self.last: float | None = None
        self.finished = False  # saw [DONE]
        self.done = done
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.connection: Connection | None = None
        self._error_body = b""

    def start(self, connection: Connection, request: bytes, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        if not connection.usable:
            # The server closed it after it was handed to this request (a dying server accepts, then closes; an idle
            # one closed as its turn came): nothing was sent. It ends as the close/send race does, on the next loop
            # turn (never inside the caller's own loop over connections): retried once if the connection had
            # served before, else a failed request. Never an exception out of the client.
            connection.requests_sent += 1  # the attempt, for `reused`
            self.record.start = time.perf_counter()
            loop.call_soon(self.on_end, self.record.start, CLOSED_BEFORE_RESPONSE)
            return
        self.connection = connection
        self.record.start = connection.send(request, self)
        self.timer = loop.call_later(timeout_s, self._timeout)

    def _timeout(self) -> None:
        self.timed_out = True
        if self.connection is not None:
            self.connection.abort()  # connection_lost -> on_end

    # --- BodyConsumer
    def on_status(self, status: int, now: float) -> None:
        self.record.status = status
        if status != 200:
            self.record.error = f"http_{status}"

    def on_body(self, data: bytes, now: float) -> None:
        record = self.record
        if record.status != 200:
            if len(self._error_body) < _ERROR_BODY_LIMIT:
                self._error_body += data[:_ERROR_BODY_LIMIT]
            return
        n = 0
        for payload in self.parser.feed(data):
            if payload[:1] == b"{" and b'"usage"' not in payload and b'"error"' not in payload:
                m = _CHOICES.search(payload)
                if m is not None:
                    if m.group(1) != b"]":
                        n += 1
                    continue
            if payload == DONE:
                self.finished = True
                continue
            n += self._parse(payload)
        if n:
            record.chunks += n
            if self.last is None:
                record.ttft = now - record.start
                n -= 1
            else:
                record.itl.append(now - self.last)
                n -= 1
            if n:
                record.itl.extend([0.0] * n)
            self.last = now

    def _parse(self, payload: bytes) -> int:
        """Full parse of an event that is not a plain content event; returns 1 if it carried content."""
        record = self.record
        try:
            event = json.loads(payload)
        except ValueError:
            record.error = record.error or "malformed_event"
            return 0
        if not isinstance(event, dict):
            record.error = record.error or "malformed_event"
            return 0
        if "error" in event or event.get("object") == "error":
            detail = event.get("error", event)
            message = detail.get("message", "") if isinstance(detail, dict) else str(detail)
            if record.error is None:
                record.error = "error_event"
                record.error_detail = str(message)[:200]
        usage = event.get("usage")
        if isinstance(usage, dict):
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.output_tokens = int(usage.get("completion_tokens") or 0)
        return 1 if event.get("choices") else 0

    def on_end(self, now: float, error: str | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        record = self.record
        record.end = now
        if self.timed_out:
            record.error = "timeout"
        elif record.error is None and error is not None:
            record.error = error
        if self._error_body:
            record.error_detail = self._error_body.decode("utf-8", "replace").strip()[:200]
        if record.error is None:
            if self.last is None:
                record.error = "empty_stream"
            elif not record.output_tokens:
                record.error = "no_usage"
            elif self.parser.pending.strip():
                record.error = "truncated_stream"
        if record.error is None:
            record.ok = True
            record.e2el = self.last - record.start  # type: ignore[operator]
        self.connection = None
        self.done(record)
