"""When a level has measured enough: the stop rule's verdicts on synthetic levels, and a real level against the
scheduled server that stops at its precision, before its cap, with every request it sent answered and counted."""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest
from tests.builders import closed_loop

from tuner.contracts.results import LevelEnd
from tuner.load import LevelOptions, LoadPattern, Workload, measure_level
from tuner.load.request import RequestRecord
from tuner.load.stopping import PercentileLimit, StopRule, combined_end, default_min_requests


def last_send(records):
    return max(r.start for r in records)


def test_a_steady_level_is_precise_enough_once_the_minimum_is_sent():
    records = closed_loop(streams=8, per_stream=40, seconds=1.0, jitter=0.1)
    rule = StopRule(precision=0.05, min_requests=64)
    assert rule.verdict(records, len(records), 8, last_send(records)) == LevelEnd.PRECISION
    assert StopRule(precision=0.05, min_requests=400).verdict(records, 320, 8, last_send(records)) is None


def test_a_noisy_level_goes_on():
    records = closed_loop(streams=8, per_stream=12, seconds=1.0, jitter=0.95)
    assert StopRule(precision=0.01, min_requests=16).verdict(records, len(records), 8, last_send(records)) is None


def test_a_level_proven_to_miss_its_slo_stops():
    slow = closed_loop(streams=8, per_stream=20, seconds=1.0, jitter=0.1, ttft=0.5)
    limit = PercentileLimit("ttft", 0.99, limit_ms=200.0)
    rule = StopRule(precision=0.0001, min_requests=16, limits=(limit,))
    assert rule.verdict(slow, len(slow), 8, last_send(slow)) == LevelEnd.SLO_MISSED
    fast = closed_loop(streams=8, per_stream=20, seconds=1.0, jitter=0.1, ttft=0.1)
    assert rule.verdict(fast, len(fast), 8, last_send(fast)) is None  # meets it: the precision decides


def test_a_miss_is_proven_only_when_enough_requests_lie_above_the_limit():
    """Of 100 answers, the p99's 95 % lower bound is the 97th smallest: two slow answers may be the 1 % a p99 allows
    (plus luck); six cannot be."""
    def level(slow: int) -> list[RequestRecord]:
        return [RequestRecord(ok=True, start=i, end=i + 1, ttft=0.5 if i < slow else 0.1, output_tokens=10)
                for i in range(100)]
    limit = PercentileLimit("ttft", 0.99, 200.0)
    assert not limit.proven_missed(level(2))
    assert limit.proven_missed(level(6))


def test_the_minimum_covers_two_rounds_and_the_slos_percentile_within_the_cap():
    assert default_min_requests(16, [], cap=512) == 32
    assert default_min_requests(4, [0.99], cap=512) == 100
    assert default_min_requests(64, [0.99], cap=512) == 128
    assert default_min_requests(4, [0.99], cap=64) == 64


def test_several_processes_end_by_the_least_conclusive():
    assert combined_end([LevelEnd.PRECISION, LevelEnd.CAP]) == LevelEnd.CAP
    assert combined_end([LevelEnd.PRECISION, LevelEnd.PRECISION]) == LevelEnd.PRECISION
    assert combined_end([LevelEnd.SLO_MISSED, LevelEnd.CUT_SHORT]) == LevelEnd.CUT_SHORT


_spec = importlib.util.spec_from_file_location("scheduled_server", Path(__file__).parents[1] / "fakes" / "scheduled_server.py")
_scheduled = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_scheduled)  # type: ignore[union-attr]
W = Workload(model="m", input_len=16, output_len=8, vocab_size=2048)


@pytest.fixture
def scheduled_server():
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(_scheduled.launch(**options))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_level_stops_at_its_precision_before_its_cap(scheduled_server, workers):
    url = scheduled_server(ttft_ms=20.0, itl_ms=5.0)
    rule = StopRule(precision=0.10, min_requests=40)
    level, records = measure_level(url, W, LoadPattern(concurrency=4, requests=2000, stop=rule),
                                   LevelOptions(request_timeout_s=30, level_timeout_s=120, workers=workers))
    assert level.ended_by == LevelEnd.PRECISION and level.precision_target == 0.10
    assert 40 <= level.requests < 2000 and level.unsent == 2000 - level.requests
    assert level.failed == 0 and len(records) == level.requests  # the ones in flight were answered, not dropped
    ci = level.output_throughput_ci
    assert ci is not None and ci.known and ci.relative is not None and ci.relative <= 0.15


def test_a_level_that_never_gets_precise_enough_stops_at_its_cap(scheduled_server):
    url = scheduled_server(ttft_ms=20.0, itl_ms=5.0)
    level, _ = measure_level(url, W, LoadPattern(concurrency=4, requests=24,
                                                       stop=StopRule(precision=0.0001, min_requests=8)),
                                   LevelOptions(request_timeout_s=30, level_timeout_s=60))
    assert level.ended_by == LevelEnd.CAP and level.requests == 24 and level.unsent == 0


def test_without_a_rule_every_request_is_sent(scheduled_server):
    url = scheduled_server(ttft_ms=20.0, itl_ms=5.0)
    level, _ = measure_level(url, W, LoadPattern(concurrency=4, requests=24), LevelOptions(request_timeout_s=30))
    assert level.ended_by == LevelEnd.COUNT and level.requests == 24 and level.precision_target is None


def test_an_open_loop_level_stops_at_its_precision(scheduled_server):
    url = scheduled_server(ttft_ms=20.0, itl_ms=5.0)
    level, _ = measure_level(url, W, LoadPattern(concurrency=None, rate=40.0, requests=4000,
                                                 stop=StopRule(precision=0.10, min_requests=40)),
                             LevelOptions(request_timeout_s=30, level_timeout_s=120))
    assert level.ended_by == LevelEnd.PRECISION and level.requests < 4000 and level.failed == 0
