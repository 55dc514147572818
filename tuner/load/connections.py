"""The connections of one client process, and the policy for servers that close them.

Connections are opened before the level starts, CONNECT_BATCH at a time, so handshakes are not in any request's
timings unless the server closed a connection and it had to be reopened (that wait is the request's queue time,
never its TTFT). If they cannot be opened, nothing is listening there: ServerUnreachable. A connection that cannot
be reopened during a level fails the request that needed it (the driver records it as `connect_<exception>`).

Servers close idle keep-alive connections (uvicorn after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds, while other streams
wait for queued requests): a closed connection leaves the idle pool the moment it is lost, and a request that loses
the close/send race before any response byte is sent once more on a new connection and counted as a reconnect
(`CloseRaceRetry`).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from tuner.errors import ServerUnreachable
from tuner.load.http import CLOSED_BEFORE_RESPONSE, Connection, Target, open_connection
from tuner.load.request import RequestRecord

CONNECT_BATCH = 64  # connections opened at once: more overflows small accept backlogs


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__



def report_exception_to(handler: Callable[[BaseException], None]) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback that hands a task's exception to `handler` (a cancelled task has none to hand)."""
    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            handler(exc)

    return done


class ConnectionPool:
    """Every connection of one driver is counted here (`open_count`: open or being opened) and, while no request
    uses it, kept in `idle`. `on_error` receives bugs: a consumer's exception on any connection, or one raised by a
    callback handed a new connection."""

    def __init__(self, target: Target, loop: asyncio.AbstractEventLoop,
                 on_error: Callable[[BaseException], None]) -> None:
        self.target = target
        self.idle: list[Connection] = []
        self.open_count = 0  # connections open or being opened
        self.connecting = 0  # (re)connections in progress, each owed to a stream or a waiting request
        self.opened = 0  # connections opened by open_one, i.e. during a level (the server had closed others)
        self._loop = loop
        self._on_error = on_error

    async def fill(self, n: int) -> None:
        """Open `n` connections into the idle pool, before the level starts."""
        for i in range(0, n, CONNECT_BATCH):
            batch = await self._open_batch(min(CONNECT_BATCH, n - i))
            for conn in batch:
                conn.on_error = self._on_error
                self.make_idle(conn)
            self.open_count += len(batch)

    async def _open_batch(self, size: int) -> list[Connection]:
        try:
            return await asyncio.gather(*(open_connection(self.target) for _ in range(size)))
        except (TimeoutError, OSError) as exc:
            target = self.target
            raise ServerUnreachable(f"cannot connect to {target.host}:{target.port} ({_why(exc)}):"
                                    " is the server running there?") from None

    def open_one(self, then: Callable[[Connection], None], on_fail: Callable[[str], None]) -> None:
        """Open a connection in the background and hand it to `then`, or the exception's name to `on_fail`.
        It counts as open from now on, so that an open loop's cap on connections holds while it is being opened."""
        self.open_count += 1
        self.connecting += 1
        task = self._loop.create_task(self._open_one(then, on_fail))
        # An exception in `then` or `on_fail` is a bug: the owner hears of it instead of the loop's log.
        task.add_done_callback(report_exception_to(self._on_error))

    async def _open_one(self, then: Callable[[Connection], None], on_fail: Callable[[str], None]) -> None:
        try:
            conn = await open_connection(self.target)
        except (TimeoutError, OSError) as exc:
            self.connecting -= 1
            self.open_count -= 1
            on_fail(type(exc).__name__)
            return
        self.connecting -= 1
        self.opened += 1
        conn.on_error = self._on_error
        then(conn)

    def take_idle(self) -> Connection | None:
        return self.idle.pop() if self.idle else None

    def make_idle(self, conn: Connection) -> None:
        if not conn.usable:  # lost while it was being handed over
            self.lost(conn)
            return
        conn.on_lost = self._idle_lost
        self.idle.append(conn)

    def _idle_lost(self, conn: Connection) -> None:
        """The server closed an idle connection (keep-alive timeout): it must never be sent on again."""
        if conn in self.idle:
            self.idle.remove(conn)
            self.lost(conn)

    def lost(self, conn: Connection) -> None:
        """`conn` is closed or closing and leaves the count (it is in no pool)."""
        conn.on_lost = conn.on_error = None
        self.open_count -= 1

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.on_lost = None
            conn.close()
        self.idle.clear()


class CloseRaceRetry:
    """The close/send race of one phase: a server closed a kept-alive connection as a request was written to it, so
    no response byte came and nothing was processed. Such a request is sent once more, on a new connection, and
    counted in `reconnects`; a second loss of the same request, or one on a fresh connection, is a failure."""

    def __init__(self) -> None:
        self.reconnects = 0
        self._retried: set[int] = set()

    def claim(self, conn: Connection, i: int, record: RequestRecord) -> bool:
        """Whether request `i`, ended as `record` on `conn`, is owed its one more try (then it is counted)."""
        if record.error != CLOSED_BEFORE_RESPONSE or not conn.reused or i in self._retried:
            return False
        self._retried.add(i)
        self.reconnects += 1
        return True
