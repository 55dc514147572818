"""The load engine of one client process: closed loop at a concurrency, or open loop at arrival times.

Everything is callbacks on one event loop: when a request ends, the next one is written on the same connection
from inside that callback, so a free stream never waits for a task switch (closed loop), and an arrival is a
loop timer that writes to an idle connection at once (open loop). Connections are opened before the level starts,
so handshakes are not in any request's timings unless the server closed a connection and it had to be reopened
(that wait is the request's queue time, never its TTFT).

Servers close idle keep-alive connections (uvicorn after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds, while other streams
wait for queued requests): a closed connection leaves the idle pool the moment it is lost, and a request that loses
the close/send race before any response byte is sent once more on a new connection and counted as a reconnect.
An exception in any callback ends the phase with that exception: a bug surfaces, never as a timeout.

`DriverJob.abort` (set by another thread, e.g. the trial's server watch) is polled every ABORT_POLL_S during the
warm-up and the measured phase; once set, in-flight requests are aborted and end, like every request not yet sent,
as failures with error "aborted": counted, never dropped.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner.errors import ServerUnreachable
from tuner.load.http import CLOSED_BEFORE_RESPONSE, Connection, Target, open_connection
from tuner.load.monitor import ClientSample, LoopMonitor
from tuner.load.request import RequestRecord, StreamingRequest

CONNECT_BATCH = 64  # connections opened at once: more overflows small accept backlogs
ABORT_POLL_S = 0.1
ABANDON_WAIT_S = 1.0  # for aborted requests to report their end; any still open then is recorded as abandoned
LEVEL_TIMEOUT = "level_timeout"
ABORTED = "aborted"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


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
    abort: threading.Event | None = None  # set by another thread (the trial's server watch): end the level now


@dataclass
class DriverResult:
    records: list[RequestRecord] = field(default_factory=list)
    client: ClientSample = field(default_factory=ClientSample)
    unsent: int = 0  # requests a duration-bound level never sent (not failures: they were never attempted)
    reconnects: int = 0  # requests sent again after the server closed their reused connection before answering
    connections_opened: int = 0  # connections opened during the measured phase (the server had closed others)


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
        self.abandoned: str | None = None  # why the phase was cut short: LEVEL_TIMEOUT or ABORTED
        self.all_done: asyncio.Future = self.loop.create_future()
        self.reconnects = 0
        self.connections_opened = 0
        self._requests: Sequence[bytes] = ()
        self._open_loop = False
        self._active: dict[int, StreamingRequest] = {}
        self._retried: set[int] = set()
        self._abort_timer: asyncio.TimerHandle | None = None
        self._abort_task: asyncio.Task | None = None
        self._arrivals: list[asyncio.TimerHandle] = []
        self._phase_id = 0  # callbacks of an earlier phase (warm-up) must not write into this one's records

    async def connect(self, n: int) -> None:
        for i in range(0, n, CONNECT_BATCH):
            try:
                batch = await asyncio.gather(*(open_connection(self.job.target)
                                               for _ in range(min(CONNECT_BATCH, n - i))))
            except (OSError, asyncio.TimeoutError) as exc:
                target = self.job.target
                raise ServerUnreachable(f"cannot connect to {target.host}:{target.port} ({_why(exc)}):"
                                        " is the server running there?") from None
            for conn in batch:
                conn.on_error = self._fail_phase
                self._make_idle(conn)
            self.open_count += len(batch)

    async def prepare(self) -> None:
        """Open the connections and run the warm-up (not measured)."""
        job = self.job
        await self.connect(max(1, min(self._streams(), max(len(job.requests), len(job.warmup)))))
        if job.warmup:
            await self._phase(job.warmup, None, measured=False)

    async def measure(self, start_at: float | None = None) -> DriverResult:
        job = self.job
        if start_at is not None:  # several processes start together at an agreed perf_counter() time
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        monitor = LoopMonitor()
        monitor.start()
        self.reconnects = self.connections_opened = 0
        records = await self._phase(job.requests, job.offsets, measured=True)
        client = await monitor.stop()
        self._close_idle()
        unsent = sum(1 for r in records if r is None)
        return DriverResult([r for r in records if r is not None], client, unsent, self.reconnects,
                            self.connections_opened)

    async def run(self, start_at: float | None = None) -> DriverResult:
        await self.prepare()
        return await self.measure(start_at)

    def _streams(self) -> int:
        return self.job.concurrency or min(len(self.job.requests), 256)

    async def _phase(self, requests: Sequence[bytes], offsets: Sequence[float] | None,
                     measured: bool) -> list[RequestRecord | None]:
        job = self.job
        self._requests = requests
        self._open_loop = offsets is not None
        self.records = [None] * len(requests)
        self.next_index = self.arrived = self.in_flight = 0
        self._retried = set()
        self._active = {}
        self._phase_id += 1
        if self.abandoned == LEVEL_TIMEOUT:
            self.abandoned = None  # a warm-up that ran out of time does not condemn the measured phase; an abort does
        self.all_done = self.loop.create_future()
        if not requests:
            return []
        t0 = time.perf_counter()
        self.stop_sending_at = t0 + job.duration_s if measured and job.duration_s is not None else float("inf")
        self._watch_abort()
        if self.abandoned is None:
            if offsets is None:
                self._start_streams(t0)
            else:
                loop_t0 = self.loop.time()
                self._arrivals = [self.loop.call_at(loop_t0 + offset, self._guarded, self._arrive, i, t0 + offset)
                                  for i, offset in enumerate(offsets)]
        else:
            self.all_done.set_result(None)  # aborted before this phase began
        try:
            await asyncio.wait_for(asyncio.shield(self.all_done), job.level_timeout_s)
        except asyncio.TimeoutError:
            await self._abandon(LEVEL_TIMEOUT)
        except BaseException:
            self._close_all()  # a bug ended the phase: nothing may keep streaming into a level that failed
            raise
        finally:
            self._stop_timers()
        return self._finish_records()

    # --- closed loop: a stream sends its next request the moment its previous one ends
    def _start_streams(self, t0: float) -> None:
        streams = min(self._streams(), len(self._requests))
        started = 0
        while self.idle and started < streams:
            self._send_next(self.idle.pop(), t0)
            started += 1
        for _ in range(streams - started):  # the server closed some idle connections since the last phase
            self._reopen(lambda conn: self._send_next(conn, t0))

    def _send_next(self, conn: Connection, queued: float) -> None:
        i = self.next_index
        if i >= len(self._requests) or queued >= self.stop_sending_at or self.abandoned:
            self._make_idle(conn)
            return
        self.next_index = i + 1
        self._start(conn, i, queued)

    def _start(self, conn: Connection, i: int, queued: float) -> None:
        phase = self._phase_id
        request = StreamingRequest(lambda record: self._guarded(self._ended, conn, i, record, phase), queued)
        self.in_flight += 1
        self._active[i] = request
        request.start(conn, self._requests[i], self.job.request_timeout_s)

    def _ended(self, conn: Connection, i: int, record: RequestRecord, phase: int) -> None:
        if phase != self._phase_id:  # a request of a phase cut short (aborted), ending late: only its connection
            self._make_idle(conn)
            return
        del self._active[i]
        self.in_flight -= 1
        if self._retryable(conn, i, record):
            # The server closed this kept-alive connection as the request was written: nothing was processed.
            self._retried.add(i)
            self.reconnects += 1
            self._lost(conn)
            self._retry(i, record.queued if record.queued is not None else record.start)
            return
        if self.abandoned and not record.ok:
            record.error = self.abandoned
        self.records[i] = record
        now = record.end
        if conn.usable:
            self._send_next(conn, now) if not self._open_loop else self._give_back(conn)
        else:
            self._lost(conn)
            if not self._open_loop and self.next_index < len(self._requests) and not self.abandoned:
                self._reopen(lambda c: self._send_next(c, now))
            elif self._open_loop and self.waiting:
                self._reopen(self._give_back)
        self._maybe_done()

    def _retry(self, i: int, queued: float) -> None:
        self._reopen(lambda conn: self._start(conn, i, queued),
                     on_fail=lambda error: self._retry_failed(i, queued, error))

    def _retry_failed(self, i: int, queued: float, error: str) -> None:
        """No new connection for a request being sent again: it fails (counted); its stream or slot goes on."""
        now = time.perf_counter()
        self.records[i] = RequestRecord(start=now, end=now, queued=queued, error=f"connect_{error}")
        if self.abandoned:
            return
        if not self._open_loop and self.next_index < len(self._requests):
            self._reopen(lambda conn: self._send_next(conn, time.perf_counter()))
        elif self._open_loop and self.waiting:
            self._reopen(self._give_back)

    def _retryable(self, conn: Connection, i: int, record: RequestRecord) -> bool:
        return (record.error == CLOSED_BEFORE_RESPONSE and conn.reused and i not in self._retried
                and not self.abandoned)

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
            self._make_idle(conn)

    # --- connections
    def _make_idle(self, conn: Connection) -> None:
        if not conn.usable:  # lost while it was being handed over
            self._lost(conn)
            return
        conn.on_lost = self._idle_lost
        self.idle.append(conn)

    def _idle_lost(self, conn: Connection) -> None:
        """The server closed an idle connection (keep-alive timeout): it must never be sent on again."""
        if conn in self.idle:
            self.idle.remove(conn)
            self._lost(conn)

    def _lost(self, conn: Connection) -> None:
        """`conn` is closed or closing and leaves this driver's count (it is in no pool)."""
        conn.on_lost = conn.on_error = None
        self.open_count -= 1

    def _close_idle(self) -> None:
        for conn in self.idle:
            conn.on_lost = None
            conn.close()
        self.idle.clear()

    def _close_all(self) -> None:
        for request in list(self._active.values()):
            if request.connection is not None:
                request.connection.on_error = None
                request.connection.abort()
        self._close_idle()

    def _reopen(self, then: Callable[[Connection], None],
                on_fail: Callable[[str], None] | None = None) -> None:
        """Open a connection and hand it to `then`; if none can be opened, `on_fail(error)` (by default the next
        request that needed a connection fails)."""
        self.open_count += 1
        self.connecting += 1
        phase = self._phase_id

        async def reopen() -> None:
            try:
                conn = await open_connection(self.job.target)
            except (OSError, asyncio.TimeoutError) as exc:
                self.connecting -= 1
                self.open_count -= 1
                if phase == self._phase_id:  # a failure owed to an earlier phase costs this one nothing
                    (on_fail or self._connect_failed)(type(exc).__name__)
                self._maybe_done()
                return
            self.connecting -= 1
            self.connections_opened += 1
            conn.on_error = self._fail_phase
            if self.abandoned or phase != self._phase_id:
                self._make_idle(conn)
            else:
                then(conn)
            self._maybe_done()

        task = self.loop.create_task(reopen())
        task.add_done_callback(self._raise_into_phase)

    def _connect_failed(self, error: str) -> None:
        """A connection could not be opened: the request that needed it fails (counted), the stream moves on."""
        now = time.perf_counter()
        if self.abandoned:
            return
        if self._open_loop:
            if self.waiting:
                i, due = self.waiting.popleft()
                self.records[i] = RequestRecord(start=now, end=now, queued=due, error=f"connect_{error}")
                if self.waiting:
                    self._reopen(self._give_back)
        elif self.next_index < len(self._requests):
            i = self.next_index
            self.next_index = i + 1
            self.records[i] = RequestRecord(start=now, end=now, queued=now, error=f"connect_{error}")
            self._reopen(lambda c: self._send_next(c, time.perf_counter()))

    # --- shared
    def _guarded(self, callback: Callable[..., None], *args: object) -> None:
        """Run a loop callback; an exception (a bug) ends the phase with it instead of dying in the loop."""
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised by _phase through all_done
            self._fail_phase(exc)

    def _fail_phase(self, exc: BaseException) -> None:
        if not self.all_done.done():
            self.all_done.set_exception(exc)

    def _raise_into_phase(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail_phase(task.exception())  # type: ignore[arg-type]

    def _stop_timers(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        for timer in self._arrivals:
            timer.cancel()
        self._arrivals = []

    def _maybe_done(self) -> None:
        if self.all_done.done() or self.in_flight or self.connecting:
            return
        if self._open_loop:
            finished = self.arrived == len(self._requests) and not self.waiting
        else:
            finished = self.next_index >= len(self._requests) or time.perf_counter() >= self.stop_sending_at
        if finished or self.abandoned:
            self.all_done.set_result(None)

    def _watch_abort(self) -> None:
        """Poll the abort event from a loop timer: it is set by another thread, which cannot touch this loop."""
        event = self.job.abort
        if event is None:
            return
        if event.is_set():
            self.abandoned = ABORTED
            return

        def check() -> None:
            if event.is_set():
                self._abort_task = self.loop.create_task(self._abort_now())
                self._abort_task.add_done_callback(self._raise_into_phase)
            else:
                self._abort_timer = self.loop.call_later(ABORT_POLL_S, check)

        self._abort_timer = self.loop.call_later(ABORT_POLL_S, check)

    async def _abort_now(self) -> None:
        await self._abandon(ABORTED)
        if not self.all_done.done():
            self.all_done.set_result(None)

    async def _abandon(self, reason: str) -> None:
        """The level ran out of time or was aborted: in-flight requests are aborted and end as failures."""
        self.abandoned = reason
        self.waiting.clear()
        for request in list(self._active.values()):
            if request.connection is not None:
                request.connection.abort()
        # connection_lost (and so each request's end) runs from the loop's next iterations; TLS adds a hop.
        deadline = self.loop.time() + ABANDON_WAIT_S
        while self._active and self.loop.time() < deadline:
            await asyncio.sleep(0.001)

    def _finish_records(self) -> list[RequestRecord | None]:
        now = time.perf_counter()
        out: list[RequestRecord | None] = []
        for record in self.records:
            if record is None and self.abandoned:
                # Never sent (or never ended) before the level was cut short: a failure, counted, in the duration.
                record = RequestRecord(start=now, end=now, queued=now, error=self.abandoned)
            out.append(record)
        return out
