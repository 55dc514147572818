"""Several client processes for loads one core cannot drive, merged exactly.

Each process runs a Driver over its share of the streams (or of the arrival schedule), opens its connections and
warms up, then all start at one agreed time.perf_counter() instant (CLOCK_MONOTONIC on Linux: one clock for every
process on the host, so their timestamps can be merged). Each sends back its raw records; the parent computes every
figure from the union of the samples, never by averaging per-process percentiles; counts (reconnects, connections
opened) are summed. An abort of the level (an event set by another thread of the parent) is forwarded to every
process through its pipe, and each ends its level as a single process would.
"""
from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import threading
import time
from dataclasses import replace

from tuner.errors import ServerGone, WorkerFailed
from tuner.load.driver import Driver, DriverJob, DriverResult

START_MARGIN_S = 0.05
READY_TIMEOUT_S = 120.0
ABORT_POLL_S = 0.1
ABORT = "abort"  # parent -> child: end the level now (the other message is the agreed start time)


def split_job(job: DriverJob, workers: int) -> list[DriverJob]:
    """Deal requests round-robin (so each share spans the whole level) and streams as evenly as possible."""
    workers = max(1, min(workers, len(job.requests) or 1, job.concurrency or workers))
    if workers == 1:
        return [job]
    jobs = []
    for w in range(workers):
        share = None if job.concurrency is None else job.concurrency // workers + (w < job.concurrency % workers)
        offsets = None if job.offsets is None else list(job.offsets[w::workers])
        # An abort event is a thread's and cannot be pickled: run_jobs forwards it to each process by pipe.
        requests = list(job.requests[w::workers])
        # Each process judges its own share: its minimum is its share of the level's.
        rule = job.stop_rule and replace(job.stop_rule, min_requests=math.ceil(
            job.stop_rule.min_requests * len(requests) / len(job.requests)))
        jobs.append(replace(job, requests=requests, concurrency=share, offsets=offsets,
                            warmup=list(job.warmup[w::workers]), abort=None, stop_rule=rule))
    return jobs


def _leave_session() -> None:
    """A session of its own: on Linux, its own CPU scheduling group (autogroup), so the processes of the session
    that started it (Ray's daemons, for a trial) cannot starve the client's event loop."""
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass


def _child(conn, job: DriverJob, own_session: bool = False) -> None:
    if own_session:
        _leave_session()

    async def main() -> DriverResult:
        loop = asyncio.get_running_loop()
        abort = threading.Event()  # this process's own: the parent's cannot cross the process boundary
        start: asyncio.Future = loop.create_future()

        def on_message() -> None:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone: nobody wants this level any more
                message = ABORT
                loop.remove_reader(conn.fileno())
            if message == ABORT:
                abort.set()
                message = None  # start at once: the measured phase ends as aborted
            if not start.done():
                start.set_result(message)

        loop.add_reader(conn.fileno(), on_message)
        try:
            driver = Driver(replace(job, abort=abort))
            await driver.prepare()
            conn.send("ready")
            start_at = await start
            return await driver.measure(start_at)
        finally:
            loop.remove_reader(conn.fileno())

    try:
        conn.send(asyncio.run(main()))
    except BaseException as exc:  # report, then exit: the parent turns it into WorkerFailed
        conn.send(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
    finally:
        conn.close()


class _Children:
    """The parent's side of the client processes: their pipes, and the level's abort event forwarded to them."""

    def __init__(self, pipes: list, abort: threading.Event | None) -> None:
        self.pipes = pipes
        self.abort = abort
        self.aborted = False

    def receive(self, pipe, timeout_s: float | None, what: str):
        """The next message of one child; meanwhile, an abort of the level is passed on to every child."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._forward_abort()
            wait = ABORT_POLL_S if deadline is None else min(ABORT_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                raise WorkerFailed(f"a client worker did not {what} within {timeout_s:g} s")
            if pipe.poll(wait):
                break
        try:
            message = pipe.recv()
        except EOFError:
            raise WorkerFailed(f"a client worker exited before it could {what}") from None
        if isinstance(message, ServerGone):  # the server's outcome, not the client's: the trial classifies it
            raise message
        if isinstance(message, Exception):
            raise WorkerFailed(f"client worker failed: {message!r}")
        return message

    def send_all(self, message: object) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(message)
            except (BrokenPipeError, ConnectionResetError):  # that child is gone; its receive() will say so
                pass

    def _forward_abort(self) -> None:
        if self.abort is not None and self.abort.is_set() and not self.aborted:
            self.aborted = True
            self.send_all(ABORT)


def run_jobs(jobs: list[DriverJob], on_start=None, abort: threading.Event | None = None,
             own_session: bool = False) -> list[DriverResult]:
    """Run the jobs, one process each (in this process when there is one job, unless `own_session`: then every
    job runs in a child process in a new session). `on_start()` is called just before the measured part starts,
    e.g. to scrape the server's counters. Setting `abort` ends the level at once in every process: unfinished
    requests are recorded as "aborted"."""
    if len(jobs) == 1 and not own_session:
        job = jobs[0] if abort is None else replace(jobs[0], abort=abort)

        async def single() -> DriverResult:
            driver = Driver(job)
            await driver.prepare()
            if on_start:
                await asyncio.get_running_loop().run_in_executor(None, on_start)
            return await driver.measure()
        return [asyncio.run(single())]
    ctx = mp.get_context("spawn")  # fork is unsafe beside threads (Ray, metrics sampler)
    pipes, procs = [], []
    try:
        for job in jobs:
            parent, child = ctx.Pipe()
            # An abort event is a thread's and cannot be pickled: _Children forwards it to each process by pipe.
            proc = ctx.Process(target=_child, args=(child, replace(job, abort=None), own_session), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        children = _Children(pipes, abort)
        for parent in pipes:
            children.receive(parent, READY_TIMEOUT_S, "get ready")
        if on_start:
            on_start()
        children.send_all(time.perf_counter() + START_MARGIN_S)
        return [children.receive(parent, None, "send its results") for parent in pipes]
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()  # our own child, by its handle
                proc.join()
