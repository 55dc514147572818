"""Where a launch's slice time goes: its phases reported live as each begins, and their seconds stored, summing to
the launch's wall time. On the fake server (real uvicorn), whose log prints vLLM's startup lines."""
from __future__ import annotations

import pytest
from tests.builders import TIMEOUTS, fake_config, load

from tuner.contracts.phases import LaunchPhase, PhaseReport
from tuner.trial import run_trial
from tuner.trial.clock import PhaseClock
from tuner.trial.sweep_plan import SweepPlan

pytestmark = pytest.mark.usefixtures("no_server_left_behind")


def test_every_phase_is_reported_as_it_begins_and_the_phases_sum_to_the_wall_time(tmp_path):
    reports: list[PhaseReport] = []
    plan = SweepPlan(load=load(repeats=2, worst_case=True))
    result = run_trial(fake_config(tmp_path), plan, TIMEOUTS, str(tmp_path / "server.log"),
                       phases=reports.append).result
    assert result.failure_class is None
    phases = [r.phase for r in reports]
    assert phases[0] == LaunchPhase.STARTING and phases[-1] == LaunchPhase.TEARDOWN
    first_level = next(i for i, r in enumerate(reports) if r.phase == LaunchPhase.SWEEP and r.detail.startswith("c="))
    assert phases.index(LaunchPhase.WORST_CASE) < first_level  # met before the sweep's first level
    levels = [r.detail for r in reports if r.phase == LaunchPhase.SWEEP and r.detail and not r.live]
    assert levels.pop(0) == "building the requests"  # right after startup, before the probes and the worst case
    assert levels[0] == "c=1: to +/-15% (2-8 requests)"  # coarse first: the screen precision, two rounds to the cap
    assert levels[1].startswith("c=4: 8 requests; last level ") and levels[1].endswith(" tok/s")  # min = cap
    assert levels[2].startswith("c=4: 8 requests (repeat 2)")
    assert list(result.phases) == [p.value for p in LaunchPhase if p.value in result.phases]  # in phase order
    assert {"starting", "worst_case", "sweep", "teardown", "other"} <= set(result.phases)
    assert sum(result.phases.values()) == pytest.approx(result.wall_s, abs=0.01)
    assert result.phases["starting"] + result.phases.get("loading", 0) + result.phases.get("compiling", 0) == \
        pytest.approx(result.startup_s, abs=0.01)


def test_a_long_level_reports_its_progress_live_by_the_servers_counters(tmp_path):
    # 16 requests at c=4, 40 tokens 30 ms apart: about 5 s measured, so updates every LIVE_LEVEL_INTERVAL_S (2 s).
    reports: list[PhaseReport] = []
    config = fake_config(tmp_path)
    config.env["FAKE_VLLM_TOKEN_MS"] = "30"
    plan = SweepPlan(load=load(concurrency=[4], requests_per_level=16, output_len=40, repeats=1))
    result = run_trial(config, plan, TIMEOUTS, str(tmp_path / "server.log"), phases=reports.append).result
    assert result.failure_class is None
    live = [r for r in reports if r.live]
    assert live and all(r.phase == LaunchPhase.SWEEP for r in live)
    assert all(r.detail.startswith("c=4: to +/-15% (8-16 requests); ") and r.detail.endswith(" tok/s so far") for r in live)
    answered = [int(r.detail.split("; ")[1].split(" of ")[0]) for r in live]
    assert answered == sorted(answered) and answered[-1] <= 16
    assert answered[0] < 16  # reported while the level ran, not after it


def test_a_display_that_cannot_be_reached_never_fails_the_launch(tmp_path):
    def broken(report: PhaseReport) -> None:
        raise ConnectionError("the driver is gone")

    result = run_trial(fake_config(tmp_path), SweepPlan(load=load(repeats=1)), TIMEOUTS, str(tmp_path / "server.log"),
                       phases=broken).result
    assert result.failure_class is None and result.levels


def test_startup_is_split_by_the_servers_own_figures_each_capped_by_what_is_left():
    clock = PhaseClock()
    clock.seconds = {LaunchPhase.STARTING: 100.0, LaunchPhase.SWEEP: 50.0}
    assert clock.split(load_s=30.0, compile_s=60.0, wall_s=160.0) == {
        "starting": 10.0, "loading": 30.0, "compiling": 60.0, "sweep": 50.0, "other": 10.0}
    clock.seconds = {LaunchPhase.STARTING: 100.0}
    assert clock.split(load_s=None, compile_s=500.0, wall_s=100.0) == {"starting": 0.0, "compiling": 100.0,
                                                                       "other": 0.0}
    clock.seconds = {LaunchPhase.STARTING: 40.0}
    assert clock.split(load_s=None, compile_s=None, wall_s=41.0) == {"starting": 40.0, "other": 1.0}  # unsplit


def test_the_startup_log_reports_loading_then_compiling_once_each():
    reports: list[PhaseReport] = []
    clock = PhaseClock(reports.append)
    clock.startup_lines(["INFO 12-04 04:00:01 [gpu_model_runner.py] Starting to load model /m...",
                         "INFO 12-04 04:00:02 [default_loader.py] Loading weights took 0.02 seconds"])
    clock.startup_lines(["INFO 12-04 04:00:05 [core.py] init engine (profile, create kv cache, warmup model) took 3 s"])
    assert [r.phase for r in reports] == [LaunchPhase.LOADING, LaunchPhase.COMPILING]
