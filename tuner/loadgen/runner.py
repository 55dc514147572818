"""Closed-loop load at a fixed concurrency: `concurrency` streams, each sending its next request as soon as the
previous one finishes, until the level's requests are done. A warm-up runs first and is not measured.

Connections are spread over many small httpx clients: one client with a large pool degrades badly beyond a few
dozen connections (../shared/reference/load-generator-anchors.md), many small ones do not.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx

from tuner.loadgen.request import RequestRecord, send_request
from tuner.loadgen.stats import summarize
from tuner.loadgen.workload import PromptFactory, Workload
from tuner.results import LevelResult
from tuner.server_metrics import MetricsWatcher

CONNECTIONS_PER_CLIENT = 4
TOKEN_MISMATCH_TOLERANCE = 0.01


def make_clients(concurrency: int, request_timeout_s: float) -> list[httpx.AsyncClient]:
    n = -(-concurrency // CONNECTIONS_PER_CLIENT)
    limits = httpx.Limits(max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT)
    timeout = httpx.Timeout(request_timeout_s, connect=min(10.0, request_timeout_s))
    return [httpx.AsyncClient(limits=limits, timeout=timeout) for _ in range(n)]


async def closed_loop(clients: list[httpx.AsyncClient], url: str, bodies: list[bytes], concurrency: int,
                      request_timeout_s: float, level_timeout_s: float) -> list[RequestRecord]:
    records: list[RequestRecord | None] = [None] * len(bodies)
    next_index = 0

    async def stream(worker: int) -> None:
        nonlocal next_index
        client = clients[worker // CONNECTIONS_PER_CLIENT]
        while next_index < len(bodies):
            i = next_index
            next_index += 1
            started = time.perf_counter()
            records[i] = RequestRecord(start=started, error="level_timeout")  # replaced when the request ends
            try:
                records[i] = await asyncio.wait_for(send_request(client, url, bodies[i]), request_timeout_s)
            except asyncio.TimeoutError:
                records[i] = RequestRecord(start=started, end=time.perf_counter(), error="timeout")

    workers = [asyncio.create_task(stream(w)) for w in range(min(concurrency, len(bodies)))]
    done, pending = await asyncio.wait(workers, timeout=level_timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    now = time.perf_counter()
    out = []
    for record in records:
        if record is None:  # never sent before the level timed out: counted as failed, not dropped
            record = RequestRecord(start=now, error="level_timeout")
        if not record.end:
            record.end = now
        out.append(record)
    return out


async def measure_level(base_url: str, workload: Workload, concurrency: int, requests: int, warmup: int,
                        request_timeout_s: float, level_timeout_s: float, repeat: int = 0,
                        metrics_interval_s: float = 0.25) -> tuple[LevelResult, list[RequestRecord]]:
    factory = PromptFactory(replace(workload, seed=hash((workload.seed, concurrency, repeat)) & 0xFFFFFFFF))
    url = base_url + workload.endpoint
    clients = make_clients(concurrency, request_timeout_s)
    try:
        if warmup:
            await closed_loop(clients, url, [factory.body() for _ in range(warmup)], concurrency,
                              request_timeout_s, level_timeout_s)
        bodies = [factory.body() for _ in range(requests)]
        async with httpx.AsyncClient() as metrics_client:
            watcher = MetricsWatcher(base_url, interval_s=metrics_interval_s)
            await watcher.begin(metrics_client)
            stop = asyncio.Event()
            sampler = asyncio.create_task(watcher.sample_until(metrics_client, stop))
            records = await closed_loop(clients, url, bodies, concurrency, request_timeout_s, level_timeout_s)
            stop.set()
            await sampler
            counters = await watcher.end(metrics_client)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    result = summarize(records, concurrency, repeat)
    result.server = counters
    result.warnings = cross_check(result)
    return result, records


def cross_check(level: LevelResult) -> list[str]:
    """Compare the client's token count with the server's own counter for the same window."""
    warnings = []
    server = level.server
    if server is None or server.generation_tokens is None:
        return ["server counters unavailable: client figures not cross-checked"]
    if level.failed == 0 and server.generation_tokens > 0:
        diff = abs(level.output_tokens - server.generation_tokens) / server.generation_tokens
        if diff > TOKEN_MISMATCH_TOLERANCE:
            warnings.append(
                f"token_mismatch: client counted {level.output_tokens} output tokens, server "
                f"{server.generation_tokens:.0f} ({diff:.1%} apart)"
            )
    return warnings


def run_level(base_url: str, workload: Workload, concurrency: int, requests: int, warmup: int,
              request_timeout_s: float, level_timeout_s: float, repeat: int = 0) -> tuple[LevelResult, list[RequestRecord]]:
    return asyncio.run(measure_level(base_url, workload, concurrency, requests, warmup,
                                     request_timeout_s, level_timeout_s, repeat))
