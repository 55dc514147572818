"""The data contracts between stages: what a load level measured and what a trial produced.

Pydantic models, so they cross the Ray boundary and go into Optuna's storage as plain JSON.
Latencies are in milliseconds, throughputs in tokens (or requests) per second of wall time.
"""
from __future__ import annotations

from pydantic import BaseModel, Field


class LatencyStats(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class ServerCounters(BaseModel):
    """What the server itself reported over the level (deltas of /metrics counters, peaks of its gauges)."""

    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    preemptions: float | None = None
    requests_succeeded: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    spec_draft_tokens: float | None = None
    spec_accepted_tokens: float | None = None
    peak_kv_cache_usage: float | None = None
    peak_running: float | None = None
    peak_waiting: float | None = None

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        if not self.prefix_cache_queries:
            return None
        return (self.prefix_cache_hits or 0.0) / self.prefix_cache_queries


class LevelResult(BaseModel):
    concurrency: int
    repeat: int = 0
    requests: int
    completed: int
    failed: int
    duration_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    output_throughput: float = 0.0
    total_token_throughput: float = 0.0
    request_throughput: float = 0.0
    ttft_ms: LatencyStats = Field(default_factory=LatencyStats)
    tpot_ms: LatencyStats = Field(default_factory=LatencyStats)
    itl_ms: LatencyStats = Field(default_factory=LatencyStats)
    e2el_ms: LatencyStats = Field(default_factory=LatencyStats)
    errors: dict[str, int] = Field(default_factory=dict, description="failed requests by kind")
    server: ServerCounters | None = None
    warnings: list[str] = Field(default_factory=list, description="why a figure of this level may not be trusted")

    @property
    def success_rate(self) -> float:
        return self.completed / self.requests if self.requests else 0.0


class TrialResult(BaseModel):
    """Everything a worker learned from one launch of one configuration."""

    argv: list[str]
    env: dict[str, str]  # secrets redacted
    failure_class: str | None = None  # None: the server started and the whole sweep ran
    failure_detail: str = ""
    startup_s: float | None = None
    levels: list[LevelResult] = Field(default_factory=list)
    levels_planned: int = 0
    log_path: str = ""
    log_tail: str = ""
    hostname: str = ""
    wall_s: float = 0.0
