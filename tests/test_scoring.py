"""Scoring: peak throughput, the stability components (hand-computed), and penalties."""
from __future__ import annotations

import pytest

from tuner.results import LevelResult, ServerCounters, TrialResult
from tuner.scoring import FEASIBLE, INFEASIBLE, score_trial, stability_components


def level(c, tput, ok=64, sent=64, repeat=0, preemptions=0.0, kv=0.5):
    return LevelResult(concurrency=c, repeat=repeat, requests=sent, completed=ok, failed=sent - ok, duration_s=1.0,
                       output_throughput=tput, server=ServerCounters(preemptions=preemptions, peak_kv_cache_usage=kv))


def trial(levels, failure=None, planned=3):
    return TrialResult(argv=["x"], env={}, levels=levels, levels_planned=planned, failure_class=failure)


def test_clean_sweep_scores_one():
    result = trial([level(1, 100), level(8, 500), level(32, 900), level(32, 900, repeat=1)])
    score = score_trial(result)
    assert score.constraint == FEASIBLE and score.feasible
    assert score.throughput == 900 and score.peak_concurrency == 32
    assert score.stability == pytest.approx(1.0)


def test_components_by_hand():
    # 4 failed of 256 sent; top level repeats 1000 and 800; 32 preemptions; KV peaked at 95 %
    levels = [level(1, 100), level(8, 500, ok=60), level(32, 1000, preemptions=32, kv=0.95),
              level(32, 800, repeat=1, kv=0.95)]
    c = stability_components(trial(levels))
    assert c.success == pytest.approx(252 / 256)
    assert c.survival == 1.0
    assert c.consistency == pytest.approx(0.8)
    assert c.memory == pytest.approx((1 - 32 / 256) * (1 - 0.25 * 0.5))
    assert c.score == pytest.approx(c.success * c.consistency * c.memory)


def test_peak_uses_median_of_repeats():
    score = score_trial(trial([level(1, 100), level(8, 700), level(8, 300, repeat=1), level(8, 600, repeat=2)], planned=2))
    assert score.throughput == 600


@pytest.mark.parametrize("failure", ["kv_capacity", "oom", "invalid_config", "crash", "startup_timeout"])
def test_startup_failures_get_worst_values_and_positive_constraint(failure):
    score = score_trial(trial([], failure=failure))
    assert score.values == [0.0, 0.0]
    assert score.constraint == INFEASIBLE and not score.feasible


def test_died_under_load_keeps_levels_in_components_but_is_penalized():
    result = trial([level(1, 100), level(8, 0, ok=10)], failure="died_under_load")
    score = score_trial(result)
    assert score.values == [0.0, 0.0] and not score.feasible
    assert score.components.survival == pytest.approx(1 / 3)  # 2 levels measured, the second one killed it
    assert score.components.success == pytest.approx(74 / 128)
