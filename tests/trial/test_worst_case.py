"""The worst case first: right after startup (and the probes), --max-num-seqs requests at once at the longest
prompt and output the traffic allows. A config whose memory runs out only at the top of the load fails there, in
seconds, instead of after every lower level. On the fake server (real uvicorn), whose `oom-above` mode dies with
vLLM's out-of-memory line once the generating requests hold too many tokens: a fault a real server cannot be made
to show on demand."""
from __future__ import annotations

import pytest
from tests.builders import TIMEOUTS, fake_config, load

from tuner.contracts.results import LevelResult, ServerCounters, TrialResult
from tuner.scoring.score import components_of, evidence_of
from tuner.server.failures import FailureClass
from tuner.trial import run_trial
from tuner.trial.sweep_plan import SweepPlan

pytestmark = pytest.mark.usefixtures("no_server_left_behind")
TRAFFIC = dict(concurrency=[1, 4], input_len=8, input_len_max=64, output_len=8, repeats=1, worst_case=True)


def launch(tmp_path, mode: str, flags: dict | None = None, **overrides) -> TrialResult:
    config = fake_config(tmp_path, mode)
    config = config.__class__(**{**config.__dict__, "flags": {**config.flags, **(flags or {})}})
    plan = SweepPlan(load=load(**{**TRAFFIC, **overrides}))
    return run_trial(config, plan, TIMEOUTS, str(tmp_path / "server.log")).result


def test_a_config_that_runs_out_of_memory_at_the_top_fails_at_its_worst_case_before_the_sweep(tmp_path):
    result = launch(tmp_path, "oom-above:250")  # 4 x (64 + 8) = 288 tokens at once; c=1 holds at most 72
    assert result.failure_class == FailureClass.DIED_UNDER_LOAD and "out of memory" in result.failure_detail
    assert [(lv.phase, lv.concurrency, lv.requests, lv.input_len, lv.output_len) for lv in result.levels] == [
        ("worst_case", 4, 4, 64, 8)]
    assert "worst_case" in result.phases and "sweep" not in {lv.phase for lv in result.levels}
    evidence = evidence_of(result)
    assert evidence.phases_planned == 3 and evidence.phases_lived == 0  # worst case, c=1, c=4: none lived


def test_turned_off_the_sweep_starts_at_its_lowest_level(tmp_path):
    result = launch(tmp_path, "oom-above:250", worst_case=False)
    assert result.levels[0].phase == "sweep" and result.levels[0].concurrency == 1 and result.levels[0].reliable


def test_the_worst_case_is_capped_by_max_model_len_and_a_healthy_config_goes_on_to_its_sweep(tmp_path):
    result = launch(tmp_path, "ok", flags={"--max-model-len": 40})
    assert result.failure_class is None
    worst = result.levels[0]
    assert (worst.phase, worst.input_len, worst.output_len) == ("worst_case", 32, 8)  # 32 + 8 = --max-model-len
    assert [lv.phase for lv in result.levels[1:]] == ["sweep", "sweep"]
    assert evidence_of(result).phases_lived == evidence_of(result).phases_planned == 3


def test_preempting_at_the_worst_case_is_not_fragility_but_its_failed_requests_count():
    worst = LevelResult(concurrency=64, requests=64, completed=60, failed=4, duration_s=5, phase="worst_case",
                        server=ServerCounters(preemptions=30))
    sweep = LevelResult(concurrency=16, requests=100, completed=100, failed=0, duration_s=5,
                        server=ServerCounters(preemptions=2))
    parts = components_of(evidence_of(TrialResult(argv=[], env={}, levels=[worst, sweep], levels_planned=2)))
    assert parts.headroom == pytest.approx(1 - 2 / 164)
    assert parts.success == pytest.approx(160 / 164)
