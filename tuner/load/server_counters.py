"""The server's own counters, from its Prometheus /metrics endpoint: an independent check of the client.

Scraped before and after each measured level (counter deltas) and sampled in a background thread while it runs
(gauge peaks). The thread keeps the scrape and its parsing off the client's event loop, whose timestamps they
would otherwise delay.
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tuner.contracts.results import ServerCounters
from tuner.errors import ServerGone
from tuner.server.client import server_client

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")

COUNTERS = {
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "preemptions": "vllm:num_preemptions_total",
    "requests_succeeded": "vllm:request_success_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "spec_drafts": "vllm:spec_decode_num_drafts_total",
    "spec_draft_tokens": "vllm:spec_decode_num_draft_tokens_total",
    "spec_accepted_tokens": "vllm:spec_decode_num_accepted_tokens_total",
}
GAUGES = {
    "peak_kv_cache_usage": "vllm:kv_cache_usage_perc",
    "peak_running": "vllm:num_requests_running",
    "peak_waiting": "vllm:num_requests_waiting",
}
# Accepted draft tokens by draft position, one series per `position` label: kept apart as `name[position]`.
PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
_POSITION = re.compile(r'position="(\d+)"')
_WANTED = frozenset(COUNTERS.values()) | frozenset(GAUGES.values())


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric over its label sets (engines, reasons, ...). Only vLLM's metrics are kept."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[m.group(1)] = totals.get(m.group(1), 0.0) + value
        if m.group(1) == PER_POSITION and m.group(2) and (pos := _POSITION.search(m.group(2))):
            key = f"{PER_POSITION}[{pos.group(1)}]"
            totals[key] = totals.get(key, 0.0) + value
    return totals


def counters_between(before: dict[str, float], after: dict[str, float],
                     peaks: dict[str, float] | None = None) -> ServerCounters:
    deltas = {name: after[metric] - before.get(metric, 0.0) for name, metric in COUNTERS.items() if metric in after}
    positions: list[float] = []
    while (key := f"{PER_POSITION}[{len(positions)}]") in after:
        positions.append(after[key] - before.get(key, 0.0))
    return ServerCounters(**deltas, **(peaks or {}), spec_accepted_per_position=positions)


@dataclass(frozen=True)
class LevelProgress:
    """A running level so far, by the server's own counters since the level's measured part began (its warm-up is
    over): what a live display shows while a level lasts minutes. Not a measurement: the level's figures are the
    client's, checked against the same counters when it ends."""

    answered: int  # requests the server finished successfully
    output_tokens: int
    elapsed_s: float

    @property
    def output_throughput(self) -> float:
        return self.output_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


class MetricsWatcher:
    """begin() before a level, end() after it; a daemon thread samples the gauges in between (and tells
    `on_progress` how far the level has come, by the counters)."""

    def __init__(self, base_url: str, interval_s: float = 1.0, headers: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 on_progress: Callable[[LevelProgress], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        self.on_progress = on_progress
        self._began = 0.0
        self._client = server_client(5.0, headers, transport)
        self._before: dict[str, float] | None = None
        self._peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scrape(self) -> dict[str, float] | None:
        """The server's vLLM metrics, or None. A scrape the server does not answer is recorded as not scraped
        (`scraped: false`), never guessed; whether the server died meanwhile is the trial's to decide."""
        try:
            response = self._client.get(f"{self.base_url}/metrics")
        except ServerGone:
            return None
        if response.status_code != 200:
            return None
        parsed = parse_prometheus(response.text)
        return parsed or None  # a 200 without any vllm: metric is not a metrics endpoint

    def begin(self) -> None:
        self._before = self.scrape()
        self._began = time.monotonic()
        self._peaks = {}
        if self._before is not None and self.interval_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="metrics-sampler", daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            sample = self.scrape()
            if sample:
                self._note_peaks(sample)
                self._tell_progress(sample)

    def _tell_progress(self, sample: dict[str, float]) -> None:
        if self.on_progress is None or self._before is None:
            return
        before = self._before

        def delta(name: str) -> int:
            metric = COUNTERS[name]
            return max(0, int(sample.get(metric, 0.0) - before.get(metric, 0.0)))

        try:
            self.on_progress(LevelProgress(delta("requests_succeeded"), delta("generation_tokens"),
                                           time.monotonic() - self._began))
        except Exception:  # a display's failure must not end the sampling of the level it displays
            pass

    def end(self) -> ServerCounters | None:
        """Counter deltas and gauge peaks over the level; None when the server has no /metrics."""
        self._stop_sampler()
        if self._before is None:
            return None
        after = self.scrape()
        if after is None:
            return ServerCounters(scraped=False)
        self._note_peaks(after)
        return counters_between(self._before, after, self._peaks)

    def close(self) -> None:
        self._stop_sampler()  # a level that raised never called end(): the sampler must not outlive the client
        self._client.close()

    def _stop_sampler(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _note_peaks(self, sample: dict[str, float]) -> None:
        for name, metric in GAUGES.items():
            if metric in sample:
                self._peaks[name] = max(self._peaks.get(name, 0.0), sample[metric])
