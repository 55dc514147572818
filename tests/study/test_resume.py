"""The tuner driver itself is killed (SIGKILL) or interrupted (Ctrl-C) mid-study: no server or Ray process is
left behind, and `tuner study start` on the same study continues it without losing or duplicating trials."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import processes_tagged

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
TRIALS = 3


def write_study(tmp_path: Path) -> str:
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 1000, flag: --max-num-seqs}\n")
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "resume", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "FAKE_VLLM_TOKEN_MS": "5",
                                                                   "TUNER_TEST_TAG": str(tmp_path)}},
        "load": {"concurrency": [1], "requests_per_level": 16, "warmup_rounds": 0, "input_len": 8, "output_len": 32,
                 "repeats": 1, "worst_case": False,  # up to 1,000 sequences at once: not what these tests are about
                 "precision": None},  # every request sent: each trial lasts long enough to be killed in
        "resources": {"CPU": 1}, "trials": TRIALS, "storage": storage, "runs_dir": str(tmp_path / "runs"),
        "sampler": {"name": "random", "seed": 1},
        "confirm": {"repeats": 1, "candidates": 1},  # one relaunch shows the confirmation resumes too
        # The killed driver's trial is re-queued once its lease expires: seconds here, a minute by default.
        "lease": {"heartbeat_s": 1, "grace_s": 4},
    }))
    return storage


def start_driver(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # A job started in the background by a non-interactive shell (as CI scripts may be) ignores SIGINT, and the
    # driver would inherit that: give it the default disposition a terminal's foreground job has.
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="resume", storage=storage).get_trials()
    except KeyError:
        return []


def wait_for_mid_study(storage: str, driver: subprocess.Popen, tag: Path) -> None:
    """Until one trial is complete and the next one's server is running."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = [t.state for t in trials(storage)]
        if states.count(TrialState.COMPLETE) >= 1 and TrialState.RUNNING in states and processes_tagged(str(tag)):
            return
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.3)
    pytest.fail("the study never reached a running second trial")


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry))
    return members


def assert_nothing_left(driver_pid: int, tag: Path) -> None:
    deadline = time.monotonic() + 30
    while (processes_tagged(str(tag)) or session_members(driver_pid)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_tagged(str(tag)) == []
    assert session_members(driver_pid) == []  # Ray's own processes too


def finish_and_check(tmp_path: Path, storage: str) -> None:
    again = start_driver(tmp_path)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    all_trials = trials(storage)
    finished = [t for t in all_trials if t.state == TrialState.COMPLETE]
    complete = [t for t in finished if "confirms" not in t.user_attrs]
    confirmations = [t for t in finished if "confirms" in t.user_attrs]
    failed = [t for t in all_trials if t.state == TrialState.FAIL]
    assert len(complete) == TRIALS  # --trials is the study's total, honoured exactly
    # After the search, the front's configs were relaunched (confirm.repeats each), linked to what they confirm.
    assert confirmations and {t.user_attrs["confirms"] for t in confirmations} <= {t.number for t in complete}
    assert len(failed) == 1 and failed[0].user_attrs["failure_class"] == "infra"
    rerun = [t for t in complete if t.user_attrs.get("requeued_from") == failed[0].number]
    assert len(rerun) == 1 and rerun[0].params == failed[0].params
    assert len({t.number for t in complete}) == TRIALS
    assert_nothing_left(again.pid, tmp_path)


def test_driver_sigkill_then_resume(tmp_path):
    storage = write_study(tmp_path)
    driver = start_driver(tmp_path)
    wait_for_mid_study(storage, driver, tmp_path)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert_nothing_left(driver.pid, tmp_path)
    assert [t.state for t in trials(storage)].count(TrialState.RUNNING) == 1  # what the next start recovers
    finish_and_check(tmp_path, storage)


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    storage = write_study(tmp_path)
    driver = start_driver(tmp_path)
    wait_for_mid_study(storage, driver, tmp_path)
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: SIGINT to the foreground group
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, out
    assert "run the same command to continue" in out
    assert_nothing_left(driver.pid, tmp_path)
    states = [t.state for t in trials(storage)]
    assert TrialState.RUNNING not in states and TrialState.WAITING in states  # re-queued for the next run
    finish_and_check(tmp_path, storage)
