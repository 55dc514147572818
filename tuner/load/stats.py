"""Level figures from per-request records, with `vllm bench serve`'s definitions.

Every figure carries its 95 % interval where the level's requests give one (tuner.load.intervals): throughput by
batch means over the steady part, p99 latencies by order statistics.
Percentiles are computed from all samples (numpy's linear rule, as `vllm bench serve` does), never averaged across
groups: records of several client processes are concatenated first (`merge_records`), then summarised.
Throughput = tokens of successful requests / (first send .. last completion); failed requests stay inside that
window and are counted, never dropped. A request sent again after losing the keep-alive close/send race (see
tuner/load/http.py) has one record, its second attempt's; the level counts it in `reconnects`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tuner.contracts.results import LatencyStats, LevelResult
from tuner.load.intervals import percentile_interval, throughput_interval
from tuner.load.request import RequestRecord


@dataclass(frozen=True)
class SLO:
    """Service-level objectives for goodput, in milliseconds; None = not constrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in (("ttft_ms", self.ttft_ms), ("tpot_ms", self.tpot_ms), ("e2el_ms", self.e2el_ms))
                if v is not None}

    def met(self, r: RequestRecord) -> bool:
        """`vllm bench serve` counts a request as good when every given SLO holds (TPOT of one-token outputs is 0)."""
        if not r.ok:
            return False
        if self.ttft_ms is not None and (r.ttft is None or r.ttft * 1000 > self.ttft_ms):
            return False
        if self.tpot_ms is not None and (r.tpot or 0.0) * 1000 > self.tpot_ms:
            return False
        if self.e2el_ms is not None and (r.e2el is None or r.e2el * 1000 > self.e2el_ms):
            return False
        return True


def latency_stats(seconds: Sequence[float] | np.ndarray) -> LatencyStats:
    if not len(seconds):
        return LatencyStats()
    ms = np.asarray(seconds, dtype=float) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(mean=float(ms.mean()), p50=float(p50), p90=float(p90), p99=float(p99),
                        p99_ci=percentile_interval(ms, 0.99))


def merge_records(shards: Iterable[Sequence[RequestRecord]]) -> list[RequestRecord]:
    """All records of all client processes, in start order: percentiles are then taken over every sample."""
    return sorted((r for shard in shards for r in shard), key=lambda r: r.start)


def achieved_concurrency(records: Sequence[RequestRecord], streams: int | None = None) -> float | None:
    """Time-averaged number of requests in flight while every stream had work: from the moment all `streams` had
    sent their first request to the last send.

    The window ends at the last send because after it the level drains and fewer streams are busy by design. It
    starts once every stream is running because the ramp-up is not the client's pace: a busy server accepts the
    connections it closed while idle (keep-alive timeout) slowly, and a level of few requests per stream would
    otherwise read as a starved client. Without `streams`, from the first send."""
    if len(records) < 2:
        return None
    starts = np.sort(np.array([r.start for r in records]))
    ramped = streams is not None and 1 < streams < len(records)
    t0 = float(starts[streams - 1]) if ramped and streams is not None else float(starts[0])
    t1 = float(starts[-1])
    if t1 <= t0:
        return None
    begin = np.maximum(np.array([r.start for r in records]), t0)
    ends = np.minimum(np.array([max(r.end, r.start) for r in records]), t1)
    busy = np.clip(ends - begin, 0.0, None).sum()
    return float(busy / (t1 - t0))


def achieved_rate(records: Sequence[RequestRecord]) -> float | None:
    """Requests sent per second over the sending window (open loop)."""
    if len(records) < 2:
        return None
    span = max(r.start for r in records) - min(r.start for r in records)
    return (len(records) - 1) / span if span > 0 else None


def summarize(records: Sequence[RequestRecord], concurrency: int, repeat: int = 0, slo: SLO | None = None,
              reconnects: int = 0, connections_opened: int = 0) -> LevelResult:
    """The level's figures. `reconnects` and `connections_opened` are counts of the client processes (summed)."""
    ok = [r for r in records if r.ok]
    duration = (max(r.end for r in records) - min(r.start for r in records)) if records else 0.0
    output_tokens = sum(r.output_tokens for r in ok)
    input_tokens = sum(r.prompt_tokens for r in ok)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    itl = np.fromiter((gap for r in ok for gap in r.itl), dtype=float)
    met = slo.met if slo is not None and slo.as_dict() else None  # goodput only with limits given
    output_throughput = per_s(output_tokens)
    return LevelResult(
        concurrency=concurrency,
        repeat=repeat,
        requests=len(records),
        completed=len(ok),
        failed=len(records) - len(ok),
        duration_s=duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        output_throughput=output_throughput,
        output_throughput_ci=throughput_interval(records, concurrency, output_throughput),
        total_token_throughput=per_s(output_tokens + input_tokens),
        request_throughput=per_s(len(ok)),
        ttft_ms=latency_stats([r.ttft for r in ok if r.ttft is not None]),
        tpot_ms=latency_stats([t for r in ok if (t := r.tpot) is not None]),
        itl_ms=latency_stats(itl),
        e2el_ms=latency_stats([r.e2el for r in ok if r.e2el is not None]),
        queue_ms=latency_stats([q for r in records if (q := r.queue_time) is not None]),
        chunks=sum(r.chunks for r in ok),
        goodput=per_s(sum(1 for r in ok if met(r))) if met else None,
        goodput_tok_s=per_s(sum(r.output_tokens for r in ok if met(r))) if met else None,
        slo=slo.as_dict() if met and slo is not None else {},
        errors=dict(Counter(r.error for r in records if not r.ok and r.error)),
        reconnects=reconnects,
        connections_opened=connections_opened,
    )
