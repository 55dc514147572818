"""Level figures from per-request records. Percentiles are computed from all samples (numpy's linear rule,
as `vllm bench serve` does), never averaged across groups."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tuner.loadgen.request import RequestRecord
from tuner.results import LatencyStats, LevelResult


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    if not len(seconds):
        return LatencyStats()
    ms = np.asarray(seconds, dtype=float) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(mean=float(ms.mean()), p50=float(p50), p90=float(p90), p99=float(p99))


def summarize(records: Sequence[RequestRecord], concurrency: int, repeat: int = 0) -> LevelResult:
    """Throughput = tokens of successful requests / (first send .. last completion), failed requests included
    in that window and counted, never dropped."""
    ok = [r for r in records if r.ok]
    duration = (max(r.end for r in records) - min(r.start for r in records)) if records else 0.0
    output_tokens = sum(r.output_tokens for r in ok)
    input_tokens = sum(r.prompt_tokens for r in ok)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    return LevelResult(
        concurrency=concurrency,
        repeat=repeat,
        requests=len(records),
        completed=len(ok),
        failed=len(records) - len(ok),
        duration_s=duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        output_throughput=per_s(output_tokens),
        total_token_throughput=per_s(output_tokens + input_tokens),
        request_throughput=per_s(len(ok)),
        ttft_ms=latency_stats([r.ttft for r in ok if r.ttft is not None]),
        tpot_ms=latency_stats([t for r in ok if (t := r.tpot) is not None]),
        itl_ms=latency_stats([gap for r in ok for gap in r.itl]),
        e2el_ms=latency_stats([r.e2el for r in ok if r.e2el is not None]),
        errors=dict(Counter(r.error for r in records if not r.ok and r.error)),
    )
