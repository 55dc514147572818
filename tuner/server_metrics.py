"""The server's own counters, from its Prometheus /metrics endpoint: an independent check of the client."""
from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field

import httpx

from tuner.results import ServerCounters

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")

COUNTERS = {
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "preemptions": "vllm:num_preemptions_total",
    "requests_succeeded": "vllm:request_success_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "spec_draft_tokens": "vllm:spec_decode_num_draft_tokens_total",
    "spec_accepted_tokens": "vllm:spec_decode_num_accepted_tokens_total",
}
GAUGES = {
    "peak_kv_cache_usage": "vllm:kv_cache_usage_perc",
    "peak_running": "vllm:num_requests_running",
    "peak_waiting": "vllm:num_requests_waiting",
}


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric over its label sets (engines, reasons, ...)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
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
    return totals


@dataclass
class MetricsWatcher:
    """Scrapes /metrics before and after a level and samples the gauges while it runs."""

    base_url: str
    interval_s: float = 0.25
    _before: dict[str, float] = field(default_factory=dict)
    _peaks: dict[str, float] = field(default_factory=dict)
    available: bool = True

    async def _scrape(self, client: httpx.AsyncClient) -> dict[str, float] | None:
        try:
            response = await client.get(f"{self.base_url}/metrics", timeout=5.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return parse_prometheus(response.text)

    async def begin(self, client: httpx.AsyncClient) -> None:
        before = await self._scrape(client)
        self.available = before is not None
        self._before = before or {}
        self._peaks = {}

    async def sample_until(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while self.available and not stop.is_set():
            sample = await self._scrape(client)
            if sample:
                self._note_peaks(sample)
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass

    async def end(self, client: httpx.AsyncClient) -> ServerCounters | None:
        if not self.available:
            return None
        after = await self._scrape(client)
        if after is None:
            return None
        self._note_peaks(after)
        deltas = {
            name: after[metric] - self._before.get(metric, 0.0)
            for name, metric in COUNTERS.items() if metric in after
        }
        return ServerCounters(**deltas, **self._peaks)

    def _note_peaks(self, sample: dict[str, float]) -> None:
        for name, metric in GAUGES.items():
            if metric in sample:
                self._peaks[name] = max(self._peaks.get(name, 0.0), sample[metric])
