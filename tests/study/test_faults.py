"""Fault injection through the whole study loop (Optuna + Ray + worker + server process), using the fake vLLM
server for faults a real server cannot produce on demand. After every scenario, no server process is alive."""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml

from conftest import processes_tagged
from tuner.errors import TunerBug
from tuner.inputs.spec import load_study
from tuner.study import StudyRunner, create_or_load
from tuner.study.front import study_front
from tuner.study.storage import open_storage

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
TPU_BUSY = "RuntimeError: TPU initialization failed: open(/dev/vfio/0): Device or resource busy\n"
CAPTURED = {
    "kv_capacity": "ValueError: To serve at least one request with the model's max seq len (16384), (0.02 GiB KV "
                   "cache is needed, which is larger than the available KV cache memory (0.01 GiB).\n"
                   "RuntimeError: Engine core initialization failed. See root cause above.\n",
    "oom": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n",
    "invalid_config": "api_server.py: error: argument --max-num-seqs: invalid int value: 'x'\n",
    "crash": "Fatal Python error: Segmentation fault\n",
}


pytestmark = pytest.mark.usefixtures("local_ray", "no_server_left_behind")


def make_study(tmp_path: Path, mode: str, trials: int = 1, **overrides):
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [1, 2, 3, 4], flag: --max-num-seqs}\n")
    spec = {
        "name": "faults", "model": "fake", "search_space": "space.yaml",
        # As real vLLM behaves: requests past --max-num-seqs (1 to 4 here) queue, idle connections close after 1 s.
        # Niceness 0: on a shared host (CI; `make faults-on-a-busy-host`) a fake at the default 10 starves behind other
        # jobs past its startup bound before it can fail as the test means. Its timings are not what is tested.
        "server": {"command": [sys.executable, FAKE], "nice": 0, "env": {"FAKE_VLLM_MODE": mode, "FAKE_VLLM_TOKEN_MS": "1",
                                                                    "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1",
                                                                    "TUNER_TEST_TAG": str(tmp_path)}},
        "load": {"concurrency": [1, 4], "requests_per_level": 8, "warmup_rounds": 1, "input_len": 8, "output_len": 8,
                 # Generous: a starved host (another job on both cores) must not turn a served level into a
                 # timeout; the test of the timeouts themselves sets its own. No worst case: these faults are
                 # the sweep's (the worst case has its own tests, tests/trial/test_worst_case.py).
                 "repeats": 1, "request_timeout_s": 10, "level_timeout_s": 30, "worst_case": False},
        "resources": {"CPU": 1}, "trials": trials, "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "runs_dir": str(tmp_path / "runs"), "timeouts": {"startup_s": 120, "shutdown_grace_s": 2, "fatal_log_grace_s": 1},
        "sampler": {"name": "random", "seed": 0}, "max_infra_retries": 1,
        "confirm": {"repeats": 0},  # confirmation has its own tests
    }
    for key, value in overrides.items():
        spec[key] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_study(path)


def run(study, trials=None):
    storage = open_storage(study.spec.storage)
    optuna_study = create_or_load(study, storage, study.spec.name)
    StudyRunner(study, optuna_study, trials or study.spec.trials).run()
    return optuna_study


def only_trial(optuna_study):
    (trial,) = optuna_study.get_trials()
    return trial


@pytest.mark.parametrize("failure_class", sorted(CAPTURED))
def test_config_failure_at_startup_is_penalized(tmp_path, failure_class):
    log = tmp_path / "captured.log"
    log.write_text(CAPTURED[failure_class])
    code = 2 if failure_class == "invalid_config" else (-11 if failure_class == "crash" else 1)
    trial = only_trial(run(make_study(tmp_path, f"exit:{code if code > 0 else 1}:{log}")))
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["failure_class"] == failure_class
    assert trial.values == [0.0, 0.0] and trial.constraints["config_failure"] > 0
    # What Optuna's constraint-aware samplers read: the config failed; SLO and measurement were never reached.
    assert trial.constraints == {"config_failure": 1.0, "slo": -1.0, "measurement": -1.0}
    assert trial.user_attrs["log_tail"]


def test_infra_failure_is_retried_not_penalized(tmp_path):
    log = tmp_path / "captured.log"
    log.write_text(TPU_BUSY)
    optuna_study = run(make_study(tmp_path, f"exit-once:1:{log}:{tmp_path / 'mark'}"))
    trial = only_trial(optuna_study)
    assert trial.state.name == "COMPLETE" and trial.constraints["config_failure"] < 0
    assert trial.user_attrs["attempts"] == 2
    # Measured on the retry; a starved client (a busy host) flags its levels, and flagged levels never decide.
    assert trial.values[0] > 0 or all(not lv["reliable"] for lv in trial.user_attrs["levels"])
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    names = sorted(a.filename for a in optuna.artifacts.get_all_artifact_meta(trial, storage=storage))
    assert "trial-0-attempt-1-server.log" in names and "trial-0-attempt-2-requests.jsonl" in names


def test_infra_failures_in_a_row_stop_the_study_without_counting(tmp_path):
    log = tmp_path / "captured.log"
    log.write_text(TPU_BUSY)
    study = make_study(tmp_path, f"exit:1:{log}", trials=5)
    with pytest.raises(Exception, match="infrastructure"):
        run(study)
    optuna_study = optuna.load_study(study_name="faults", storage=open_storage(study.spec.storage))
    states = [t.state.name for t in optuna_study.get_trials()]
    assert states == ["FAIL"] * 3  # not COMPLETE: infra failures never count as measured or penalized
    assert all(t.user_attrs["attempts"] == 2 for t in optuna_study.get_trials())
    # `tuner study status` says why the search stopped.
    assert optuna_study.user_attrs["search_stopped"] == "3 trials in a row failed for infrastructure reasons"


def test_server_dies_under_load_stays_on_the_front_with_its_survival(tmp_path):
    """A server that served a level and died at the next is the seed's "occasional OOM" config: what it served is
    measured and feasible; the death shows as survival (this launch did not survive: 0 until relaunches say more)
    and the dying level is left out."""
    from tests.builders import EndServerAt

    from tuner.trial import Seam, launch

    def dies_after_its_first_level(request, **kwargs):
        # At the end of the first level (remeasures included), whatever the host's load: a count of requests would
        # move with every remeasure of a level a starved client flagged.
        return launch(request, observer=EndServerAt(Seam.LEVEL_DONE), **kwargs)

    study = make_study(tmp_path, "ok")
    optuna_study = create_or_load(study, open_storage(study.spec.storage), study.spec.name)
    StudyRunner(study, optuna_study, 1, task=dies_after_its_first_level).run()
    trial = only_trial(optuna_study)
    assert trial.user_attrs["failure_class"] == "died_under_load"
    levels = trial.user_attrs["levels"]
    first = [lv for lv in levels if lv["concurrency"] == 1]
    assert first and all(lv["completed"] == 8 for lv in first)  # the level measured before the death is kept
    # The next level met a dead server: unreliable, or no level at all when it found it dead at connect.
    assert all(not lv["reliable"] for lv in levels[len(first):])
    score = trial.user_attrs["score"]
    if not any(lv["reliable"] for lv in first):  # a starved client flagged every attempt: nothing may decide
        assert trial.constraints["config_failure"] > 0 or trial.constraints["measurement"] > 0
        return
    assert trial.constraints["config_failure"] < 0
    assert score["components"]["survival"] == 0.0 and score["operating_concurrency"] == 1
    assert score["evidence"]["phases_lived"] == 1 and score["evidence"]["phases_planned"] == 2
    reliable = next(lv for lv in first if lv["reliable"])
    assert trial.values == [reliable["output_throughput"], 0.0]


def test_server_dying_in_its_first_level_is_penalized(tmp_path):
    trial = only_trial(run(make_study(tmp_path, "die-after:3")))
    assert trial.user_attrs["failure_class"] == "died_under_load"
    assert trial.constraints["config_failure"] > 0 and trial.values == [0.0, 0.0]


def test_unresponsive_server_is_classified_within_bound(tmp_path):
    started = time.monotonic()
    load = {"concurrency": [1, 4], "requests_per_level": 8, "warmup_rounds": 1, "input_len": 8, "output_len": 8,
            "repeats": 1, "request_timeout_s": 2, "level_timeout_s": 6}
    trial = only_trial(run(make_study(tmp_path, "hang-after:10", load=load)))
    assert trial.user_attrs["failure_class"] == "unresponsive"
    # Bounded by the 2 s request and 6 s level timeouts, not forever (the default request timeout is 120 s): the
    # sweep's own slice time says so whatever the host's load; the whole study's wall time only on a quiet host.
    assert trial.user_attrs["phases"]["sweep"] < 90, trial.user_attrs["phases"]  # 45 s measured on a busy host
    assert time.monotonic() - started < 300


@pytest.mark.parametrize("mode, error", [("fail-every:3", "http_500"), ("truncate-every:4", None),
                                         ("malformed-every:5", None)])
def test_bad_responses_are_counted_and_trial_completes(tmp_path, mode, error):
    trial = only_trial(run(make_study(tmp_path, mode)))
    assert trial.state.name == "COMPLETE" and trial.constraints["config_failure"] < 0
    levels = trial.user_attrs["levels"]
    failed = sum(lv["failed"] for lv in levels)
    assert failed > 0
    assert all(lv["completed"] + lv["failed"] == lv["requests"] for lv in levels)
    assert trial.user_attrs["score"]["components"]["success"] < 1
    if error:
        assert any(error in lv["errors"] for lv in levels)


def test_killed_ray_worker_reruns_the_same_parameters(tmp_path):
    # precision: null: the level sends all 400 requests, long enough for the kill to land inside it
    study = make_study(tmp_path, "ok", load={"concurrency": [1], "requests_per_level": 400, "warmup_rounds": 0,
                                             "input_len": 8, "output_len": 8, "repeats": 1, "request_timeout_s": 5,
                                             "level_timeout_s": 60, "precision": None})
    killed = []

    def kill_the_worker_once():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in processes_tagged(str(tmp_path)):
                if b"tuner.server._reaper" in open(f"/proc/{pid}/cmdline", "rb").read():
                    worker = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                    os.kill(worker, signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_worker_once)
    killer.start()
    optuna_study = run(study)
    killer.join()
    assert killed
    trial = only_trial(optuna_study)
    assert trial.state.name == "COMPLETE" and trial.user_attrs["attempts"] == 2
    assert trial.values[0] > 0


def test_duplicate_parameters_are_not_launched_again(tmp_path):
    study = make_study(tmp_path, "ok", trials=2, enqueue=[{"seqs": 2}, {"seqs": 2}, {"seqs": 3}])
    optuna_study = run(study)
    first, again, other = optuna_study.get_trials()
    assert [(t.state.name, t.params) for t in (first, again, other)] == [
        ("COMPLETE", {"seqs": 2}), ("COMPLETE", {"seqs": 2}), ("COMPLETE", {"seqs": 3})]
    # Answered from the first: the same values and constraints (the sampler learns nothing false), no launch, and
    # not a launch of the config anywhere else (budget, confirmation, front).
    assert again.user_attrs["duplicate_of"] == first.number and again.user_attrs["launched"] is False
    assert again.values == first.values and again.constraints == first.constraints
    assert "levels" not in again.user_attrs and "argv" not in again.user_attrs
    from tuner.scoring.confirmation import group_runs
    from tuner.study.records import records

    assert set(group_runs(records(optuna_study))) == {first.number, other.number}


def test_a_duplicate_of_a_running_trial_is_not_launched_nor_taught(tmp_path):
    from tuner.study._bookkeeping import Bookkeeper, Recorded

    study = make_study(tmp_path, "ok", trials=2, enqueue=[{"seqs": 2}, {"seqs": 2}], parallel=2)
    optuna_study = create_or_load(study, open_storage(study.spec.storage), study.spec.name)
    books = Bookkeeper(study, optuna_study)
    running = books.propose()
    said = books.propose()
    assert isinstance(said, Recorded) and "(running), not launched" in said.message
    first, again = optuna_study.get_trials()
    assert first.state.name == "RUNNING" and again.state.name == "FAIL"  # samplers ignore FAIL: nothing false learnt
    assert again.user_attrs["duplicate_of"] == running.trial.number


def test_rule_breakers_are_penalized_without_launch_and_not_counted(tmp_path):
    study = make_study(tmp_path, "ok", trials=2)
    (tmp_path / "space.yaml").write_text(
        "parameters:\n  seqs: {type: int, low: 1, high: 99, flag: --max-num-seqs}\n"
        "rules:\n  - {name: even-seqs, why: test rule, multiple_of: {name: --max-num-seqs, of: 2}}\n")
    optuna_study = run(load_study(study.path))
    complete = optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    launched = [t for t in complete if t.user_attrs.get("launched", True)]
    broken = [t for t in complete if t.params["seqs"] % 2]
    assert len(launched) == 2  # the budget counts launched trials only
    assert all(t.params["seqs"] % 2 == 0 and t.constraints["config_failure"] < 0 for t in launched)
    assert broken, "the random sampler proposed no odd value; pick another seed"
    for t in broken:
        assert t.user_attrs["launched"] is False and t.user_attrs["failure_class"] == "invalid_config"
        assert "even-seqs" in t.user_attrs["failure_detail"] and t.constraints["config_failure"] > 0


def _explode(*args, **kwargs):
    raise ZeroDivisionError("deliberate bug")


def run_trial_with_a_bug_inside(request, **kwargs):
    """A launch whose level code raises: run_trial itself catches it."""
    import tuner.trial.run

    real = tuner.trial.run.measure_level
    tuner.trial.run.measure_level = _explode
    try:
        return tuner.trial.run.launch(request, **kwargs)
    finally:
        tuner.trial.run.measure_level = real  # Ray reuses this worker process for later tests


def run_trial_that_raises(request, **kwargs):
    """An exception that escapes the Ray task altogether (Ray wraps it in a RayTaskError)."""
    _explode()


@pytest.mark.parametrize("task", [run_trial_with_a_bug_inside, run_trial_that_raises])
def test_bug_in_tuner_is_a_tuner_error_and_stops_the_study(tmp_path, task):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module
    study = make_study(tmp_path, "ok", trials=3)
    optuna_study = create_or_load(study, open_storage(study.spec.storage), study.spec.name)
    events = []
    runner = StudyRunner(study, optuna_study, 3, on_progress=lambda s: events.append(s.last_event), task=task)
    with pytest.raises(TunerBug) as info:
        runner.run()
    assert "ZeroDivisionError: deliberate bug" in str(info.value) and "bug in tuner" in str(info.value)
    assert "ZeroDivisionError" in info.value.traceback and "_explode" in info.value.traceback
    assert "\x1b[" not in info.value.traceback + str(info.value)  # Ray's colour codes stripped
    assert Path(info.value.traceback_path).read_text() == info.value.traceback
    first, requeued = optuna_study.get_trials()
    assert first.state.name == "FAIL" and first.user_attrs["failure_class"] == "tuner_error"
    assert first.user_attrs["attempts"] == 1  # not retried as infra
    assert requeued.state.name == "WAITING" and requeued.user_attrs["requeued_from"] == first.number
    assert any("tuner error: ZeroDivisionError: deliberate bug" in e for e in events)
    assert not any("infra" in e for e in events)
    names = [a.filename for a in optuna.artifacts.get_all_artifact_meta(first, storage=open_storage(study.spec.storage))]
    assert "trial-0-attempt-1-traceback.txt" in names


def test_secrets_never_reach_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk_from_the_tuners_own_env")  # inherited by the server, never stored
    study = make_study(tmp_path, "ok", trials=1)
    spec = yaml.safe_load(study.path.read_text())
    spec["server"]["env"]["HF_TOKEN"] = "hf_from_the_study_file"
    study.path.write_text(yaml.safe_dump(spec))
    optuna_study = run(load_study(study.path))
    assert only_trial(optuna_study).state.name == "COMPLETE"
    assert optuna_study.user_attrs["spec"]["server"]["env"]["HF_TOKEN"] == "***"
    stored = [(tmp_path / "db.sqlite").read_bytes()]
    stored += [p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    for secret in (b"hf_from_the_study_file", b"sk_from_the_tuners_own_env"):
        assert not any(secret in blob for blob in stored)


def test_config_that_dies_in_some_launches_is_on_the_front_with_its_failure_rate(tmp_path):
    """The seed's "production peak": fast, but OOMs under load now and then. One launch cannot measure "now and
    then"; the confirmation's relaunches do, and the front shows the config with survival = launches survived."""
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [2], flag: --max-num-seqs}\n")
    counter = tmp_path / "launches"
    study = make_study(tmp_path, f"die-randomly:0.3:12:{counter}", confirm={"repeats": 7, "candidates": 1})
    optuna_study = run(study)
    launches = int(counter.read_text())
    deaths = sum(random.Random(i).random() < 0.3 for i in range(launches))
    assert launches == 8 and 0 < deaths < launches
    front = study_front(optuna_study)
    assert front.confirmed and [s.trial for s in front.configs] == [0]
    summary = front.configs[0]
    assert summary.components.survival == pytest.approx(1 - deaths / launches)
    assert abs(summary.components.survival - 0.7) <= 0.1  # about the rate the fake dies at
    assert summary.values["stability"] <= summary.components.survival
    assert optuna_study.user_attrs["confirmed_front"] == [0]
    died = [t for t in optuna_study.get_trials() if t.user_attrs.get("failure_class") == "died_under_load"]
    assert len(died) == deaths and all(t.user_attrs["confirms"] == 0 for t in died)


def test_flagged_levels_are_remeasured_kept_and_never_decide(tmp_path):
    """A server whose token counter disagrees with what the client received (FAKE_VLLM_SKEW): every level is flagged
    token_mismatch, measured again once, kept with its warnings, and left out of every score, the front and the
    export; the trial says why."""
    study = make_study(tmp_path, "ok")
    spec = yaml.safe_load(study.path.read_text())
    spec["server"]["env"]["FAKE_VLLM_SKEW"] = "1.5"
    study.path.write_text(yaml.safe_dump(spec))
    optuna_study = run(load_study(study.path))
    trial = only_trial(optuna_study)
    levels = trial.user_attrs["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 1, 1, 4, 4, 4]  # each level measured 1 + 2 times
    assert not any(lv["reliable"] for lv in levels)
    assert all(any(w.startswith("token_mismatch") for w in lv["warnings"]) for lv in levels)
    assert any(w.startswith("remeasured") for w in levels[0]["warnings"])
    score = trial.user_attrs["score"]
    assert score["outcome"] == "unreliable" and "token_mismatch" in score["detail"]
    assert trial.constraints["measurement"] > 0 and trial.constraints["config_failure"] < 0
    assert study_front(optuna_study).configs == []
    from tuner.errors import TrialNotFound
    from tuner.report.export import select_trial

    with pytest.raises(TrialNotFound):
        select_trial(optuna_study, "max-throughput")


def test_open_loop_study_scores_rates_and_soaks_at_the_operating_rate(tmp_path):
    """`rates`: one open-loop level per arrival rate (capped in flight); the operating point is a rate, and the
    confirmation's soak runs at that rate."""
    study = make_study(tmp_path, "ok", load={"rates": [20.0, 40.0], "concurrency": [4], "requests_per_level": 16,
                                              "warmup_rounds": 1, "input_len": 8, "output_len": 8, "repeats": 1,
                                              "request_timeout_s": 10, "level_timeout_s": 30},
                       confirm={"repeats": 1, "candidates": 1})
    optuna_study = run(study)
    search, confirmation = optuna_study.get_trials()
    worst, *levels = search.user_attrs["levels"]  # the worst case first: every sequence at once, a closed wave
    assert (worst["phase"], worst["mode"], worst["concurrency"]) == ("worst_case", "closed", search.params["seqs"])
    assert [(lv["mode"], lv["request_rate"], lv["concurrency"]) for lv in levels] == [("open", 20.0, 4),
                                                                                     ("open", 40.0, 4)]
    score = search.user_attrs["score"]
    assert score["operating_point"].startswith("rate=") and score["operating_rate"] in (20.0, 40.0)
    soak = confirmation.user_attrs["levels"][-1]
    assert soak["phase"] == "soak" and soak["mode"] == "open" and soak["request_rate"] == score["operating_rate"]
    assert confirmation.user_attrs["confirms"] == search.number


def kv_failing_study(tmp_path, **settings):
    """A study over max-model-len whose every launch fails kv_capacity (a captured vLLM log)."""
    log = tmp_path / "captured.log"
    log.write_text(CAPTURED["kv_capacity"])
    study = make_study(tmp_path, f"exit:1:{log}", trials=2)
    (tmp_path / "space.yaml").write_text(
        "parameters:\n  len: {type: categorical, choices: [1024, 2048, 4096], flag: --max-model-len}\n")
    spec = yaml.safe_load(study.path.read_text())
    study.path.write_text(yaml.safe_dump({**spec, **settings}))
    return load_study(study.path)


def test_a_longer_context_with_no_more_kv_memory_is_predicted_from_a_measured_kv_capacity_failure(tmp_path):
    optuna_study = run(kv_failing_study(tmp_path, enqueue=[{"len": 2048}, {"len": 4096}, {"len": 1024}]))
    failed, longer, shorter = optuna_study.get_trials()
    assert failed.user_attrs["failure_class"] == "kv_capacity" and failed.user_attrs.get("launched", True)
    # 4096 > 2048 under the same KV memory: recorded as predicted, never launched, not counted in the budget.
    assert longer.user_attrs["launched"] is False and longer.user_attrs["predicted"] is True
    assert longer.user_attrs["failure_class"] == "kv_capacity" and longer.constraints["config_failure"] > 0
    assert f"trial {failed.number} failed kv_capacity" in longer.user_attrs["failure_detail"]
    # A shorter context may fit: it is launched (and fails here, measured).
    assert shorter.user_attrs.get("launched", True) and not shorter.user_attrs.get("predicted")


def test_predict_from_failures_off_launches_every_config(tmp_path):
    study = kv_failing_study(tmp_path, predict_from_failures=False, enqueue=[{"len": 2048}, {"len": 4096}])
    _failed, longer = run(study).get_trials()
    assert longer.user_attrs.get("launched", True) and not longer.user_attrs.get("predicted")
    assert longer.user_attrs["failure_class"] == "kv_capacity"  # measured, by a launch


def test_a_server_killed_by_a_signal_before_serving_is_relaunched_once_and_its_death_counts(tmp_path):
    counter = tmp_path / "launches"
    trial = only_trial(run(make_study(tmp_path, f"first-dies-on:0:ILL:{counter}")))
    assert trial.state.name == "COMPLETE" and trial.constraints["config_failure"] < 0  # not penalized as a crash
    assert trial.user_attrs["attempts"] == 2
    assert "killed by SIGILL" in trial.user_attrs["relaunched_after"]
    assert "before its first request was answered" in trial.user_attrs["relaunched_after"]
    survival = trial.user_attrs["score"]["components"]["survival"]
    assert survival == pytest.approx(0.5)  # the first launch lived none of its levels, the relaunch all of its own


def test_a_config_killed_the_same_way_twice_is_a_crash_with_both_launches_as_evidence(tmp_path):
    counter = tmp_path / "launches"
    trial = only_trial(run(make_study(tmp_path, f"first-dies-on:0,1:SEGV:{counter}")))
    assert trial.user_attrs["failure_class"] == "crash" and trial.constraints["config_failure"] > 0
    assert trial.user_attrs["killed_by"] == "SIGSEGV" and trial.user_attrs["attempts"] == 2
    assert "twice: its first launch died the same way" in trial.user_attrs["failure_detail"]


def test_a_signal_on_every_config_stops_the_study_as_the_environment(tmp_path):
    from tuner.errors import SetupError

    counter = tmp_path / "launches"
    study = make_study(tmp_path, f"first-dies-on:{','.join(map(str, range(10)))}:ILL:{counter}", trials=4)
    with pytest.raises(SetupError, match="SIGILL killed it before it served a request on 2 configs in a row"):
        run(study)
    optuna_study = optuna.load_study(study_name="faults", storage=open_storage(study.spec.storage))
    assert [t.user_attrs.get("failure_class") for t in optuna_study.get_trials()] == ["crash", "crash"]
    assert int(counter.read_text()) == 4  # two configs, each launched twice, and nothing more
