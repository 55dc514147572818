"""run_trial without Ray, against the fake server: what a trial reports when tuner's own code fails, when the
engine hangs with /health green, and that the server never outlives the trial."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import tuner.trial.run as worker
from conftest import processes_tagged
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.server.config import ServerConfig

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
TIMEOUTS = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)


def config(tmp_path: Path, mode: str = "ok", **env: str) -> ServerConfig:
    # Niceness 0: a fake at the default 10 starves behind a busy host's other jobs (make faults-on-a-busy-host).
    return ServerConfig(command=(sys.executable, FAKE), model="fake", flags={"--max-num-seqs": 2}, nice=0,
                        env={"FAKE_VLLM_MODE": mode, "FAKE_VLLM_TOKEN_MS": "1", "TUNER_TEST_TAG": str(tmp_path), **env})


def load(**overrides) -> worker.SweepPlan:
    # No worst case unless a test asks (tests/trial/test_worst_case.py): these tests time the sweep's own levels.
    values = dict(concurrency=[1, 4], requests_per_level=8, warmup_rounds=1, input_len=8, output_len=8, repeats=1,
                  request_timeout_s=2, level_timeout_s=30, worst_case=False)
    return worker.SweepPlan(LoadSpec(**{**values, **overrides}))


@pytest.fixture(autouse=True)
def no_server_left_behind(tmp_path):
    yield
    assert processes_tagged(str(tmp_path)) == []


def test_exception_in_tuner_code_is_a_tuner_error_with_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("deliberate bug in the level code")

    monkeypatch.setattr(worker, "measure_level", broken)
    outcome = worker.run_trial(config(tmp_path), load(), TIMEOUTS, str(tmp_path / "trial.log"), vocab_size=1000)
    result = outcome.result
    assert result.failure_class == "tuner_error"
    assert result.failure_detail == "ZeroDivisionError: deliberate bug in the level code"
    assert "Traceback (most recent call last)" in result.traceback and "def broken" not in result.failure_detail
    assert "broken" in result.traceback  # the frame that raised is in the kept traceback
    assert outcome.artifacts()["traceback.txt"] == result.traceback
    assert result.startup_s is not None  # the server had started: it was torn down by the trial, not left running


def test_secret_in_traceback_is_redacted(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("token hf_supersecret leaked into a message")

    monkeypatch.setattr(worker, "measure_level", broken)
    outcome = worker.run_trial(config(tmp_path, HF_TOKEN="hf_supersecret"), load(), TIMEOUTS,
                               str(tmp_path / "trial.log"), vocab_size=1000)
    assert "hf_supersecret" not in outcome.result.traceback + outcome.result.failure_detail


def test_hung_engine_with_green_health_is_unresponsive(tmp_path):
    # After 12 completions the engine stops answering, /health stays 200: the level's requests time out.
    started = time.monotonic()
    outcome = worker.run_trial(config(tmp_path, "hang-after:12"), load(), TIMEOUTS, str(tmp_path / "trial.log"),
                               vocab_size=1000)
    result = outcome.result
    assert result.failure_class == "unresponsive", result.failure_detail
    assert "though /health answered" in result.failure_detail
    assert time.monotonic() - started < 25  # request timeouts (2 s) and one probe, not the 30 s level timeout


def test_level_with_no_success_is_never_feasible(tmp_path):
    outcome = worker.run_trial(config(tmp_path, "fail-every:1"), load(), TIMEOUTS, str(tmp_path / "trial.log"),
                               vocab_size=1000)
    assert outcome.result.failure_class == "unresponsive"
    assert "no request of" in outcome.result.failure_detail and "http_500" in outcome.result.failure_detail


def test_server_killed_during_warmup_is_classified_within_seconds(tmp_path):
    # Slow tokens: the first level's warm-up lasts ~30 s; the server dies 2 completions into it (after the first
    # request, which is sent alone and takes ~30 s itself).
    cfg = config(tmp_path, "die-after:3", FAKE_VLLM_TOKEN_MS="200")
    started = time.monotonic()
    outcome = worker.run_trial(cfg, load(concurrency=[4], output_len=150, request_timeout_s=120,
                                         level_timeout_s=300), TIMEOUTS, str(tmp_path / "trial.log"), vocab_size=1000)
    result = outcome.result
    assert result.failure_class == "died_under_load", result.failure_detail
    assert "fake engine core died" in result.failure_detail
    assert result.first_request_s is not None
    assert time.monotonic() - started - result.first_request_s < 20


def test_exact_prompts_for_a_hub_model_come_from_the_server_tokenizer(tmp_path):
    # No vocabulary known (a hub id, no config.json here): text prompts made exact by the server's /tokenize.
    outcome = worker.run_trial(config(tmp_path), load(concurrency=[2], repeats=1), TIMEOUTS,
                               str(tmp_path / "trial.log"), vocab_size=None)
    result = outcome.result
    assert result.failure_class is None, result.failure_detail
    assert all(level.input_tokens == level.completed * 8 for level in result.levels)


def _level(concurrency: int, tok_s: float, ttft_p99: float = 10.0, reliable: bool = True, repeat: int = 0):
    from tuner.contracts.results import LatencyStats, LevelResult

    return LevelResult(concurrency=concurrency, repeat=repeat, requests=8, completed=8, failed=0, duration_s=1.0,
                       output_throughput=tok_s, ttft_ms=LatencyStats(p99=ttft_p99), reliable=reliable)


def test_sweep_stops_where_throughput_plateaus_or_the_slo_is_missed():
    from tuner.contracts.goals import Goals

    slo = Goals(slo={"ttft_p99_ms": 100.0})
    assert worker.stop_reason([_level(4, 100), _level(16, 300)], slo, 0.05) is None
    assert "plateaued at concurrency 16" in worker.stop_reason([_level(4, 100), _level(16, 104)], slo, 0.05)
    assert "SLOs missed at concurrency 16" in worker.stop_reason([_level(4, 100), _level(16, 300, 150)], slo, 0.05)
    # A flagged level decides nothing, and is no baseline for a plateau.
    assert worker.stop_reason([_level(4, 100), _level(16, 100, 150, reliable=False)], slo, 0.05) is None
    assert worker.stop_reason([_level(4, 500, reliable=False), _level(16, 100)], slo, 0.05) is None
    assert worker.stop_reason([_level(4, 100)], None, 0.05) is None


def test_a_saturated_server_ends_the_sweep_early_and_says_why(tmp_path):
    from tuner.scoring.score import evidence_of

    # --max-num-seqs 2: past 2 streams, requests only queue; the sweep stops at 8 and repeats the operating point.
    plan = load(concurrency=[2, 8, 32], requests_per_level=32, plateau_gain=0.5, repeats=2)
    result = worker.run_trial(config(tmp_path), plan, TIMEOUTS, str(tmp_path / "trial.log"), vocab_size=1000).result
    assert result.failure_class is None
    assert "plateaued at concurrency 8" in result.sweep_stopped
    measured = [(lv.concurrency, lv.repeat) for lv in result.levels if lv.reliable]
    best = max((lv for lv in result.levels if lv.repeat == 0), key=lambda lv: lv.output_throughput).concurrency
    assert measured == [(2, 0), (8, 0), (best, 1)]  # no SLO: the operating point is the faster level
    evidence = evidence_of(result)
    assert evidence.phases_lived >= evidence.phases_planned  # the levels not run are not counted as not survived


def test_a_sweep_without_stop_early_measures_every_level(tmp_path):
    plan = load(concurrency=[2, 8], plateau_gain=0.5, stop_early=False)
    result = worker.run_trial(config(tmp_path), plan, TIMEOUTS, str(tmp_path / "trial.log"), vocab_size=1000).result
    assert result.sweep_stopped == "" and {lv.concurrency for lv in result.levels} == {2, 8}


def test_every_level_records_the_sampling_it_was_measured_with(tmp_path):
    import dataclasses
    import json

    from tuner.contracts.sampling import Sampling

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 0.8, "top_p": 0.95}))
    served = dataclasses.replace(config(tmp_path), model=str(folder))
    result = worker.run_trial(served, load(concurrency=[2]), TIMEOUTS, str(tmp_path / "a.log"), vocab_size=1000).result
    assert result.levels and all(lv.sampling is not None for lv in result.levels)
    assert result.levels[0].sampling.describe() == "temperature 0.8, top_p 0.95: the model's defaults"
    greedy = load(concurrency=[2], sampling=Sampling(temperature=0))
    result = worker.run_trial(served, greedy, TIMEOUTS, str(tmp_path / "b.log"), vocab_size=1000).result
    assert result.levels[0].sampling.greedy
    assert result.levels[0].sampling.describe() == "temperature 0 (greedy): set by the study"


def test_the_first_request_is_an_ordinary_one_of_the_traffic_sent_alone(tmp_path):
    """vLLM 0.32's CPU build dies when its very first request has a one-token prompt; tuner's first request is one
    of the study's own, so a launch whose later traffic (or probes) has one-token prompts still serves."""
    served = config(tmp_path, "first-short-dies:2:ILL")
    result = worker.run_trial(served, load(concurrency=[2], input_len=1, input_len_max=16), TIMEOUTS,
                              str(tmp_path / "ok.log"), vocab_size=1000).result
    assert result.failure_class is None, result.failure_detail
    assert result.levels and result.levels[0].failed == 0


def test_a_server_killed_by_its_first_request_failed_to_start_and_the_signal_is_named(tmp_path):
    served = config(tmp_path, "first-short-dies:100:ILL")
    result = worker.run_trial(served, load(concurrency=[2]), TIMEOUTS, str(tmp_path / "dies.log"),
                              vocab_size=1000).result
    assert result.failure_class == "crash" and not result.levels
    assert "before its first request was answered" in result.failure_detail
    assert "worker VllmWorker-0 killed by SIGILL (exit code -4)" in result.failure_detail
