"""Metric math against hand-computed values, and exact percentile merging across client processes."""
from __future__ import annotations

import numpy as np
import pytest

from tuner.load.request import RequestRecord
from tuner.load.stats import SLO, achieved_concurrency, merge_records, summarize


def rec(start, ttft, itl, tokens, ok=True, prompt=10, error=None, queued=None):
    e2el = ttft + sum(itl)
    return RequestRecord(start=start, ok=ok, error=error, ttft=ttft, itl=list(itl), e2el=e2el if ok else None,
                         end=start + e2el, prompt_tokens=prompt, output_tokens=tokens, queued=queued,
                         chunks=len(itl) + 1)


def test_level_figures_by_hand():
    records = [
        rec(0.0, 0.100, [0.010, 0.020], 3, queued=0.0),  # ends 0.130
        rec(0.0, 0.200, [0.030], 2, queued=-0.004),  # ends 0.230; waited 4 ms in the client
        RequestRecord(start=0.1, end=0.5, error="http_500", queued=0.1),  # failed, but inside the duration
    ]
    level = summarize(records, concurrency=2)
    assert level.requests == 3 and level.completed == 2 and level.failed == 1 and level.errors == {"http_500": 1}
    assert level.duration_s == pytest.approx(0.5)  # first send .. last end, the failure included
    assert level.output_tokens == 5 and level.output_throughput == pytest.approx(10.0)
    assert level.total_token_throughput == pytest.approx(50.0) and level.request_throughput == pytest.approx(4.0)
    assert level.ttft_ms.mean == pytest.approx(150.0) and level.ttft_ms.p50 == pytest.approx(150.0)
    assert level.ttft_ms.p99 == pytest.approx(100 + 0.99 * 100)  # numpy's linear rule, as vllm bench serve
    assert level.itl_ms.mean == pytest.approx(20.0) and level.itl_ms.p50 == pytest.approx(20.0)
    # TPOT = (E2EL - TTFT) / (tokens - 1): (30/2, 30/1) ms
    assert level.tpot_ms.mean == pytest.approx(22.5)
    assert level.e2el_ms.mean == pytest.approx(180.0)
    assert level.queue_ms.mean == pytest.approx(4.0 / 3)


def test_goodput_counts_requests_meeting_every_slo():
    records = [rec(0.0, 0.1, [0.01] * 9, 10), rec(0.0, 0.3, [0.01] * 9, 10), rec(0.0, 0.1, [0.05] * 9, 10)]
    level = summarize(records, 3, slo=SLO(ttft_ms=200, tpot_ms=20))
    duration = level.duration_s
    assert level.goodput == pytest.approx(1 / duration) and level.slo == {"ttft_ms": 200, "tpot_ms": 20}
    assert summarize(records, 3).goodput is None


def test_achieved_concurrency_is_time_weighted_until_the_last_send():
    # two streams busy all the time until the last send at t=2: average 2
    records = [rec(0, 1.0, [], 1), rec(0, 1.0, [], 1), rec(1.0, 1.0, [], 1), rec(1.0, 1.0, [], 1),
               rec(2.0, 1.0, [], 1)]
    assert achieved_concurrency(records) == pytest.approx(2.0)
    assert achieved_concurrency(records, streams=2) == pytest.approx(2.0)


def test_achieved_concurrency_leaves_out_a_slow_ramp_up():
    """The server accepted the second stream's connection late (it had closed the idle one): not the client's pace.
    Once both streams ran, both stayed busy until the last send."""
    records = [rec(0.0, 2.0, [], 1), rec(1.0, 1.0, [], 1), rec(2.0, 1.0, [], 1), rec(2.0, 1.0, [], 1),
               rec(3.0, 1.0, [], 1)]
    assert achieved_concurrency(records) == pytest.approx(5 / 3)  # from the first send: looks starved
    assert achieved_concurrency(records, streams=2) == pytest.approx(2.0)
    # A client that really leaves a stream idle is still seen: here the second stream waits a second between sends.
    idle = [rec(0.0, 1.0, [], 1), rec(0.0, 1.0, [], 1), rec(1.0, 1.0, [], 1), rec(2.0, 1.0, [], 1),
            rec(3.0, 1.0, [], 1)]
    assert achieved_concurrency(idle, streams=2) < 1.8


def test_percentiles_merge_raw_samples_not_percentiles():
    rng = np.random.default_rng(1)
    fast = [rec(float(i), float(t), [], 1) for i, t in enumerate(rng.uniform(0.01, 0.02, 90))]
    slow = [rec(float(i), float(t), [], 1) for i, t in enumerate(rng.uniform(1.0, 2.0, 10))]
    merged = summarize(merge_records([fast, slow]), 2)
    all_ms = np.array([r.ttft for r in fast + slow]) * 1000
    assert merged.ttft_ms.p99 == pytest.approx(np.percentile(all_ms, 99))
    assert merged.ttft_ms.p50 == pytest.approx(np.percentile(all_ms, 50))
    averaged = (summarize(fast, 1).ttft_ms.p99 + summarize(slow, 1).ttft_ms.p99) / 2
    assert abs(averaged - merged.ttft_ms.p99) > 100  # what averaging per-process percentiles would get wrong
    assert [r.start for r in merge_records([fast, slow])] == sorted(r.start for r in fast + slow)
