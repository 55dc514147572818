"""What the progress line says when a trial is done: its figures, how precisely they are known, how drafts fared."""
from __future__ import annotations

from tests.builders import _score

from tuner.contracts.results import Interval, LevelEnd, LevelResult, TrialResult
from tuner.study._done_line import _precision, done_line


def result_with(ci: Interval | None, ended_by: LevelEnd | None = None) -> TrialResult:
    level = LevelResult(concurrency=64, requests=128, completed=128, failed=0, duration_s=10.0,
                        output_throughput=1000.0, output_throughput_ci=ci, ended_by=ended_by,
                        precision_target=0.05 if ended_by else None)
    return TrialResult(argv=[], env={}, levels=[level])


def test_the_done_line_gives_the_operating_points_precision_or_why_none():
    score = _score([1000.0, 1.0])  # operating point c=64
    assert _precision(result_with(Interval(low=950.0, high=1050.0, relative=0.05)), score) == (
        "; +/-5.0% (95 %, 128 requests)")
    measured = result_with(Interval(low=960.0, high=1040.0, relative=0.04), LevelEnd.PRECISION)
    assert _precision(measured, score) == "; +/-4.0% (95 %, 128 requests, to +/-5%)"
    capped = result_with(Interval(reason="steady part too short"), LevelEnd.CAP)
    assert _precision(capped, score) == "; no 95 % CI (steady part too short; 128 requests, the cap, short of +/-5%)"
    assert _precision(result_with(None), score) == ""  # stored before intervals
    elsewhere = _score([1000.0, 1.0]).model_copy(update={"operating_concurrency": 16})
    assert _precision(result_with(Interval(low=1.0, high=2.0, relative=0.5)), elsewhere) == ""  # no level there


def test_a_launch_stopped_as_dominated_says_so():
    result = result_with(Interval(low=950.0, high=1050.0, relative=0.05))
    result.dominated, result.wall_s = True, 90.0
    line = done_line(_score([1000.0, 1.0]), result)
    assert line.endswith("; stopped: dominated by the front [1.5 min of slice time]")
