"""Confirmation: launches of one config combined, the noise of the machine, and the fronts built from them."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.contracts.goals import Goals
from tuner.contracts.results import LatencyStats, LevelResult, ServerCounters, TrialResult
from tuner.scoring.confirmation import (
    DEFAULT_NOISE,
    MIN_NOISE,
    ConfigSummary,
    candidates,
    confirmed_front,
    consistency,
    group_runs,
    machine_noise,
    noise_front,
    summaries,
    summarize,
)
from tuner.scoring.score import StabilityComponents, score_run
from tuner.study.records import TrialRecord

GOALS = Goals(slo={"ttft_p99_ms": 500.0})  # output_tok_s, stability


def level(c, tput, *, repeat=0, ttft=100.0, sent=64, ok=None, preemptions=0.0, reliable=True):
    ok = sent if ok is None else ok
    return LevelResult(concurrency=c, repeat=repeat, requests=sent, completed=ok, failed=sent - ok, duration_s=10.0,
                       output_throughput=tput, ttft_ms=LatencyStats(p99=ttft),
                       server=ServerCounters(preemptions=preemptions), reliable=reliable)


def launch(tput, *, ttft=100.0, fail=None, repeats=(), ok=None, preemptions=0.0):
    """One launch: a sweep c=1, 8, 32 whose top level (c=32) serves `tput` (plus optional repeats of it).
    fail="oom": never started; fail="died": died at the top level."""
    if fail == "oom":
        return TrialResult(argv=["x"], env={}, failure_class="oom", levels_planned=3 + len(repeats))
    levels = [level(1, tput / 10, ttft=ttft), level(8, tput / 2, ttft=ttft),
              level(32, tput, ttft=ttft, ok=ok, preemptions=preemptions)]
    levels += [level(32, r, repeat=i + 1, ttft=ttft) for i, r in enumerate(repeats)]
    if fail == "died":
        levels[-1] = level(32, tput / 5, ok=5, reliable=False)
        return TrialResult(argv=["x"], env={}, levels=levels, failure_class="died_under_load", levels_planned=len(levels))
    return TrialResult(argv=["x"], env={}, levels=levels, levels_planned=len(levels))


_numbers = itertools.count(1000)


def record(result, params, *, number=None, confirms=None, goals=GOALS, state="COMPLETE"):
    score = score_run(result, goals)
    return TrialRecord(number=next(_numbers) if number is None else number, state=state, params=params,
                       feasible=score.feasible, score=score, confirms=confirms)


def config(number, params, results, goals=GOALS):
    """A search trial and its confirmation runs."""
    search = record(results[0], params, number=number, goals=goals)
    return [search] + [record(r, params, confirms=number, goals=goals) for r in results[1:]]


def summary(trial, values, feasible=True):
    return ConfigSummary(trial=trial, params={"t": trial}, runs=[trial], confirmed=True, feasible=feasible,
                         values=values, spread=None, components=StabilityComponents(survival=1.0, success=1.0, headroom=1.0),
                         operating_concurrency=32)


# -- machine noise -------------------------------------------------------------------------------------------------
def test_machine_noise_default_without_repeats():
    recs = [record(launch(1000), {"a": 1}, number=0), record(launch(1200), {"a": 2}, number=1)]
    assert machine_noise(recs, GOALS) == DEFAULT_NOISE
    assert machine_noise([], GOALS) == DEFAULT_NOISE


def test_machine_noise_from_repeat_spreads_within_launches():
    # relative MAD of (1000, 960) = 20 / 980; of (1000, 1100) = 50 / 1050; of (1000, 1000, 1300) = 0
    recs = [record(launch(1000, repeats=[960]), {"a": 1}, number=0),
            record(launch(1000, repeats=[1100]), {"a": 2}, number=1),
            record(launch(1000, repeats=[1000, 1300]), {"a": 3}, number=2)]
    assert [r.score.evidence.repeat_spread for r in recs] == pytest.approx([20 / 980, 50 / 1050, 0.0])
    assert machine_noise(recs, GOALS) == pytest.approx(20 / 980)  # the median


def test_machine_noise_floor():
    recs = [record(launch(1000, repeats=[1000]), {"a": 1}, number=0)]
    assert machine_noise(recs, GOALS) == MIN_NOISE


def test_machine_noise_across_launches_when_larger():
    # within-launch spread of (1000, 1040, 960): 4 %; across the launches of config 0: 1000, 1100, 900 -> 10 %
    recs = config(0, {"a": 1}, [launch(1000, repeats=[1040, 960]), launch(1100), launch(900)])
    assert recs[0].score.evidence.repeat_spread == pytest.approx(0.04)
    assert machine_noise(recs, GOALS) == pytest.approx(0.1)
    # and the within-launch estimate wins when it is the larger
    recs = config(0, {"a": 1}, [launch(1000, repeats=[1200, 800]), launch(1010), launch(990)])
    assert machine_noise(recs, GOALS) == pytest.approx(0.2)


def test_machine_noise_ignores_infeasible_runs_across_launches():
    recs = config(0, {"a": 1}, [launch(1000), launch(3000, ttft=900), launch(1000)])
    assert machine_noise(recs, GOALS) == MIN_NOISE  # 1000 and 1000: no spread; the SLO miss is not a value


# -- consistency ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spread, noise, expected", [
    (None, 0.05, 1.0), (0.0, 0.05, 1.0), (0.05, 0.05, 1.0), (0.10, 0.05, 1.0),
    (0.30, 0.05, 0.8), (0.15, 0.05, 0.95), (0.50, 0.10, 0.7), (1.5, 0.05, 0.0), (5.0, 0.01, 0.0),
])
def test_consistency(spread, noise, expected):
    assert consistency(spread, noise) == pytest.approx(expected)


@given(spread=st.floats(0.0, 10.0), noise=st.floats(MIN_NOISE, 1.0))
def test_consistency_property(spread, noise):
    c = consistency(spread, noise)
    assert 0.0 <= c <= 1.0
    if spread <= 2 * noise:
        assert c == 1.0
    else:
        assert c == pytest.approx(max(0.0, 1.0 - (spread - 2 * noise)))
    assert consistency(spread + 0.1, noise) <= c


# -- summarize -----------------------------------------------------------------------------------------------------
def test_summarize_takes_medians_and_spread():
    runs = config(7, {"a": 1}, [launch(1000), launch(1300), launch(1100)])
    s = summarize(runs, GOALS, noise=0.05, repeats=2)
    assert s.trial == 7 and s.runs == [r.number for r in runs] and s.params == {"a": 1}
    assert s.confirmed and s.feasible and s.slo_met_runs == 3
    assert s.values["output_tok_s"] == 1100
    assert s.spread == pytest.approx(100 / 1100)
    assert s.components.consistency == 1.0  # 9 % spread is within twice the 5 % noise
    assert s.values["stability"] == pytest.approx(1.0)
    assert list(s.values) == list(GOALS.objectives)
    assert s.operating_concurrency == 32
    assert s.outcomes == ["measured"] * 3


def test_summarize_spread_beyond_noise_docks_consistency():
    runs = config(7, {"a": 1}, [launch(1000), launch(1500), launch(700)])  # MAD 300 / 1000
    s = summarize(runs, GOALS, noise=0.05, repeats=2)
    assert s.spread == pytest.approx(0.3)
    assert s.components.consistency == pytest.approx(0.8)
    assert s.values["stability"] == pytest.approx(0.8)


def test_summarize_pools_success_and_headroom_over_runs():
    # 3 runs x 192 requests; 32 failed in one run, 48 preemptions in another
    runs = config(1, {"a": 1}, [launch(1000, ok=32), launch(1000, preemptions=48), launch(1000)])
    s = summarize(runs, GOALS, noise=0.05, repeats=2)
    assert s.components.success == pytest.approx((576 - 32) / 576)
    assert s.components.headroom == pytest.approx(1 - 48 / 576)
    assert s.components.score == pytest.approx(s.components.success * s.components.headroom)


def test_summarize_survival_counts_a_startup_failure():
    runs = config(1, {"a": 1}, [launch(1000), launch(0, fail="oom"), launch(1000)])
    s = summarize(runs, GOALS, noise=0.05, repeats=2)
    assert s.components.survival == pytest.approx(2 / 3)
    assert s.feasible and s.slo_met_runs == 2
    assert s.values["output_tok_s"] == 1000  # the failed launch has no value to take a median of
    assert s.outcomes == ["measured", "oom", "measured"]


def test_summarize_survival_counts_a_death_under_load():
    runs = config(1, {"a": 1}, [launch(1000), launch(1000, fail="died")])
    s = summarize(runs, GOALS, noise=0.05, repeats=1)
    assert s.components.survival == pytest.approx(1 / 2)  # one launch of two died


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_survival_is_one_minus_the_failure_rate(n, data):
    deaths = data.draw(st.integers(0, n))
    order = data.draw(st.permutations([True] * deaths + [False] * (n - deaths)))
    results = [launch(0, fail="oom") if dies else launch(1000) for dies in order]
    s = summarize(config(0, {"a": 1}, results), GOALS, noise=0.05, repeats=n - 1)
    assert s.components.survival == pytest.approx(1 - deaths / n)
    assert s.feasible == (deaths < n and deaths * 2 <= n)  # at least half the launches measured
    assert 0.0 <= s.values["stability"] <= 1.0


def test_survival_of_randomly_dying_launches():
    import random

    rng = random.Random(7)
    p = 0.3
    results = [launch(0, fail="oom") if rng.random() < p else launch(1000) for _ in range(300)]
    s = summarize(config(0, {"a": 1}, results), GOALS, noise=0.05, repeats=2)
    assert s.components.survival == pytest.approx(1 - p, abs=0.06)
    assert s.feasible and s.values["output_tok_s"] == 1000


def test_mostly_missing_slos_is_not_feasible():
    runs = config(1, {"a": 1}, [launch(2000), launch(2000, ttft=800), launch(2000, ttft=900)])
    s = summarize(runs, GOALS, noise=0.05, repeats=2)
    assert not s.feasible and s.slo_met_runs == 1
    assert s.outcomes == ["measured", "slo_miss", "slo_miss"]
    front = confirmed_front(runs + config(2, {"a": 2}, [launch(500)] * 3), GOALS, repeats=2)
    assert [c.trial for c in front] == [2]


def test_half_the_launches_meeting_the_slos_is_feasible_and_says_so():
    """One noisy launch of two (a host stall) does not sink a config; the export states "met in 1 of 2"."""
    s = summarize(config(1, {"a": 1}, [launch(2000), launch(1500, ttft=800)]), GOALS, noise=0.05, repeats=1)
    assert s.feasible and s.slo_met_runs == 1 and s.values["output_tok_s"] == 2000


def test_no_feasible_run_gets_worst_values():
    runs = config(1, {"a": 1}, [launch(2000, ttft=800), launch(2000, ttft=900)])
    s = summarize(runs, GOALS, noise=0.05, repeats=1)
    assert not s.feasible and s.values["output_tok_s"] == 0.0 and s.operating_concurrency is None


def test_not_confirmed_until_enough_repeats():
    runs = config(1, {"a": 1}, [launch(1000), launch(1000)])
    assert summarize(runs, GOALS, 0.05, repeats=1).confirmed
    assert not summarize(runs, GOALS, 0.05, repeats=2).confirmed


def test_group_runs_ignores_incomplete_and_orphans():
    runs = config(1, {"a": 1}, [launch(1000), launch(1000)])
    failed = record(launch(1000), {"a": 1}, confirms=1, state="FAIL")
    orphan = record(launch(1000), {"a": 9}, confirms=99)
    groups = group_runs([*runs, failed, orphan])
    assert list(groups) == [1] and [r.number for r in groups[1]] == [r.number for r in runs]


# -- the noise front -----------------------------------------------------------------------------------------------
def test_configs_within_noise_both_stay():
    a, b = summary(1, {"output_tok_s": 1030.0, "stability": 0.9}), summary(2, {"output_tok_s": 1000.0, "stability": 0.9})
    assert [s.trial for s in noise_front([b, a], GOALS, noise=0.05)] == [1, 2]  # sorted by the rank objective


def test_clearly_slower_config_with_equal_stability_leaves():
    a, b = summary(1, {"output_tok_s": 1300.0, "stability": 0.9}), summary(2, {"output_tok_s": 1000.0, "stability": 0.9})
    assert [s.trial for s in noise_front([a, b], GOALS, noise=0.05)] == [1]


def test_slower_but_clearly_more_stable_config_stays():
    a, b = summary(1, {"output_tok_s": 1300.0, "stability": 0.7}), summary(2, {"output_tok_s": 1000.0, "stability": 0.9})
    assert {s.trial for s in noise_front([a, b], GOALS, noise=0.05)} == {1, 2}


def test_stability_difference_within_tolerance_does_not_dominate():
    a, b = summary(1, {"output_tok_s": 1000.0, "stability": 0.93}), summary(2, {"output_tok_s": 1000.0, "stability": 0.9})
    assert {s.trial for s in noise_front([a, b], GOALS, noise=0.05)} == {1, 2}
    c = summary(3, {"output_tok_s": 1000.0, "stability": 0.8})
    assert {s.trial for s in noise_front([a, c], GOALS, noise=0.05)} == {1}


def test_a_config_leaves_the_front_only_when_its_interval_lies_below_anothers():
    """15 % faster on a quiet machine (noise 2 %) is a win when both were measured to +/-5 %, and luck when both
    were read to +/-10 %: their intervals overlap."""
    fast, slow = {"output_tok_s": 1150.0, "stability": 1.0}, {"output_tok_s": 1000.0, "stability": 1.0}
    precise = [summary(1, fast).model_copy(update={"precision": 0.05}),
               summary(2, slow).model_copy(update={"precision": 0.05})]
    assert [s.trial for s in noise_front(precise, GOALS, noise=0.02)] == [1]
    loose = [s.model_copy(update={"precision": 0.10}) for s in precise]
    assert [s.trial for s in noise_front(loose, GOALS, noise=0.02)] == [1, 2]
    unknown = [s.model_copy(update={"precision": None}) for s in precise]  # no intervals: the noise alone decides
    assert [s.trial for s in noise_front(unknown, GOALS, noise=0.02)] == [1]


def test_a_launchs_precision_is_its_operating_points_interval():
    from tuner.contracts.results import Interval

    result = launch(1000.0, repeats=[1000.0])
    for lv in result.levels:
        lv.output_throughput_ci = Interval(low=900.0, high=1100.0, relative=0.1 if lv.repeat == 0 else 0.05)
    score = score_run(result, GOALS)
    assert score.point_precision == pytest.approx((0.1 ** 2 + 0.05 ** 2) ** 0.5 / 2)  # two levels, as their mean
    assert summarize([record(result, {"x": 1})], GOALS, 0.05, repeats=0).precision == score.point_precision
    assert score_run(launch(1000.0), GOALS).point_precision is None  # a level without an interval


def test_noise_front_drops_infeasible_configs():
    a = summary(1, {"output_tok_s": 5000.0, "stability": 1.0}, feasible=False)
    b = summary(2, {"output_tok_s": 1000.0, "stability": 0.5})
    assert [s.trial for s in noise_front([a, b], GOALS, 0.05)] == [2]


def test_noise_front_minimized_objective():
    goals = Goals(objectives=("usd_per_m_tokens", "stability"), price_per_slice_hour=1.0)
    cheap = summary(1, {"usd_per_m_tokens": 1.0, "stability": 0.9})
    near = summary(2, {"usd_per_m_tokens": 1.05, "stability": 0.9})
    dear = summary(3, {"usd_per_m_tokens": 2.0, "stability": 0.9})
    assert [s.trial for s in noise_front([dear, near, cheap], goals, 0.05)] == [1, 2]


def test_end_to_end_noise_front_from_records():
    recs = [record(launch(1000), {"a": 1}, number=0), record(launch(1030), {"a": 2}, number=1),
            record(launch(700), {"a": 3}, number=2)]
    assert [s.trial for s in candidates(recs, GOALS, limit=10)] == [1, 0]


objective_values = st.lists(st.tuples(st.floats(1.0, 1e4), st.floats(0.0, 1.0)), min_size=1, max_size=10)


@settings(max_examples=200)
@given(values=objective_values, noise=st.floats(MIN_NOISE, 0.3))
def test_noise_front_property(values, noise):
    items = [summary(i, {"output_tok_s": t, "stability": s}) for i, (t, s) in enumerate(values)]
    front = noise_front(items, GOALS, noise)
    assert front  # a finite set always has a config nothing beats

    def beats(a, b):
        ta, sa, tb, sb = a.values["output_tok_s"], a.values["stability"], b.values["output_tok_s"], b.values["stability"]
        return ta >= tb and sa >= sb and (ta - tb > 2 * noise * tb or sa - sb > 0.05)

    kept = {s.trial for s in front}
    for b in items:
        assert (b.trial in kept) == (not any(beats(a, b) for a in items if a is not b))
    # the best by the rank objective is never dropped, and the front is sorted by it
    assert front[0].values["output_tok_s"] == max(v[0] for v in values)
    assert [s.values["output_tok_s"] for s in front] == sorted((s.values["output_tok_s"] for s in front), reverse=True)


@settings(max_examples=200)
@given(base=st.floats(1.0, 1e4), gap=st.floats(0.0, 0.999), noise=st.floats(MIN_NOISE, 0.3),
       stability=st.floats(0.0, 1.0))
def test_two_configs_apart_by_noise_both_stay(base, gap, noise, stability):
    # the faster is ahead by under twice the noise (exactly 2x is a float coin toss): noise alone, both stay
    fast = summary(1, {"output_tok_s": base * (1 + gap * 2 * noise), "stability": stability})
    slow = summary(2, {"output_tok_s": base, "stability": stability})
    assert {s.trial for s in noise_front([slow, fast], GOALS, noise)} == {1, 2}


# -- candidates and the confirmed front ----------------------------------------------------------------------------
def test_candidates_limited_and_from_search_trials_only():
    recs = [record(launch(1000 + i), {"a": i}, number=i) for i in range(6)]  # all within noise of each other
    recs.append(record(launch(9000), {"a": 0}, confirms=0))  # a confirmation run is not a candidate
    got = candidates(recs, GOALS, limit=3)
    assert len(got) == 3
    assert all(s.runs == [s.trial] for s in got)  # single-launch numbers
    assert [s.trial for s in got] == [5, 4, 3]
    assert len(candidates(recs, GOALS, limit=10)) == 6
    assert candidates(recs, GOALS, limit=0) == []


def test_candidates_skip_infeasible_search_trials():
    recs = [record(launch(5000, ttft=900), {"a": 1}, number=0), record(launch(0, fail="oom"), {"a": 2}, number=1),
            record(launch(1000), {"a": 3}, number=2)]
    assert [s.trial for s in candidates(recs, GOALS, limit=5)] == [2]


def test_confirmed_front_requires_repeats():
    recs = (config(0, {"a": 0}, [launch(1000), launch(1010), launch(990)])
            + config(1, {"a": 1}, [launch(1020), launch(1000)])   # one confirmation of two
            + [record(launch(5000), {"a": 2}, number=2)])          # never confirmed
    front = confirmed_front(recs, GOALS, repeats=2)
    assert [s.trial for s in front] == [0]
    assert all(len(s.runs) - 1 >= 2 for s in front)
    assert {s.trial for s in confirmed_front(recs, GOALS, repeats=1)} == {0, 1}
    # with repeats 0, every search trial counts (single-launch numbers): the fast one beats the rest
    assert [s.trial for s in confirmed_front(recs, GOALS, repeats=0)] == [2]


def test_confirmed_front_uses_combined_numbers():
    # config 0 looked fast in search (1500) but its confirmations say 1000; config 1 is steadily 1200
    recs = (config(0, {"a": 0}, [launch(1500), launch(1000), launch(1000)])
            + config(1, {"a": 1}, [launch(1200), launch(1200), launch(1200)]))
    assert [s.trial for s in candidates(recs, GOALS, limit=5)] == [0]
    front = confirmed_front(recs, GOALS, repeats=2)
    assert [s.trial for s in front] == [1]
    by_trial = {s.trial: s for s in summaries(recs, GOALS, repeats=2)}
    assert by_trial[0].values["output_tok_s"] == 1000 and by_trial[1].values["output_tok_s"] == 1200


def test_occasional_oom_costs_a_place_on_the_front_only_beyond_tolerance():
    flaky = config(0, {"a": 0}, [launch(1000), launch(0, fail="oom"), launch(1000)])  # survival 2/3
    steady = config(1, {"a": 1}, [launch(1000)] * 3)
    front = confirmed_front(flaky + steady, GOALS, repeats=2)
    assert [s.trial for s in front] == [1]
    by_trial = {s.trial: s for s in summaries(flaky + steady, GOALS, repeats=2)}
    assert by_trial[0].values["stability"] == pytest.approx(2 / 3)


def test_front_with_latency_and_stability_objectives():
    goals = Goals(objectives=("ttft_p99_ms", "stability"))
    recs = [record(launch(1000, ttft=200), {"a": 1}, number=0, goals=goals),
            record(launch(900, ttft=100), {"a": 2}, number=1, goals=goals)]
    assert [s.trial for s in candidates(recs, goals, limit=5)] == [1]


def test_a_small_limit_confirms_both_ends_of_the_front():
    # Fast but fragile (preempts), middling, and slow but perfectly stable: a limit of 2 takes both ends.
    recs = [record(launch(3000, preemptions=40), {"a": 0}, number=0),
            record(launch(2500, preemptions=20), {"a": 1}, number=1),
            record(launch(1800), {"a": 2}, number=2)]
    assert [s.trial for s in candidates(recs, GOALS, limit=2)] == [0, 2]
    assert [s.trial for s in candidates(recs, GOALS, limit=3)] == [0, 2, 1]


def test_an_answered_duplicate_is_neither_a_candidate_nor_a_launch():
    # Trial 1 proposed trial 0's parameters and was answered from it (same values, no launch): confirming it would
    # relaunch trial 0's config under a number no run belongs to, and counting it would double trial 0's launch.
    first = record(launch(2000), {"a": 0}, number=0)
    answered = first.model_copy(update={"number": 1, "duplicate_of": 0, "launched": False})
    other = record(launch(1000), {"a": 1}, number=2)
    recs = [first, answered, other]
    assert [s.trial for s in candidates(recs, GOALS, limit=5)] == [0]
    assert set(group_runs(recs)) == {0, 2} and group_runs(recs)[0] == [first]


def test_a_config_that_answered_wrongly_once_is_never_feasible():
    from tuner.contracts.outcomes import Outcome

    runs = config(1, {"a": 1}, [launch(1000), launch(1000), launch(1000)])
    assert summarize(runs, GOALS, noise=0.05, repeats=2).feasible
    wrong = runs[2].score.model_copy(update={"outcome": Outcome.WRONG_OUTPUT})
    runs[2] = runs[2].model_copy(update={"score": wrong, "feasible": False})
    assert not summarize(runs, GOALS, noise=0.05, repeats=2).feasible


def test_an_slo_met_by_its_figure_but_not_for_sure_is_said_to_be_uncertain():
    from tuner.contracts.results import Interval

    result = launch(1000.0, ttft=300.0)  # held limit 450 ms (500, 10 % margin)
    goals = Goals(slo={"ttft_p99_ms": 500.0}, slo_margin=0.1)
    for lv in result.levels:
        lv.ttft_ms.p99_ci = Interval(low=250.0, high=None, reason="too few requests")
    score = score_run(result, goals)
    assert score.feasible and score.slo_uncertain == [
        "ttft_p99_ms: 95 % CI 250-no upper end (too few requests) reaches past 450"]
    for lv in result.levels:
        lv.ttft_ms.p99_ci = Interval(low=250.0, high=400.0)
    assert score_run(result, goals).slo_uncertain == []  # the whole interval below the limit: met for sure
