"""One measured load level: build the requests, run them (in one or several client processes), summarise, and
check the result against the server's counters, the client's own health and the hardware's ceiling.

Load patterns: closed loop (`concurrency` streams, each sending its next request when the previous one ends) or
open loop (`rate` requests per second with Poisson/gamma/constant arrivals, at most `concurrency` in flight when
given). A level ends after `requests` requests, or after `duration_s` when given (then `requests` is a cap), or,
with a stop rule (tuner/load/stopping.py), once its throughput is known to the rule's precision (`requests` is then
the cap).
The warm-up runs on the same connections first and is not measured.
"""
from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tuner.contracts.results import LevelResult, LoadMode, Plausibility, WarningKind, level_warning
from tuner.load.arrivals import Arrival, arrival_offsets
from tuner.load.checks import client_health, cross_check
from tuner.load.driver import DriverJob
from tuner.load.http import Target
from tuner.load.request import RequestRecord
from tuner.load.server_counters import LevelProgress, MetricsWatcher
from tuner.load.stats import SLO, merge_records, summarize
from tuner.load.stopping import StopRule, combined_end
from tuner.load.tokenizer import Tokenizer
from tuner.load.workers import run_jobs, split_job
from tuner.load.workload import PromptFactory, Workload

RESCRAPE_DELAY_S = 0.5  # a server may publish its last counters a moment after the last response
SWEEP_METRICS_INTERVAL_S = 0.25  # trial levels can last only seconds; sample the KV-usage gauge often enough


@dataclass(frozen=True)
class LoadPattern:
    concurrency: int | None = 1  # closed loop: streams; open loop: cap on requests in flight (None: no cap)
    requests: int = 64
    rate: float | None = None  # requests per second: open loop
    arrival: Arrival = "poisson"
    burstiness: float = 1.0  # gamma shape; 1 = Poisson
    duration_s: float | None = None
    warmup: int = 0
    stop: StopRule | None = None  # measure to a precision (requests is then the cap); None: send every request

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


@dataclass
class LevelOptions:
    request_timeout_s: float = 120.0
    level_timeout_s: float = 600.0
    workers: int = 1
    # Run the client in a process of its own session even when one process is enough. Linux shares CPU between
    # sessions (autogroups) first: inside a Ray worker, the client shares one with raylet, the GCS and every Ray
    # daemon, whose bursts stalled its event loop for seconds on 2 cores (benchmarks/client_isolation.py).
    own_session: bool = False
    slo: SLO | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None
    metrics: bool = True
    metrics_interval_s: float = 1.0
    plausibility: Callable[[LevelResult], Plausibility | None] | None = None
    # Called from the metrics sampler (every metrics_interval_s) with the level's progress by the server's counters.
    on_progress: Callable[[LevelProgress], None] | None = None
    # Set by another thread (the trial's server watch): the level ends within ABORT_POLL_S, in-flight and unsent
    # requests are recorded as failures with error "aborted", and measure_level returns normally.
    abort: threading.Event | None = None


def build_requests(target: Target, workload: Workload, n: int, seed: int,
                   tokenizer: Tokenizer | None, headers: dict[str, str]) -> list[bytes]:
    factory = PromptFactory(replace(workload, seed=seed), tokenizer)
    return [target.request_bytes(workload.endpoint, factory.body(), headers) for _ in range(n)]


@dataclass(frozen=True)
class PreparedLevel:
    """A level's requests, built before it runs: the measured ones, the warm-up, and open-loop send times."""

    requests: list[bytes]
    warmup: list[bytes]
    offsets: list[float] | None


def prepare_level(base_url: str, workload: Workload, pattern: LoadPattern, repeat: int = 0,
                  tokenizer: Tokenizer | None = None, headers: dict[str, str] | None = None) -> PreparedLevel:
    """Everything a level sends, built now. A trial builds every planned level's prompts right after startup, so
    that no level needs the server's tokenizer (and the server alive) to make its requests."""
    target = Target.parse(base_url)
    headers = headers or {}
    seed = level_seed(workload, pattern, repeat)
    requests = build_requests(target, workload, pattern.requests, seed, tokenizer, headers)
    warmup = build_requests(target, workload, pattern.warmup, seed ^ 0x5A5A5A5A, tokenizer, headers)
    offsets = None
    if pattern.rate is not None:
        offsets = arrival_offsets(len(requests), pattern.rate, pattern.arrival, pattern.burstiness, seed)
    return PreparedLevel(requests, warmup, offsets)


def level_seed(workload: Workload, pattern: LoadPattern, repeat: int) -> int:
    """The same prompts for the same level in every process and every run (hash() of a tuple holding None differs
    between processes on Python 3.11)."""
    key = repr((workload.seed, pattern.concurrency, pattern.rate, workload.input_len, workload.output_len, repeat))
    return zlib.crc32(key.encode())


def measure_level(base_url: str, workload: Workload, pattern: LoadPattern, options: LevelOptions | None = None,
                  repeat: int = 0, prepared: PreparedLevel | None = None) -> tuple[LevelResult, list[RequestRecord]]:
    """Measure one level. Blocking: runs its own event loop (or client processes). `prepared`: the level's
    requests built beforehand (prepare_level with the same arguments); built here when not given."""
    options = options or LevelOptions()
    target = Target.parse(base_url)
    if prepared is None:
        prepared = prepare_level(base_url, workload, pattern, repeat, options.tokenizer, options.headers)
    requests, offsets = prepared.requests, prepared.offsets
    job = DriverJob(target, requests, pattern.concurrency, offsets, prepared.warmup, options.request_timeout_s,
                    options.level_timeout_s, pattern.duration_s, options.abort, pattern.stop)
    watcher = (MetricsWatcher(base_url, options.metrics_interval_s, options.headers, on_progress=options.on_progress)
               if options.metrics else None)
    try:
        results = run_jobs(split_job(job, options.workers), on_start=watcher.begin if watcher else None,
                           abort=options.abort, own_session=options.own_session)
        counters = watcher.end() if watcher else None
        records = merge_records(r.records for r in results)
        level = summarize(records, pattern.concurrency or 0, repeat, options.slo,
                          reconnects=sum(r.reconnects for r in results),
                          connections_opened=sum(r.connections_opened for r in results))
        level.server = counters
        if watcher and counters is not None and counters.scraped:
            warnings = cross_check(level)
            if level.token_mismatch:  # give the server a moment to publish its last counts, then decide
                time.sleep(RESCRAPE_DELAY_S)
                level.server = watcher.end()
                level.token_mismatch = False
                warnings = cross_check(level)
        else:
            warnings = cross_check(level) if watcher else []
    finally:
        if watcher:
            watcher.close()
    level.mode = LoadMode.OPEN if pattern.open_loop else LoadMode.CLOSED
    level.ended_by = combined_end([r.ended_by for r in results])
    level.precision_target = pattern.stop.precision if pattern.stop else None
    level.unsent = sum(r.unsent for r in results)
    level.request_rate = pattern.rate
    level.input_len = workload.mean_input_len
    level.output_len = workload.mean_output_len
    planned_rate = None
    if offsets and len(offsets) > 1 and offsets[-1] > 0:
        planned_rate = (len(offsets) - 1) / offsets[-1]  # the drawn schedule's own rate, not the nominal one
    level.client = client_health([r.client for r in results], records, pattern.concurrency,
                                 planned_rate if pattern.open_loop else None)
    level.client.requested_rate = pattern.rate
    if level.client.saturated:
        warnings.append(level_warning(WarningKind.CLIENT_SATURATED, "; ".join(level.client.reasons)
                                      + " (latencies include the client's own delay; throughput may be capped by"
                                      " the client)"))
    level.speculation = level.server.speculation() if level.server else None
    if options.plausibility is not None:
        level.plausibility = options.plausibility(level)
        if level.plausibility is not None and not level.plausibility.valid:
            warnings.append(level_warning(WarningKind.IMPLAUSIBLE, level.plausibility.reason))
    if level.failed:
        warnings.append(level_warning(WarningKind.FAILED_REQUESTS,
                                      f"{level.failed} of {level.requests} requests failed: {level.errors}"))
    level.warnings = warnings
    level.reliable = not (level.token_mismatch or level.client.saturated
                          or (level.plausibility is not None and not level.plausibility.valid))
    return level, records
