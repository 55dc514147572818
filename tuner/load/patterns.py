"""Load patterns: which request a free connection sends next, and when a phase has sent everything.

Closed loop (`ClosedLoop`): a number of streams. When a request ends, its stream's next request is written on the
same connection from inside that end callback, so a free stream never waits for a task switch.

Open loop (`OpenLoop`): request i is due `offsets[i]` seconds after the start. Its arrival is a loop timer that
writes it to an idle connection at once; with none idle it waits in the client (its queue time, never its TTFT)
while a connection is opened, with at most `concurrency` connections (None: as many as arrive).

A pattern lasts one phase (the warm-up is always a closed loop). The driver (tuner/load/driver.py) starts it and,
from its callbacks, tells it when a connection is free, gone, or could not be opened; the pattern sends through the
driver, which keeps the records.
"""
from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from tuner.load.connections import ConnectionPool
from tuner.load.http import Connection


class Engine(Protocol):
    """What a pattern needs from the driver that runs it."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def pool(self) -> ConnectionPool: ...

    @property
    def abandoned(self) -> str | None: ...

    def start_request(self, conn: Connection, i: int, queued: float) -> None: ...

    def reopen(self, then: Callable[[Connection], None]) -> None: ...

    def record_connect_failure(self, i: int, queued: float, now: float, error: str) -> None: ...

    def guarded(self, callback: Callable[..., None], *args: object) -> None: ...

    def maybe_done(self) -> None: ...


class Pattern(ABC):
    """One phase's requests, sent in order. `duration_s`: nothing is sent that is due that long after the start
    (None: no limit)."""

    def __init__(self, engine: Engine, requests: Sequence[bytes], duration_s: float | None) -> None:
        self.engine = engine
        self.requests = requests
        self.duration_s = duration_s
        self.stop_sending_at = float("inf")

    def start(self, t0: float) -> None:
        """Begin sending; `t0` is the phase's start (perf_counter)."""
        if self.duration_s is not None:
            self.stop_sending_at = t0 + self.duration_s
        self._begin(t0)

    @abstractmethod
    def _begin(self, t0: float) -> None: ...

    @abstractmethod
    def connection_free(self, conn: Connection, now: float) -> None:
        """A request ended at `now` and left `conn` able to carry another."""

    @abstractmethod
    def replace_connection(self, queued_at: float | None) -> None:
        """A request ended and its connection is gone: open another if something still needs one. `queued_at`: when
        a stream's next request counts as due (None: once the new connection is open)."""

    @abstractmethod
    def connect_failed(self, now: float, error: str) -> None:
        """A connection opened for this pattern could not be (`error`): the request that needed it fails."""

    @abstractmethod
    def finished(self) -> bool:
        """Nothing more will be sent (the driver waits for requests in flight and connections being opened)."""

    @abstractmethod
    def cut_short(self) -> None:
        """The phase was abandoned: requests waiting in the client are never sent."""

    @abstractmethod
    def stop(self) -> None:
        """The phase is over: cancel the pattern's timers."""


class ClosedLoop(Pattern):
    """`streams` streams send the requests in order, each its next one the moment its previous one ends (that moment
    is the next request's `queued`)."""

    def __init__(self, engine: Engine, requests: Sequence[bytes], streams: int,
                 duration_s: float | None = None) -> None:
        super().__init__(engine, requests, duration_s)
        self.streams = streams
        self.next_index = 0  # the next request to send

    def _begin(self, t0: float) -> None:
        streams = min(self.streams, len(self.requests))
        started = 0
        while started < streams and (conn := self.engine.pool.take_idle()) is not None:
            self._send_next(conn, t0)
            started += 1
        for _ in range(streams - started):  # the server closed some idle connections since the last phase
            self.engine.reopen(lambda conn: self._send_next(conn, t0))

    def _send_next(self, conn: Connection, queued: float) -> None:
        i = self.next_index
        if i >= len(self.requests) or queued >= self.stop_sending_at or self.engine.abandoned:
            self.engine.pool.make_idle(conn)
            return
        self.next_index = i + 1
        self.engine.start_request(conn, i, queued)

    def connection_free(self, conn: Connection, now: float) -> None:
        self._send_next(conn, now)

    def replace_connection(self, queued_at: float | None) -> None:
        if self.next_index < len(self.requests) and not self.engine.abandoned:
            self.engine.reopen(lambda conn: self._send_next(conn, time.perf_counter() if queued_at is None
                                                            else queued_at))

    def connect_failed(self, now: float, error: str) -> None:
        """The stream's next request fails (due now, ended now); the stream tries a new connection for the one
        after it."""
        if self.next_index < len(self.requests):
            i = self.next_index
            self.next_index = i + 1
            self.engine.record_connect_failure(i, now, now, error)
            self.engine.reopen(lambda conn: self._send_next(conn, time.perf_counter()))

    def finished(self) -> bool:
        return self.next_index >= len(self.requests) or time.perf_counter() >= self.stop_sending_at

    def cut_short(self) -> None:
        pass  # no request waits in a closed loop's client: an unsent one is simply never taken

    def stop(self) -> None:
        pass  # a closed loop sets no timers


class OpenLoop(Pattern):
    """Request i is sent `offsets[i]` seconds after the start (its `queued`), or as soon after as a connection is
    free; `concurrency` caps the connections, and so the requests in flight (None: no cap)."""

    def __init__(self, engine: Engine, requests: Sequence[bytes], offsets: Sequence[float],
                 concurrency: int | None, duration_s: float | None = None) -> None:
        super().__init__(engine, requests, duration_s)
        self.offsets = offsets
        self.concurrency = concurrency
        self.arrived = 0  # arrivals fired so far
        self.waiting: deque[tuple[int, float]] = deque()  # (request index, due time) with no connection yet
        self._arrivals: list[asyncio.TimerHandle] = []

    def _begin(self, t0: float) -> None:
        loop = self.engine.loop
        loop_t0 = loop.time()
        self._arrivals = [loop.call_at(loop_t0 + offset, self.engine.guarded, self._arrive, i, t0 + offset)
                          for i, offset in enumerate(self.offsets)]

    def _arrive(self, i: int, due: float) -> None:
        self.arrived += 1
        if due >= self.stop_sending_at or self.engine.abandoned:
            self.engine.maybe_done()
            return
        conn = self.engine.pool.take_idle()
        if conn is not None:
            self.engine.start_request(conn, i, due)
            return
        self.waiting.append((i, due))
        if self.concurrency is None or self.engine.pool.open_count < self.concurrency:
            self.engine.reopen(self._give_back)

    def _give_back(self, conn: Connection) -> None:
        """`conn` is free: the longest-waiting request goes on it, or else it goes idle."""
        if self.waiting and not self.engine.abandoned:
            i, due = self.waiting.popleft()
            self.engine.start_request(conn, i, due)
        else:
            self.engine.pool.make_idle(conn)

    def connection_free(self, conn: Connection, now: float) -> None:
        self._give_back(conn)

    def replace_connection(self, queued_at: float | None) -> None:
        if self.waiting:
            self.engine.reopen(self._give_back)

    def connect_failed(self, now: float, error: str) -> None:
        """The longest-waiting request fails; another connection is tried for the ones behind it."""
        if self.waiting:
            i, due = self.waiting.popleft()
            self.engine.record_connect_failure(i, due, now, error)
            if self.waiting:
                self.engine.reopen(self._give_back)

    def finished(self) -> bool:
        everything_due = self.arrived == len(self.requests) or time.perf_counter() >= self.stop_sending_at
        return everything_due and not self.waiting

    def cut_short(self) -> None:
        self.waiting.clear()

    def stop(self) -> None:
        for timer in self._arrivals:
            timer.cancel()
        self._arrivals = []
