"""The load engine of one client process: a warm-up, then the measured phase, each sent by a load pattern
(tuner/load/patterns.py: closed loop at a concurrency, or open loop at arrival times) over the process's connections
(tuner/load/connections.py: opened before the level, replaced when the server closes them).

Everything is callbacks on one event loop: a request's end, an arrival, a connection opened. An exception in any
callback ends the phase with that exception: a bug surfaces, never as a timeout. A request that lost the close/send
race (the server closed its kept-alive connection as it was written) is sent once more on a new connection and
counted as a reconnect, never as a failure.

`DriverJob.stop_rule` (tuner/load/stopping.py): the measured phase stops sending once the level is measured to
its precision (or proven to miss an SLO), judged every POLL_S over the requests answered so far; those in flight
are answered and counted, the unsent ones are not requests of the level.

`DriverJob.abort` (set by another thread, e.g. the trial's server watch) is polled every ABORT_POLL_S during the
warm-up and the measured phase; once set, in-flight requests are aborted and end, like every request not yet sent,
as failures with error "aborted": counted, never dropped.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tuner.contracts.results import LevelEnd
from tuner.load.connections import CloseRaceRetry, ConnectionPool, report_exception_to
from tuner.load.http import Connection, Target
from tuner.load.monitor import ClientSample, LoopMonitor
from tuner.load.patterns import ClosedLoop, OpenLoop, Pattern
from tuner.load.request import RequestRecord, StreamingRequest
from tuner.load.stopping import POLL_S, StopRule

ABORT_POLL_S = 0.1
ABANDON_WAIT_S = 1.0  # for aborted requests to report their end; any still open then is recorded as abandoned
LEVEL_TIMEOUT = "level_timeout"
ABORTED = "aborted"


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
    stop_rule: StopRule | None = None  # measure to a precision; `requests` is then the cap


@dataclass
class DriverResult:
    records: list[RequestRecord] = field(default_factory=list)
    client: ClientSample = field(default_factory=ClientSample)
    unsent: int = 0  # requests a duration-bound level never sent (not failures: they were never attempted)
    reconnects: int = 0  # requests sent again after the server closed their reused connection before answering
    connections_opened: int = 0  # connections opened during the measured phase (the server had closed others)
    ended_by: LevelEnd = LevelEnd.COUNT


class Driver:
    """Runs the phases of one DriverJob. The pattern decides what is sent next; the driver sends it, keeps each
    request's record, retries the close/send race, and decides when a phase is over (done, timed out, aborted)."""

    def __init__(self, job: DriverJob) -> None:
        self.job = job
        self.loop = asyncio.get_running_loop()
        self.pool = ConnectionPool(job.target, self.loop, self._fail_phase)
        self.pattern: Pattern = ClosedLoop(self, (), 0)  # until the first phase: nothing to send
        self.retries = CloseRaceRetry()
        self.records: list[RequestRecord | None] = []
        self.in_flight = 0
        self.abandoned: str | None = None  # why the phase was cut short: LEVEL_TIMEOUT or ABORTED
        self.all_done: asyncio.Future[None] = self.loop.create_future()
        self._active: dict[int, StreamingRequest] = {}
        self._abort_timer: asyncio.TimerHandle | None = None
        self._abort_task: asyncio.Task[None] | None = None
        self._phase_id = 0  # callbacks of an earlier phase (warm-up) must not write into this one's records
        self._sent_at: dict[int, float] = {}  # request index -> when it was written (the steady part's end)
        self._judge_timer: asyncio.TimerHandle | None = None
        self.stopped_by: LevelEnd | None = None  # the stop rule's verdict, once it ended the sending

    async def prepare(self) -> None:
        """Open the connections and run the warm-up (not measured)."""
        job = self.job
        await self.pool.fill(max(1, min(self._streams(), max(len(job.requests), len(job.warmup)))))
        if job.warmup:
            await self._phase(ClosedLoop(self, job.warmup, self._streams()))

    async def measure(self, start_at: float | None = None) -> DriverResult:
        if start_at is not None:  # several processes start together at an agreed perf_counter() time
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        monitor = LoopMonitor()
        monitor.start()
        opened_before = self.pool.opened  # the warm-up's reopened connections do not count
        records = await self._phase(self._measured_pattern(), self.job.stop_rule)
        client = await monitor.stop()
        self.pool.close_idle()
        unsent = sum(1 for r in records if r is None)
        return DriverResult([r for r in records if r is not None], client, unsent, self.retries.reconnects,
                            self.pool.opened - opened_before, self._ended_by(unsent))

    def _ended_by(self, unsent: int) -> LevelEnd:
        if self.abandoned:
            return LevelEnd.CUT_SHORT
        if self.stopped_by is not None:
            return self.stopped_by
        if unsent:
            return LevelEnd.DURATION
        return LevelEnd.CAP if self.job.stop_rule is not None else LevelEnd.COUNT

    async def run(self, start_at: float | None = None) -> DriverResult:
        await self.prepare()
        return await self.measure(start_at)

    def _streams(self) -> int:
        return self.job.concurrency or min(len(self.job.requests), 256)

    def _measured_pattern(self) -> Pattern:
        job = self.job
        if job.offsets is None:
            return ClosedLoop(self, job.requests, self._streams(), job.duration_s)
        return OpenLoop(self, job.requests, job.offsets, job.concurrency, job.duration_s)

    # --- a phase: everything `pattern` sends, until done, timed out or aborted
    async def _phase(self, pattern: Pattern, stop_rule: StopRule | None = None) -> list[RequestRecord | None]:
        self._begin_phase(pattern)
        if not pattern.requests:
            return []
        t0 = time.perf_counter()
        self._watch_abort()
        if self.abandoned is None:
            pattern.start(t0)
            if stop_rule is not None:
                self._judge_timer = self.loop.call_later(POLL_S, self.guarded, self._judge, stop_rule)
        else:
            self.all_done.set_result(None)  # aborted before this phase began
        try:
            await asyncio.wait_for(asyncio.shield(self.all_done), self.job.level_timeout_s)
        except TimeoutError:
            await self._abandon(LEVEL_TIMEOUT)
        except BaseException:
            self._close_all()  # a bug ended the phase: nothing may keep streaming into a level that failed
            raise
        finally:
            self._stop_timers()
        return self._finish_records()

    def _begin_phase(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self.retries = CloseRaceRetry()
        self.records = [None] * len(pattern.requests)
        self.in_flight = 0
        self._active = {}
        self._phase_id += 1
        self._sent_at = {}
        self.stopped_by = None
        if self.abandoned == LEVEL_TIMEOUT:
            self.abandoned = None  # a warm-up that ran out of time does not condemn the measured phase; an abort does
        self.all_done = self.loop.create_future()

    def maybe_done(self) -> None:
        if self.all_done.done() or self.in_flight or self.pool.connecting:
            return
        if self.pattern.finished() or self.abandoned:
            self.all_done.set_result(None)

    def _finish_records(self) -> list[RequestRecord | None]:
        now = time.perf_counter()
        out: list[RequestRecord | None] = []
        for record in self.records:
            if record is None and self.abandoned:
                # Never sent (or never ended) before the level was cut short: a failure, counted, in the duration.
                record = RequestRecord(start=now, end=now, queued=now, error=self.abandoned)
            out.append(record)
        return out

    # --- requests
    def start_request(self, conn: Connection, i: int, queued: float) -> None:
        phase = self._phase_id
        request = StreamingRequest(lambda record: self.guarded(self._ended, conn, i, record, phase), queued)
        self.in_flight += 1
        self._active[i] = request
        self._sent_at[i] = time.perf_counter()
        request.start(conn, self.pattern.requests[i], self.job.request_timeout_s)

    def _ended(self, conn: Connection, i: int, record: RequestRecord, phase: int) -> None:
        if phase != self._phase_id:  # a request of a phase cut short (aborted), ending late: only its connection
            self.pool.make_idle(conn)
            return
        del self._active[i]
        self.in_flight -= 1
        if not self.abandoned and self.retries.claim(conn, i, record):
            # The server closed this kept-alive connection as the request was written: nothing was processed.
            self.pool.lost(conn)
            self._resend(i, record.queued if record.queued is not None else record.start)
            return
        if self.abandoned and not record.ok:
            record.error = self.abandoned
        self.records[i] = record
        self._pass_on(conn, record.end)
        self.maybe_done()

    def _pass_on(self, conn: Connection, now: float) -> None:
        """After a request ended at `now`: its connection carries the pattern's next request, or is replaced."""
        if conn.usable:
            self.pattern.connection_free(conn, now)
        else:
            self.pool.lost(conn)
            self.pattern.replace_connection(now)

    def _resend(self, i: int, queued: float) -> None:
        self.reopen(lambda conn: self.start_request(conn, i, queued),
                    on_fail=lambda error: self._resend_failed(i, queued, error))

    def _resend_failed(self, i: int, queued: float, error: str) -> None:
        """No new connection for a request being sent again: it fails (counted); its stream or slot goes on."""
        self.record_connect_failure(i, queued, time.perf_counter(), error)
        if not self.abandoned:
            self.pattern.replace_connection(None)

    def record_connect_failure(self, i: int, queued: float, now: float, error: str) -> None:
        """Request `i` got no connection (`error` is the exception's name): a failure, counted."""
        self.records[i] = RequestRecord(start=now, end=now, queued=queued, error=f"connect_{error}")

    # --- connections opened during a phase
    def reopen(self, then: Callable[[Connection], None], on_fail: Callable[[str], None] | None = None) -> None:
        """Open a connection and hand it to `then`; if none can be opened, `on_fail(error)` (by default the next
        request that needed a connection fails). One that opens after its phase was cut short or ended goes idle."""
        phase = self._phase_id

        def opened(conn: Connection) -> None:
            if self.abandoned or phase != self._phase_id:
                self.pool.make_idle(conn)
            else:
                then(conn)
            self.maybe_done()

        def failed(error: str) -> None:
            if phase == self._phase_id:  # a failure owed to an earlier phase costs this one nothing
                (on_fail or self._connect_failed)(error)
            self.maybe_done()

        self.pool.open_one(opened, failed)

    def _connect_failed(self, error: str) -> None:
        """A connection could not be opened: the request that needed it fails (counted), the stream moves on."""
        now = time.perf_counter()
        if not self.abandoned:
            self.pattern.connect_failed(now, error)

    # --- the stop rule
    def _judge(self, rule: StopRule) -> None:
        """Has the level measured enough? Then nothing more is sent; the requests in flight end it."""
        if self.all_done.done() or self.pattern.finished():
            return
        answered = [r for r in self.records if r is not None]
        now = time.perf_counter()
        in_flight = [self._sent_at[i] for i in self._active if i in self._sent_at]
        verdict = rule.verdict(answered, len(answered) + self.in_flight, self.job.concurrency or 0,
                               min(in_flight, default=now))
        if verdict is None:
            self._judge_timer = self.loop.call_later(POLL_S, self.guarded, self._judge, rule)
            return
        self.stopped_by = verdict
        self.pattern.stop_sending_at = now
        self.maybe_done()

    # --- callbacks and the exceptions they raise
    def guarded(self, callback: Callable[..., None], *args: object) -> None:
        """Run a loop callback; an exception (a bug) ends the phase with it instead of dying in the loop."""
        try:
            callback(*args)
        except Exception as exc:  # re-raised by _phase through all_done
            self._fail_phase(exc)

    def _fail_phase(self, exc: BaseException) -> None:
        if not self.all_done.done():
            self.all_done.set_exception(exc)

    # --- cutting a phase short: abort, level timeout, a bug
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
                self._abort_task.add_done_callback(report_exception_to(self._fail_phase))
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
        self.pattern.cut_short()
        for conn in self._in_flight_connections():
            conn.abort()
        # connection_lost (and so each request's end) runs from the loop's next iterations; TLS adds a hop.
        deadline = self.loop.time() + ABANDON_WAIT_S
        while self._active and self.loop.time() < deadline:
            await asyncio.sleep(0.001)

    def _close_all(self) -> None:
        for conn in self._in_flight_connections():
            conn.on_error = None
            conn.abort()
        self.pool.close_idle()

    def _in_flight_connections(self) -> Iterator[Connection]:
        for request in list(self._active.values()):
            if request.connection is not None:
                yield request.connection

    def _stop_timers(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self._judge_timer is not None:
            self._judge_timer.cancel()
            self._judge_timer = None
        self.pattern.stop()
