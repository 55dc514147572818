"""Objectives: names and directions, reading a level, SLO excess, and the operating point of one launch."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.contracts.goals import DEFAULT_OBJECTIVES, Goals, direction_of
from tuner.contracts.results import LatencyStats, LevelResult
from tuner.scoring.objectives import level_value, load_points, operating_point, slo_excess


def level(c=8, tput=1000.0, *, repeat=0, ttft_p99=100.0, itl_p99=20.0, reliable=True, phase="sweep", sent=64,
          ok=None, req_s=10.0, goodput=None, goodput_tok_s=None, mode="closed", rate=None):
    ok = sent if ok is None else ok
    return LevelResult(
        concurrency=c, repeat=repeat, requests=sent, completed=ok, failed=sent - ok, duration_s=10.0,
        output_throughput=tput, request_throughput=req_s, goodput=goodput, goodput_tok_s=goodput_tok_s,
        ttft_ms=LatencyStats(mean=ttft_p99 / 2, p50=ttft_p99 / 2, p90=ttft_p99 * 0.9, p99=ttft_p99),
        itl_ms=LatencyStats(p99=itl_p99), reliable=reliable, phase=phase, mode=mode, request_rate=rate)


# -- names ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, direction", [
    ("output_tok_s", "maximize"), ("goodput_tok_s", "maximize"), ("goodput_req_s", "maximize"),
    ("tok_s_per_chip", "maximize"), ("usd_per_m_tokens", "minimize"), ("stability", "maximize"),
])
def test_direction_of_known_names(name, direction):
    assert direction_of(name) == direction


@pytest.mark.parametrize("metric", ["ttft", "tpot", "itl", "e2el"])
@pytest.mark.parametrize("stat", ["mean", "p50", "p90", "p99"])
def test_every_latency_name_is_minimized(metric, stat):
    assert direction_of(f"{metric}_{stat}_ms") == "minimize"


@pytest.mark.parametrize("name", ["throughput", "ttft_p95_ms", "ttft_p99", "TTFT_P99_MS", "queue_p99_ms",
                                  "output_tok_s ", "", "x_ttft_p99_ms"])
def test_unknown_names_raise_naming_the_choices(name):
    with pytest.raises(ValueError) as err:
        direction_of(name)
    message = str(err.value)
    assert repr(name) in message
    for choice in ("output_tok_s", "goodput_tok_s", "goodput_req_s", "tok_s_per_chip", "usd_per_m_tokens",
                   "stability", "ttft_p99_ms"):
        assert choice in message


def test_goals_directions_follow_objectives():
    goals = Goals(objectives=("usd_per_m_tokens", "ttft_p99_ms", "stability"))
    assert goals.directions == ["minimize", "minimize", "maximize"]
    assert goals.worst() == [float("inf"), float("inf"), 0.0]


@pytest.mark.parametrize("objectives, rank", [
    (DEFAULT_OBJECTIVES, "output_tok_s"),
    (("stability", "goodput_tok_s"), "goodput_tok_s"),
    (("ttft_p99_ms", "goodput_req_s", "output_tok_s"), "goodput_req_s"),
    (("usd_per_m_tokens", "output_tok_s"), "usd_per_m_tokens"),
    (("stability", "tok_s_per_chip"), "tok_s_per_chip"),
    (("ttft_p99_ms", "stability"), "output_tok_s"),  # nothing throughput-like: output_tok_s
])
def test_rank_metric_is_first_throughput_like(objectives, rank):
    assert Goals(objectives=objectives).rank_metric == rank


# -- reading a level -----------------------------------------------------------------------------------------------
def test_level_value_for_each_objective():
    lv = level(tput=1800.0, req_s=12.0, goodput=9.0, goodput_tok_s=1500.0, ttft_p99=240.0, itl_p99=30.0)
    goals = Goals(chips=4, price_per_slice_hour=7.2)
    assert level_value(lv, "output_tok_s", goals) == 1800.0
    assert level_value(lv, "goodput_tok_s", goals) == 1500.0
    assert level_value(lv, "goodput_req_s", goals) == 9.0
    assert level_value(lv, "tok_s_per_chip", goals) == pytest.approx(450.0)
    # $7.2 per hour / (1800 tok/s x 3600 s) x 1e6 = $1.111 per million tokens
    assert level_value(lv, "usd_per_m_tokens", goals) == pytest.approx(7.2 / (1800 * 3600) * 1e6)
    assert level_value(lv, "usd_per_m_tokens", goals) == pytest.approx(10 / 9)
    assert level_value(lv, "ttft_p99_ms", goals) == 240.0
    assert level_value(lv, "ttft_p50_ms", goals) == 120.0
    assert level_value(lv, "itl_p99_ms", goals) == 30.0
    assert level_value(lv, "tpot_p99_ms", goals) is None  # not measured
    assert level_value(lv, "stability", goals) is None


def test_goodput_falls_back_to_raw_throughput_without_slos():
    lv = level(tput=800.0, req_s=5.0)
    assert level_value(lv, "goodput_tok_s", Goals()) == 800.0
    assert level_value(lv, "goodput_req_s", Goals()) == 5.0


def test_usd_without_price_or_throughput_is_infinite():
    assert level_value(level(tput=1000.0), "usd_per_m_tokens", Goals()) == float("inf")
    assert level_value(level(tput=0.0), "usd_per_m_tokens", Goals(price_per_slice_hour=5.0)) == float("inf")


def test_tok_s_per_chip_with_zero_chips_does_not_divide_by_zero():
    assert level_value(level(tput=600.0), "tok_s_per_chip", Goals(chips=0)) == 600.0


@given(tput=st.floats(1.0, 1e6), price=st.floats(0.01, 1e3))
def test_usd_per_m_tokens_inverse_to_throughput(tput, price):
    goals = Goals(price_per_slice_hour=price)
    one = level_value(level(tput=tput), "usd_per_m_tokens", goals)
    two = level_value(level(tput=2 * tput), "usd_per_m_tokens", goals)
    assert one == pytest.approx(price * 1e6 / (tput * 3600))
    assert two == pytest.approx(one / 2)


# -- SLO excess ----------------------------------------------------------------------------------------------------
def test_slo_excess_met_and_missed():
    goals = Goals(slo={"ttft_p99_ms": 500.0})
    assert slo_excess(level(ttft_p99=400.0), goals) == pytest.approx(-0.2)
    assert slo_excess(level(ttft_p99=500.0), goals) == pytest.approx(0.0)
    assert slo_excess(level(ttft_p99=800.0), goals) == pytest.approx(0.6)


def test_slo_excess_is_the_worst_slo():
    goals = Goals(slo={"ttft_p99_ms": 500.0, "itl_p99_ms": 50.0})
    assert slo_excess(level(ttft_p99=100.0, itl_p99=75.0), goals) == pytest.approx(0.5)
    assert slo_excess(level(ttft_p99=1000.0, itl_p99=75.0), goals) == pytest.approx(1.0)


def test_slo_excess_without_slos_is_met_and_unmeasured_latency_misses():
    assert slo_excess(level(), Goals()) < 0
    assert slo_excess(level(), Goals(slo={"tpot_p99_ms": 10.0})) == 1.0  # a full miss, finite for samplers


@given(limit=st.floats(1.0, 1e4), value=st.floats(0.0, 1e5))
def test_slo_excess_sign_says_met(limit, value):
    excess = slo_excess(level(ttft_p99=value), Goals(slo={"ttft_p99_ms": limit}))
    if value <= limit:
        assert excess <= 0
    else:
        assert excess >= 0  # a miss too small for float to see reads as exactly at the limit
    assert excess == pytest.approx(value / limit - 1.0)


# -- operating point -----------------------------------------------------------------------------------------------
SLO = Goals(slo={"ttft_p99_ms": 500.0})


def test_operating_point_is_best_slo_meeting_point():
    levels = [level(1, 200, ttft_p99=50), level(8, 900, ttft_p99=300), level(16, 1400, ttft_p99=450),
              level(32, 1800, ttft_p99=900)]
    point, excess = operating_point(levels, SLO)
    assert point.key == "c=16" and point.concurrency == 16
    assert point.value("output_tok_s", SLO) == 1400
    assert excess == pytest.approx(450 / 500 - 1)


def test_operating_point_without_slo_is_peak_throughput():
    levels = [level(1, 200), level(8, 900), level(16, 1400), level(32, 1300)]
    point, excess = operating_point(levels, Goals())
    assert point.key == "c=16" and excess < 0


def test_operating_point_ranks_by_rank_metric():
    # goodput peaks at c=8 although raw throughput peaks at c=16
    levels = [level(8, 900, goodput_tok_s=850), level(16, 1400, goodput_tok_s=600)]
    assert operating_point(levels, Goals(objectives=("goodput_tok_s", "stability")))[0].key == "c=8"
    assert operating_point(levels, Goals())[0].key == "c=16"


def test_operating_point_minimizes_cost():
    goals = Goals(objectives=("usd_per_m_tokens", "stability"), price_per_slice_hour=3.0)
    levels = [level(8, 900), level(16, 1400), level(32, 1100)]
    point, _ = operating_point(levels, goals)
    assert point.key == "c=16"
    assert point.value("usd_per_m_tokens", goals) == pytest.approx(3.0 / (1400 * 3600) * 1e6)


def test_operating_point_ignores_unreliable_levels():
    levels = [level(8, 900), level(16, 5000, reliable=False)]
    point, _ = operating_point(levels, SLO)
    assert point.key == "c=8"
    assert all(lv.reliable for lv in point.levels)


def test_operating_point_ignores_soak_levels():
    levels = [level(8, 900), level(8, 5000, phase="soak"), level(64, 9000, phase="soak")]
    point, _ = operating_point(levels, SLO)
    assert point.key == "c=8"
    assert point.value("output_tok_s", SLO) == 900
    assert len(point.levels) == 1


def test_operating_point_ignores_levels_that_completed_nothing():
    point, _ = operating_point([level(8, 900), level(16, 0, ok=0)], Goals())
    assert [p.key for p in load_points([level(8, 900), level(16, 0, ok=0)])] == ["c=8"]
    assert point.key == "c=8"


def test_repeats_take_worst_latency_and_median_throughput():
    levels = [level(16, 1000, repeat=0, ttft_p99=300), level(16, 1400, repeat=1, ttft_p99=480),
              level(16, 1100, repeat=2, ttft_p99=350)]
    point, excess = operating_point(levels, SLO)
    assert point.key == "c=16" and len(point.levels) == 3
    assert point.value("output_tok_s", SLO) == 1100  # median, not mean (1166) nor max
    assert point.value("ttft_p99_ms", SLO) == 480  # worst repeat
    assert excess == pytest.approx(480 / 500 - 1)


def test_one_repeat_missing_the_slo_disqualifies_the_point():
    levels = [level(8, 900, ttft_p99=200), level(16, 1400, ttft_p99=300),
              level(16, 1450, repeat=1, ttft_p99=600)]
    point, _ = operating_point(levels, SLO)
    assert point.key == "c=8"


def test_no_point_meets_returns_min_excess():
    levels = [level(8, 900, ttft_p99=800), level(16, 1400, ttft_p99=1000), level(4, 500, ttft_p99=200,
                                                                                 reliable=False)]
    point, excess = operating_point(levels, SLO)
    assert point is None
    assert excess == pytest.approx(0.6)  # the closest reliable point missed by 60 %; the unreliable one is ignored


def test_no_reliable_point_returns_infinite_excess():
    assert operating_point([level(8, 900, reliable=False)], SLO) == (None, float("inf"))
    assert operating_point([], SLO) == (None, float("inf"))


def test_open_loop_levels_group_by_rate():
    levels = [level(64, 500, mode="open", rate=2.0), level(64, 900, mode="open", rate=4.0),
              level(64, 880, repeat=1, mode="open", rate=4.0)]
    points = load_points(levels)
    assert [p.key for p in points] == ["rate=2/s", "rate=4/s"]
    assert operating_point(levels, Goals())[0].key == "rate=4/s"


point_levels = st.lists(
    st.tuples(st.sampled_from([1, 2, 4, 8, 16, 32]), st.floats(1.0, 1e4), st.floats(1.0, 2000.0), st.booleans(),
              st.sampled_from(["sweep", "sweep", "soak"])),
    max_size=12)


@settings(max_examples=200)
@given(specs=point_levels, limit=st.floats(10.0, 1500.0))
def test_operating_point_property(specs, limit):
    goals = Goals(slo={"ttft_p99_ms": limit})
    levels = [level(c, t, repeat=i, ttft_p99=p99, reliable=r, phase=ph) for i, (c, t, p99, r, ph) in enumerate(specs)]
    point, excess = operating_point(levels, goals)
    eligible = [lv for lv in levels if lv.reliable and lv.phase == "sweep"]
    by_c: dict[int, list[LevelResult]] = {}
    for lv in eligible:
        by_c.setdefault(lv.concurrency, []).append(lv)
    meeting = {c: lvs for c, lvs in by_c.items() if max(lv.ttft_ms.p99 for lv in lvs) <= limit}
    if not by_c:
        assert point is None and excess == float("inf")
    elif not meeting:
        assert point is None
        assert excess == pytest.approx(min(max(lv.ttft_ms.p99 for lv in lvs) / limit - 1 for lvs in by_c.values()))
        assert excess > 0
    else:
        assert point is not None and excess <= 0
        assert point.concurrency in meeting
        assert all(lv.reliable and lv.phase == "sweep" for lv in point.levels)
        medians = {c: sorted(lv.output_throughput for lv in lvs) for c, lvs in meeting.items()}
        import statistics
        best = max(statistics.median(v) for v in medians.values())
        assert point.value("output_tok_s", goals) == pytest.approx(best)


# -- the margin: a point chosen at the limit would miss it on the next launch half the time ---------------------
def test_slo_margin_holds_levels_below_the_limit():
    goals = Goals(slo={"ttft_p99_ms": 2000}, slo_margin=0.1)
    assert goals.held_limit("ttft_p99_ms") == pytest.approx(1800)
    assert slo_excess(level(ttft_p99=1850), goals) == pytest.approx(1850 / 1800 - 1)  # > 0: missed
    assert slo_excess(level(ttft_p99=1750), goals) < 0
    # The fast point at the edge of the limit loses to the slower one with room to spare.
    point, _ = operating_point([level(c=64, tput=3000, ttft_p99=1900), level(c=16, tput=2000, ttft_p99=900)], goals)
    assert point.concurrency == 16
    assert goals.describe_slo() == "ttft_p99_ms <= 2000 (held to 1800: 10% margin)"
    assert Goals(slo={"ttft_p99_ms": 2000}).describe_slo() == "ttft_p99_ms <= 2000"
