"""Scoring one launch: outcomes, constraints, values at the operating point, and the stability components."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.contracts.goals import Goals
from tuner.contracts.results import LatencyStats, LevelResult, ServerCounters, TrialResult
from tuner.scoring.score import CONFIG_FAILURE, MEASUREMENT, SLO, relative_mad, score_run


def level(c=8, tput=1000.0, *, repeat=0, ok=64, sent=64, ttft_p99=100.0, preemptions=0.0, kv=0.5, reliable=True,
          warnings=(), phase="sweep", server=True):
    return LevelResult(
        concurrency=c, repeat=repeat, requests=sent, completed=ok, failed=sent - ok, duration_s=10.0,
        output_throughput=tput, request_throughput=tput / 100, ttft_ms=LatencyStats(p99=ttft_p99),
        server=ServerCounters(preemptions=preemptions, peak_kv_cache_usage=kv) if server else None,
        reliable=reliable, warnings=list(warnings), phase=phase)


def trial(levels, failure=None, planned=None, detail=""):
    return TrialResult(argv=["vllm", "serve"], env={}, levels=levels, failure_class=failure, failure_detail=detail,
                       levels_planned=len(levels) if planned is None else planned)


SWEEP = [level(1, 200, ttft_p99=40), level(8, 900, ttft_p99=200), level(32, 1500, ttft_p99=700)]
GOALS = Goals(slo={"ttft_p99_ms": 500.0})


# -- outcomes ------------------------------------------------------------------------------------------------------
def test_measured_reads_values_at_the_operating_point():
    score = score_run(trial(SWEEP), GOALS)
    assert score.outcome == "measured" and score.feasible
    assert score.operating_point == "c=8" and score.operating_concurrency == 8
    assert score.values == {"output_tok_s": 900.0, "stability": pytest.approx(1.0)}
    assert score.constraints[CONFIG_FAILURE] <= 0 and score.constraints[MEASUREMENT] <= 0
    assert score.constraints[SLO] <= 0


def test_measured_without_slo_takes_peak():
    score = score_run(trial(SWEEP), Goals())
    assert score.outcome == "measured" and score.feasible
    assert score.operating_concurrency == 32 and score.values["output_tok_s"] == 1500.0
    assert all(v <= 0 for v in score.constraints.values())


def test_slo_miss_keeps_measured_values_and_says_by_how_much():
    levels = [level(8, 900, ttft_p99=800), level(32, 1500, ttft_p99=2000)]
    score = score_run(trial(levels), GOALS)
    assert score.outcome == "slo_miss" and not score.feasible
    assert score.constraints[SLO] == pytest.approx(0.6)
    assert score.constraints[CONFIG_FAILURE] <= 0 and score.constraints[MEASUREMENT] <= 0
    assert score.operating_point == "c=8"  # the closest point, not the fastest
    assert score.values["output_tok_s"] == 900.0  # measured, not the worst value
    assert score.values["stability"] == pytest.approx(1.0)
    assert "ttft_p99_ms" in score.detail and "c=8" in score.detail


def test_slo_miss_latency_objective_is_the_measured_worst_repeat():
    goals = Goals(objectives=("output_tok_s", "ttft_p99_ms"), slo={"ttft_p99_ms": 500.0})
    levels = [level(8, 900, ttft_p99=700), level(8, 950, repeat=1, ttft_p99=800)]
    score = score_run(trial(levels), goals)
    assert score.outcome == "slo_miss"
    assert score.values == {"output_tok_s": pytest.approx(925.0), "ttft_p99_ms": 800.0}
    assert score.constraints[SLO] == pytest.approx(0.6)


def test_unreliable_when_every_level_is_flagged():
    levels = [level(8, 900, reliable=False, warnings=["client_saturated: loop lag 400 ms"]),
              level(32, 1500, reliable=False, warnings=["token_mismatch: client 10, server 12"])]
    score = score_run(trial(levels), GOALS)
    assert score.outcome == "unreliable" and not score.feasible
    assert score.constraints == {CONFIG_FAILURE: -1.0, SLO: -1.0, MEASUREMENT: 1.0}
    assert score.values == {"output_tok_s": 0.0, "stability": 0.0}  # Goals.worst()
    assert score.flags == ["client_saturated", "token_mismatch"]
    assert "client_saturated" in score.detail and score.operating_point is None


def test_unreliable_worst_values_for_minimized_objectives():
    goals = Goals(objectives=("usd_per_m_tokens", "ttft_p99_ms", "stability"), price_per_slice_hour=4.0)
    score = score_run(trial([level(8, 900, reliable=False, warnings=["implausible: 3x ceiling"])]), goals)
    assert score.outcome == "unreliable"
    assert score.ordered_values(goals) == [float("inf"), float("inf"), 0.0]


@pytest.mark.parametrize("failure", ["oom", "kv_capacity", "invalid_config", "crash", "startup_timeout"])
def test_startup_failure_is_a_config_failure(failure):
    score = score_run(trial([], failure=failure, planned=3, detail="CUDA out of memory"), GOALS)
    assert score.outcome == failure and not score.feasible
    assert score.detail == "CUDA out of memory"
    assert score.constraints == {CONFIG_FAILURE: 1.0, SLO: -1.0, MEASUREMENT: -1.0}
    assert score.values == {"output_tok_s": 0.0, "stability": 0.0}
    assert score.components.survival == 0.0
    assert score.components.score == 0.0
    assert score.evidence.phases_lived == 0 and score.evidence.phases_planned == 3


def test_died_before_any_level_finished_is_a_config_failure():
    score = score_run(trial([level(1, 0, ok=0)], failure="died_under_load", planned=3), GOALS)
    assert score.outcome == "died_under_load" and not score.feasible
    assert score.constraints[CONFIG_FAILURE] == 1.0


def test_no_failure_class_and_no_levels_is_no_measurement():
    score = score_run(trial([], planned=3), GOALS)
    assert score.outcome == "no_measurement" and score.constraints[CONFIG_FAILURE] == 1.0


def test_died_at_last_level_stays_feasible_with_lower_survival():
    levels = [level(1, 200, ttft_p99=40), level(8, 900, ttft_p99=200),
              level(32, 300, ok=10, reliable=False, warnings=["server_died: connection refused"])]
    score = score_run(trial(levels, failure="died_under_load", planned=3), GOALS)
    assert score.feasible
    assert score.outcome == "died_under_load"
    assert score.operating_concurrency == 8 and score.values["output_tok_s"] == 900.0
    assert score.components.survival == 0.0  # this launch died: one of the launches a config's survival counts
    assert score.evidence.phases_lived == 2 and score.evidence.phases_planned == 3
    assert score.components.success == pytest.approx((64 + 64 + 10) / (3 * 64))
    assert score.values["stability"] == pytest.approx(score.components.score) == 0.0
    assert score.flags == ["server_died"]


def test_died_before_planned_levels_counts_the_unreached_ones():
    levels = [level(1, 200), level(8, 900, ok=30, reliable=False, warnings=["server_died: died_under_load"])]
    score = score_run(trial(levels, failure="died_under_load", planned=5), Goals())
    assert score.feasible and score.components.survival == 0.0
    assert score.evidence.phases_lived == 1 and score.evidence.phases_planned == 5


# -- stability components ------------------------------------------------------------------------------------------
def test_full_kv_cache_without_preemptions_is_full_headroom():
    score = score_run(trial([level(8, 900, kv=1.0), level(32, 1500, kv=1.0)]), Goals())
    assert score.components.headroom == 1.0
    assert score.evidence.peak_kv_usage == 1.0  # kept as evidence
    assert score.components.score == pytest.approx(1.0)


def test_preemptions_reduce_headroom():
    # 32 preemptions over 128 requests sent
    score = score_run(trial([level(8, 900, preemptions=0), level(32, 1500, preemptions=32)]), Goals())
    assert score.evidence.preemptions == 32
    assert score.components.headroom == pytest.approx(1 - 32 / 128)
    assert score.values["stability"] == pytest.approx(0.75)


def test_more_preemptions_than_requests_floor_headroom_at_zero():
    score = score_run(trial([level(8, 900, preemptions=500)]), Goals())
    assert score.components.headroom == 0.0 and score.components.score == 0.0


def test_missing_server_counters_do_not_dock_headroom():
    score = score_run(trial([level(8, 900, server=False)]), Goals())
    assert score.components.headroom == 1.0 and score.evidence.peak_kv_usage is None


def test_success_counts_failed_requests_in_every_level():
    levels = [level(1, 200, ok=60), level(8, 900, ok=64), level(32, 1500, ok=52)]
    score = score_run(trial(levels), Goals())
    assert score.components.success == pytest.approx(176 / 192)
    assert score.evidence.requests == 192 and score.evidence.completed == 176
    assert score.values["stability"] == pytest.approx(176 / 192)


def test_consistency_is_one_for_a_single_launch_and_repeat_spread_is_evidence():
    levels = [level(8, 1000), level(8, 800, repeat=1), level(8, 900, repeat=2)]
    score = score_run(trial(levels), Goals())
    assert score.components.consistency == 1.0
    assert score.evidence.repeat_spread == pytest.approx(100 / 900)
    assert score.values["output_tok_s"] == 900.0


def test_no_repeats_no_spread():
    assert score_run(trial(SWEEP), Goals()).evidence.repeat_spread is None


def test_relative_mad():
    assert relative_mad([]) is None
    assert relative_mad([5.0]) == 0.0
    assert relative_mad([0.0, 0.0]) is None
    assert relative_mad([1000, 800]) == pytest.approx(100 / 900)


# -- the Score itself ----------------------------------------------------------------------------------------------
def test_feasible_property_follows_constraints():
    score = score_run(trial(SWEEP), GOALS)
    assert score.feasible
    assert not score_run(trial([level(8, 900, ttft_p99=501)]), GOALS).feasible
    assert score_run(trial([level(8, 900, ttft_p99=500)]), GOALS).feasible  # exactly at the limit


@pytest.mark.parametrize("objectives", [
    ("stability", "output_tok_s"), ("output_tok_s", "stability"),
    ("ttft_p99_ms", "goodput_tok_s", "stability"), ("stability", "usd_per_m_tokens", "tok_s_per_chip"),
])
def test_ordered_values_follow_goals_order(objectives):
    goals = Goals(objectives=objectives, slo={"ttft_p99_ms": 500.0}, chips=4, price_per_slice_hour=3.6)
    levels = [level(8, 900, ttft_p99=200, preemptions=16)]
    score = score_run(trial(levels), goals)
    expected = {"stability": 0.75, "output_tok_s": 900.0, "goodput_tok_s": 900.0, "ttft_p99_ms": 200.0,
                "usd_per_m_tokens": 3.6 / (900 * 3600) * 1e6, "tok_s_per_chip": 225.0}
    assert list(score.values) == list(objectives)
    assert score.ordered_values(goals) == pytest.approx([expected[o] for o in objectives])


def test_stored_is_plain_json_with_component_score():
    import json

    stored = score_run(trial(SWEEP, failure=None), GOALS).model_dump(mode="json")
    json.dumps(stored)
    assert stored["outcome"] == "measured"
    assert stored["components"]["score"] == pytest.approx(1.0)
    assert stored["evidence"]["phases_planned"] == 3 and stored["operating_concurrency"] == 8


levels_strategy = st.lists(
    st.builds(
        lambda c, tput, sent, ok_frac, pre, kv, reliable, ttft: level(
            c, tput, sent=sent, ok=int(sent * ok_frac), preemptions=pre, kv=kv, reliable=reliable, ttft_p99=ttft),
        st.sampled_from([1, 4, 16, 64]), st.floats(0.0, 1e5), st.integers(0, 500), st.floats(0.0, 1.0),
        st.floats(0.0, 1e4), st.floats(0.0, 1.0), st.booleans(), st.floats(1.0, 5000.0)),
    max_size=8)


@settings(max_examples=300)
@given(levels=levels_strategy, failure=st.sampled_from([None, "died_under_load", "oom", "unresponsive"]),
       planned=st.integers(0, 12), slo=st.sampled_from([{}, {"ttft_p99_ms": 500.0}]))
def test_stability_always_in_unit_interval(levels, failure, planned, slo):
    score = score_run(trial(levels, failure=failure, planned=planned), Goals(slo=slo))
    c = score.components
    for part in (c.survival, c.success, c.headroom, c.consistency, c.score, score.values["stability"]):
        assert 0.0 <= part <= 1.0
    assert score.outcome in ("measured", "slo_miss", "unreliable", "no_measurement", failure)
    assert score.feasible == (score.outcome not in ("slo_miss", "unreliable", "no_measurement")
                              and not (failure and score.operating_point is None))


def test_a_phase_counts_once_however_often_it_was_remeasured():
    flagged = level(8, 900, reliable=False, warnings=["client_saturated: lag"])
    score = score_run(trial([level(1, 200), flagged, level(8, 950)], planned=2), Goals())
    assert score.evidence.phases_lived == 2 and score.evidence.phases_planned == 2


def test_a_death_met_at_connect_leaves_no_level_and_loses_no_lived_phase():
    """The server died between levels and the next level's connect found it gone: no level was appended for it."""
    score = score_run(trial([level(1, 200)], failure="died_under_load", planned=3), Goals())
    assert score.evidence.phases_lived == 1 and score.evidence.phases_planned == 3


def _guarded(answers):
    from tuner.scoring.quality import QualityCheck, QualityReference

    reference = QualityReference(key="k", params={}, trial=0, answers=[probe("a", [1, 2]), probe("b", [3, 4])],
                                 noise=0.01)
    result = trial(SWEEP).model_copy(update={"probes": answers})
    return result, QualityCheck(reference, tolerance=0.05)


def probe(name, tokens, forced=None):
    from tuner.contracts.quality import ProbeAnswer

    return ProbeAnswer(probe=name, prompt_len=4, tokens=tokens, logprobs=[-0.1] * len(tokens), forced_logprobs=forced)


def test_answers_like_the_reference_keep_the_score_and_carry_the_evidence():
    result, check = _guarded([probe("a", [1, 2], [-0.1, -0.1]), probe("b", [3, 4], [-0.1, -0.11])])
    score = score_run(result, Goals(objectives=("output_tok_s", "quality"), slo=GOALS.slo), check)
    assert score.outcome == "measured" and score.feasible and score.constraints["quality"] < 0
    assert score.quality is not None and score.quality.figure == 1.0 and score.values["quality"] == 1.0


def test_answers_beyond_the_noise_are_wrong_output_with_their_own_constraint():
    result, check = _guarded([probe("a", [9, 2], [-5.0, -5.0]), probe("b", [3, 4], [-0.1, -0.1])])
    score = score_run(result, GOALS, check)
    assert score.outcome == "wrong_output" and not score.feasible
    assert score.constraints == {CONFIG_FAILURE: -1.0, SLO: -1.0, MEASUREMENT: -1.0, "quality": 1.0}
    assert "probe a diverged at its first token" in score.detail and score.quality.figure == 0.5


def test_without_the_guard_there_is_no_quality_constraint():
    assert "quality" not in score_run(trial(SWEEP), GOALS).constraints


def test_a_confirmation_is_judged_on_the_worse_of_its_checks_before_the_sweep_and_after_the_soak():
    good = [probe("a", [1, 2], [-0.1, -0.1]), probe("b", [3, 4], [-0.1, -0.1])]
    drifted = [probe("a", [9, 2], [-5.0, -5.0]), probe("b", [3, 4], [-0.1, -0.1])]
    result, check = _guarded(good)
    score = score_run(result.model_copy(update={"probes_after_soak": drifted}), GOALS, check)
    assert score.outcome == "wrong_output" and score.quality.after_soak
    assert "greedy answers after the soak agree with the reference on 1 of 2" in score.detail
    kept = score_run(result.model_copy(update={"probes_after_soak": good}), GOALS, check)
    assert kept.outcome == "measured" and kept.quality.figure == 1.0
