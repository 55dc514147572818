"""Several client processes for loads one core cannot drive, merged exactly.

Each process runs a Driver over its share of the streams (or of the arrival schedule), opens its connections and
warms up, then all start at one agreed time.perf_counter() instant (CLOCK_MONOTONIC on Linux: one clock for every
process on the host, so their timestamps can be merged). Each sends back its raw records; the parent computes every
figure from the union of the samples, never by averaging per-process percentiles.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import replace

from tuner.errors import TunerError
from tuner.loadgen.driver import Driver, DriverJob, DriverResult

START_MARGIN_S = 0.05
READY_TIMEOUT_S = 120.0


class WorkerFailed(TunerError):
    """A client worker process died or did not get ready."""


def split_job(job: DriverJob, workers: int) -> list[DriverJob]:
    """Deal requests round-robin (so each share spans the whole level) and streams as evenly as possible."""
    workers = max(1, min(workers, len(job.requests) or 1, job.concurrency or workers))
    if workers == 1:
        return [job]
    jobs = []
    for w in range(workers):
        share = None if job.concurrency is None else job.concurrency // workers + (w < job.concurrency % workers)
        offsets = None if job.offsets is None else list(job.offsets[w::workers])
        # An abort event is a thread's: it cannot cross into client processes (the trial sweep runs one process).
        jobs.append(replace(job, requests=list(job.requests[w::workers]), concurrency=share, offsets=offsets,
                            warmup=list(job.warmup[w::workers]), abort=None))
    return jobs


def _child(conn, job: DriverJob) -> None:
    async def main() -> DriverResult:
        driver = Driver(job)
        await driver.prepare()
        conn.send("ready")
        start_at = conn.recv()  # blocking is fine: nothing is in flight between warm-up and start
        return await driver.measure(start_at)

    try:
        conn.send(asyncio.run(main()))
    except BaseException as exc:  # report, then exit: the parent turns it into WorkerFailed
        conn.send(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
    finally:
        conn.close()


def run_jobs(jobs: list[DriverJob], on_start=None) -> list[DriverResult]:
    """Run the jobs, one process each (in this process when there is one job). `on_start()` is called just
    before the measured part starts, e.g. to scrape the server's counters."""
    if len(jobs) == 1:
        async def single() -> DriverResult:
            driver = Driver(jobs[0])
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
            proc = ctx.Process(target=_child, args=(child, job), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        for parent in pipes:
            if not parent.poll(READY_TIMEOUT_S):
                raise WorkerFailed("a client worker did not get ready")
            msg = parent.recv()
            if isinstance(msg, Exception):
                raise WorkerFailed(f"client worker failed: {msg!r}")
        if on_start:
            on_start()
        start_at = time.perf_counter() + START_MARGIN_S
        for parent in pipes:
            parent.send(start_at)
        results = []
        for parent in pipes:
            try:
                msg = parent.recv()
            except EOFError:
                raise WorkerFailed("a client worker exited without results") from None
            if isinstance(msg, Exception):
                raise WorkerFailed(f"client worker failed: {msg!r}")
            results.append(msg)
        return results
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()  # our own child, by its handle
                proc.join()
