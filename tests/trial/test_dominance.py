"""A search launch proven unable to reach the front stops: the bound on what it could still show, and the launch
against the fake server with a front it cannot reach (and one it can)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from tests.trial.test_run import TIMEOUTS, config, load, no_server_left_behind  # noqa: F401

import tuner.trial.run as worker
from tuner.contracts.goals import Goals
from tuner.contracts.results import Interval, LatencyStats, LevelResult
from tuner.trial.dominance import Bar, dominated_by, throughput_bound

GOALS = Goals(objectives=("output_tok_s", "stability"), slo={"ttft_p99_ms": 1000.0})


def level(c: int, tput: float, rel: float | None = 0.1, ttft: float = 100.0) -> LevelResult:
    ci = Interval(low=tput * (1 - rel), high=tput * (1 + rel), relative=rel) if rel is not None else Interval(reason="-")
    return LevelResult(concurrency=c, requests=100, completed=100, failed=0, duration_s=10.0, output_throughput=tput,
                       output_throughput_ci=ci, ttft_ms=LatencyStats(p99=ttft))


def test_the_bound_is_the_high_end_and_per_sequence_throughput_times_the_levels_left():
    assert throughput_bound([level(4, 400.0)], [16], GOALS) == pytest.approx(440.0 * 4)
    assert throughput_bound([level(4, 400.0)], [], GOALS) == pytest.approx(440.0)
    missed = [level(4, 400.0), level(16, 1000.0, ttft=5000.0)]  # the SLO is missed: no higher level counts
    assert throughput_bound(missed, [64], GOALS) == pytest.approx(440.0)
    assert throughput_bound([level(4, 400.0, rel=None)], [16], GOALS) is None  # no interval: no bound


def test_dominated_only_by_a_config_at_least_as_good_on_every_objective():
    measured = [level(4, 400.0)]
    fast_and_stable = Bar(trial=3, values=(("output_tok_s", 2000.0), ("stability", 1.0)))
    assert "dominated" in dominated_by([fast_and_stable], measured, [], GOALS)
    assert "trial 3" in dominated_by([fast_and_stable], measured, [], GOALS)
    fast_but_fragile = Bar(trial=4, values=(("output_tok_s", 2000.0), ("stability", 0.8)))
    assert dominated_by([fast_but_fragile], measured, [], GOALS) == ""  # this launch may still be more stable
    assert dominated_by([fast_and_stable], measured, [64], GOALS) == ""  # 64 streams might reach 7,040
    latency = Goals(objectives=("output_tok_s", "ttft_p99_ms"))
    assert dominated_by([fast_and_stable], measured, [], latency) == ""  # not boundable: never stopped


def plan(front: tuple[Bar, ...]) -> worker.SweepPlan:
    base = load(concurrency=[1, 2], requests_per_level=120, precision=None, screen_precision=None, repeats=2,
                request_timeout_s=10)
    return replace(base, goals=Goals(objectives=("output_tok_s", "stability")), front=front)


def test_a_launch_that_cannot_reach_the_front_stops_and_says_why(tmp_path):
    unreachable = (Bar(trial=0, values=(("output_tok_s", 1e9), ("stability", 1.0))),)
    result = worker.run_trial(config(tmp_path), plan(unreachable), TIMEOUTS, str(tmp_path / "t.log"),
                              vocab_size=1000).result
    assert result.failure_class is None and result.dominated
    assert result.sweep_stopped.startswith("dominated: at most") and "trial 0" in result.sweep_stopped
    assert [(lv.concurrency, lv.repeat) for lv in result.levels] == [(1, 0)]  # no level 2, no repeat
    assert result.levels_planned == 1


def test_a_launch_that_can_reach_it_runs_its_whole_sweep(tmp_path):
    reachable = (Bar(trial=0, values=(("output_tok_s", 1.0), ("stability", 1.0))),)
    result = worker.run_trial(config(tmp_path), plan(reachable), TIMEOUTS, str(tmp_path / "t.log"),
                              vocab_size=1000).result
    assert result.failure_class is None and not result.dominated and result.sweep_stopped == ""
    assert [(lv.concurrency, lv.repeat) for lv in result.levels][:2] == [(1, 0), (2, 0)]
    assert len(result.levels) == 3  # and the operating point's repeat
