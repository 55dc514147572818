"""Intervals from a level's own requests: batch means over the steady part, order statistics for percentiles."""
from __future__ import annotations

import numpy as np
import pytest
from tests.builders import closed_loop

from tuner.load.intervals import percentile_interval, t_975, throughput_interval


def test_a_steady_level_has_a_narrow_interval_around_its_figure():
    records = closed_loop(streams=8, per_stream=40, seconds=1.0, jitter=0.1)
    ci = throughput_interval(records, concurrency=8, figure=800.0)
    assert ci.known and ci.samples >= 5 and "batch means" in ci.method
    assert ci.relative is not None and ci.relative < 0.05
    assert ci.low < 800.0 < ci.high


def test_a_noisier_level_has_a_wider_interval():
    calm = throughput_interval(closed_loop(8, 40, 1.0, 0.05), 8, 800.0)
    noisy = throughput_interval(closed_loop(8, 40, 1.0, 0.9), 8, 800.0)
    assert noisy.relative > calm.relative


def test_a_level_too_short_for_batches_says_why():
    ci = throughput_interval(closed_loop(streams=8, per_stream=4, seconds=1.0, jitter=0.1), 8, 800.0)
    assert not ci.known and "fewer than 5" in ci.reason
    assert "no 95 % CI" in ci.describe()
    ramp_only = throughput_interval(closed_loop(streams=8, per_stream=1, seconds=1.0, jitter=0.1), 8, 800.0)
    assert not ramp_only.known and "no steady part" in ramp_only.reason


def test_p99_from_too_few_requests_has_no_upper_bound():
    samples = np.random.default_rng(0).exponential(100.0, size=120)
    ci = percentile_interval(samples, 0.99)
    assert ci.high is None and "too few requests" in ci.reason and ci.low is not None
    many = percentile_interval(np.random.default_rng(0).exponential(100.0, size=5000), 0.99)
    assert many.known and many.low < np.percentile(np.random.default_rng(0).exponential(100.0, size=5000), 99) < many.high


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_percentile_intervals_cover_the_true_value_about_95_percent_of_the_time(q):
    rng = np.random.default_rng(1)
    truth = -np.log(1 - q) * 100.0  # exponential with mean 100
    covered = sum(ci.low <= truth <= ci.high
                  for ci in (percentile_interval(rng.exponential(100.0, 400), q) for _ in range(400)))
    assert 0.90 <= covered / 400 <= 0.99


def test_student_t_beyond_the_table_is_the_normal():
    assert t_975(4) == pytest.approx(2.776) and t_975(200) == pytest.approx(1.96, abs=0.001)
