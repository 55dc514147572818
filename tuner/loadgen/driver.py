"""The load engine of one client process: closed loop at a concurrency, or open loop at arrival times.

Everything is callbacks on one event loop: when a request ends, the next one is written on the same connection
from inside that callback, so a free stream never waits for a task switch (closed loop), and an arrival is a
loop timer that writes to an idle connection at once (open loop). Connections are opened before the level starts,
so handshakes are not in any request's timings unless the server closed a connection and it had to be reopened.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tuner.loadgen.http import Connection, Target, open_connection
from tuner.loadgen.monitor import ClientSample, LoopMonitor
from tuner.loadgen.request import RequestRecord, StreamingRequest

CONNECT_BATCH = 64  # connections opened at once: more overflows small accept backlogs


@dataclass
class DriverJob:
    """One process's share of a level. `requests` are complete HTTP request bytes, in sending order.

    Closed loop: `concurrency` streams. Open loop: `offsets[i]` is when request i is due (seconds after the
    start), with at most `concurrency` in flight (None: as many as arrive; the rest queue in the client and their
    wait is reported as queue time).
    """

    target: Target
    requests: Sequence[bytes]
    concurrency: int | None
    offsets: Sequence[float] | None = None
    warmup: Sequence[bytes] = ()
    request_timeout_s: float = 120.0
    level_timeout_s: float = 600.0
    duration_s: float | None = None  # stop sending new requests after this long (those unsent are not counted)


@dataclass
class DriverResult:
    records: list[RequestRecord] = field(default_factory=list)
    client: ClientSample = field(default_factory=ClientSample)
    unsent: int = 0  # requests a duration-bound level never sent (not failures: they were never attempted)


class Driver:
    def __init__(self, job: DriverJob) -> None:
        self.job = job
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.open_count = 0  # connections open or being opened
        self.connecting = 0  # (re)connections in progress, each owed to a stream or a waiting request
        self.waiting: deque[tuple[int, float]] = deque()  # open loop: (request index, due time) with no connection
        self.records: list[RequestRecord | None] = []
        self.next_index = 0  # closed loop: next request to send
        self.arrived = 0  # open loop: arrivals fired so far
        self.in_flight = 0
        self.stop_sending_at = float("inf")
        self.abandoned = False
        self.all_done: asyncio.Future = self.loop.create_future()
        self._requests: Sequence[bytes] = ()
        self._open_loop = False
        self._active: dict[int, StreamingRequest] = {}

    async def connect(self, n: int) -> None:
        for i in range(0, n, CONNECT_BATCH):
            batch = await asyncio.gather(*(open_connection(self.job.target) for _ in range(min(CONNECT_BATCH, n - i))))
            self.idle.extend(batch)
            self.open_count += len(batch)

    async def prepare(self) -> None:
        """Open the connections and run the warm-up (not measured)."""
        job = self.job
        streams = job.concurrency or min(len(job.requests), 256)
        await self.connect(max(1, min(streams, max(len(job.requests), len(job.warmup)))))
        if job.warmup:
            await self._phase(job.warmup, None, measured=False)

    async def measure(self, start_at: float | None = None) -> DriverResult:
        job = self.job
        if start_at is not None:  # several processes start together at an agreed perf_counter() time
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        monitor = LoopMonitor()
        monitor.start()
        records = await self._phase(job.requests, job.offsets, measured=True)
        client = await monitor.stop()
        for conn in self.idle:
            conn.close()
        unsent = sum(1 for r in records if r is None)
        return DriverResult([r for r in records if r is not None], client, unsent)

    async def run(self, start_at: float | None = None) -> DriverResult:
        await self.prepare()
        return await self.measure(start_at)

    async def _phase(self, requests: Sequence[bytes], offsets: Sequence[float] | None,
                     measured: bool) -> list[RequestRecord | None]:
        job = self.job
        self._requests = requests
        self._open_loop = offsets is not None
        self.records = [None] * len(requests)
        self.next_index = self.arrived = self.in_flight = 0
        self.abandoned = False
        self.all_done = self.loop.create_future()
        if not requests:
            return []
        t0 = time.perf_counter()
        self.stop_sending_at = t0 + job.duration_s if measured and job.duration_s is not None else float("inf")
        if offsets is None:
            for conn in self.idle[:]:
                if self.next_index >= len(requests):
                    break
                self.idle.remove(conn)
                self._send_next(conn, t0)
        else:
            loop_t0 = self.loop.time()
            for i, offset in enumerate(offsets):
                self.loop.call_at(loop_t0 + offset, self._arrive, i, t0 + offset)
        try:
            await asyncio.wait_for(asyncio.shield(self.all_done), job.level_timeout_s)
        except asyncio.TimeoutError:
            await self._abandon()
        return self._finish_records()

    # --- closed loop: a stream sends its next request the moment its previous one ends
    def _send_next(self, conn: Connection, queued: float) -> None:
        i = self.next_index
        if i >= len(self._requests) or queued >= self.stop_sending_at or self.abandoned:
            self.idle.append(conn)
            return
        self.next_index = i + 1
        self._start(conn, i, queued)

    def _start(self, conn: Connection, i: int, queued: float) -> None:
        request = StreamingRequest(lambda record: self._ended(conn, i, record), queued)
        self.in_flight += 1
        self._active[i] = request
        request.start(conn, self._requests[i], self.job.request_timeout_s)

    def _ended(self, conn: Connection, i: int, record: RequestRecord) -> None:
        if self.abandoned and not record.ok:
            record.error = "level_timeout"
        self.records[i] = record
        del self._active[i]
        self.in_flight -= 1
        now = record.end
        if conn.usable:
            self._send_next(conn, now) if not self._open_loop else self._give_back(conn)
        else:
            self.open_count -= 1
            if not self._open_loop and self.next_index < len(self._requests) and not self.abandoned:
                self._reopen(lambda c: self._send_next(c, now))
            elif self._open_loop and self.waiting:
                self._reopen(self._give_back)
        self._maybe_done()

    # --- open loop: arrivals are loop timers; a request waits in the client only when no connection is free
    def _arrive(self, i: int, due: float) -> None:
        self.arrived += 1
        if due >= self.stop_sending_at or self.abandoned:
            self._maybe_done()
            return
        if self.idle:
            self._start(self.idle.pop(), i, due)
            return
        self.waiting.append((i, due))
        if self.job.concurrency is None or self.open_count < self.job.concurrency:
            self._reopen(self._give_back)

    def _give_back(self, conn: Connection) -> None:
        if self.waiting and not self.abandoned:
            i, due = self.waiting.popleft()
            self._start(conn, i, due)
        else:
            self.idle.append(conn)

    # --- shared
    def _reopen(self, then) -> None:
        self.open_count += 1
        self.connecting += 1

        async def reopen() -> None:
            try:
                conn = await open_connection(self.job.target)
            except (OSError, asyncio.TimeoutError) as exc:
                self.connecting -= 1
                self.open_count -= 1
                self._connect_failed(type(exc).__name__)
                return
            self.connecting -= 1
            then(conn)
            self._maybe_done()

        self.loop.create_task(reopen())

    def _connect_failed(self, error: str) -> None:
        """A connection could not be opened: the request that needed it fails (counted), the stream moves on."""
        now = time.perf_counter()
        if self._open_loop:
            if self.waiting:
                i, due = self.waiting.popleft()
                self.records[i] = RequestRecord(start=now, end=now, queued=due, error=f"connect_{error}")
                if self.waiting:
                    self._reopen(self._give_back)
        elif self.next_index < len(self._requests) and not self.abandoned:
            i = self.next_index
            self.next_index = i + 1
            self.records[i] = RequestRecord(start=now, end=now, queued=now, error=f"connect_{error}")
            self._reopen(lambda c: self._send_next(c, time.perf_counter()))
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.all_done.done() or self.in_flight or self.connecting:
            return
        if self._open_loop:
            finished = self.arrived == len(self._requests) and not self.waiting
        else:
            finished = self.next_index >= len(self._requests) or time.perf_counter() >= self.stop_sending_at
        if finished or self.abandoned:
            self.all_done.set_result(None)

    async def _abandon(self) -> None:
        """The level ran out of time: in-flight requests are aborted and end as failures."""
        self.abandoned = True
        for request in list(self._active.values()):
            if request.connection is not None:
                request.connection.abort()
        for _ in range(3):  # connection_lost callbacks run on the next loop iterations
            await asyncio.sleep(0)

    def _finish_records(self) -> list[RequestRecord | None]:
        now = time.perf_counter()
        out: list[RequestRecord | None] = []
        for record in self.records:
            if record is None and self.abandoned:
                # Never sent (or never ended) before the level timed out: a failure, counted, inside the duration.
                record = RequestRecord(start=now, end=now, queued=now, error="level_timeout")
            out.append(record)
        return out


async def drive(job: DriverJob, start_at: float | None = None) -> DriverResult:
    return await Driver(job).run(start_at)
