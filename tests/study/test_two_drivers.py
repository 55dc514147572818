"""Two `tuner study start` drivers on one PostgreSQL study (started by `make test` through scripts/postgres.sh) and
one Ray cluster (tests/ray_cluster.py): they share the trial budget without launching a config twice and without
taking each other's running trials; when one is killed, the other re-queues its trial once the lease expires and
runs it, and the study ends with exactly its budget."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import processes_tagged
from ray_cluster import SLICE, RayCluster, session_members

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
TRIALS = 6
GRACE_S = 3


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("TUNER_TEST_POSTGRES_URL is not set: run `make test` (it starts PostgreSQL via scripts/postgres.sh)")
    return url


def write_study(workdir: Path, name: str, storage: str) -> None:
    """One driver's copy of the study file: the same study, its servers tagged with the driver's directory."""
    workdir.mkdir()
    (workdir / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 1000, flag: --max-num-seqs}\n")
    (workdir / "study.yaml").write_text(yaml.safe_dump({
        "name": name, "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "FAKE_VLLM_TOKEN_MS": "5",
                                                               "TUNER_TEST_TAG": str(workdir)}},
        # about 5 s of load per trial: longer than the lease's grace, so a driver taking another's live trial
        # would show
        # precision: null: every trial sends all 60 (a level measured to a precision could end in a second)
        "load": {"concurrency": [1], "requests_per_level": 60, "warmup_rounds": 0, "input_len": 8,
                 "output_len": 16, "repeats": 1, "worst_case": False,  # up to 1,000 sequences at once: not here
                 "precision": None},
        "resources": {SLICE: 1}, "parallel": 1, "trials": TRIALS, "storage": storage,
        "runs_dir": str(workdir / "runs"), "sampler": {"name": "random", "seed": 5},
        "timeouts": {"startup_s": 120, "shutdown_grace_s": 2}, "confirm": {"repeats": 0},
        "lease": {"heartbeat_s": 1, "grace_s": GRACE_S},
    }))


def start_driver(workdir: Path, cluster: RayCluster) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml",
                             "--ray-address", cluster.address], cwd=workdir, env=cluster.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:
        return []


def ran_by(trial: optuna.trial.FrozenTrial, workdir: Path) -> bool:
    return trial.user_attrs.get("env", {}).get("TUNER_TEST_TAG") == str(workdir)


def running_server_seqs(workdir: Path) -> int | None:
    """--max-num-seqs of this driver's running fake server: which config (so which trial) it measures."""
    for pid in processes_tagged(str(workdir)):
        args = open(f"/proc/{pid}/cmdline").read().split("\0")
        if any("fake_vllm" in a for a in args) and "--max-num-seqs" in args:
            return int(args[args.index("--max-num-seqs") + 1])
    return None


def wait_until(what: str, check, drivers: list[subprocess.Popen], timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        for driver in drivers:
            assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_two_drivers_share_a_study_and_a_killed_one_is_taken_over(tmp_path, postgres_url):
    started = time.monotonic()
    name = f"two-{uuid.uuid4().hex[:8]}"
    a, b = tmp_path / "a", tmp_path / "b"
    write_study(a, name, postgres_url)
    write_study(b, name, postgres_url)
    with RayCluster(workers=1) as cluster:  # two slices: one trial of each driver at a time
        first = start_driver(a, cluster)
        wait_until("driver a's first server", lambda: running_server_seqs(a), [first])
        second = start_driver(b, cluster)

        def b_busy_again():
            """b finished a trial of its own and runs another: (that trial's number, its seqs)."""
            done = [t for t in trials(postgres_url, name) if t.state == TrialState.COMPLETE and ran_by(t, b)]
            seqs = running_server_seqs(b)
            if not done or seqs is None:
                return None
            mine = [t for t in trials(postgres_url, name)
                    if t.state == TrialState.RUNNING and t.params.get("seqs") == seqs]
            return mine[0].number if mine else None

        victim = wait_until("driver b's second trial", b_busy_again, [first, second])
        os.killpg(second.pid, signal.SIGKILL)  # the driver, and nothing else: its trial runs on the cluster
        second.wait()
        out, _ = first.communicate(timeout=300)
        assert first.returncode == 0, out

        all_trials = trials(postgres_url, name)
        complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
        launched = [t for t in complete if t.user_attrs.get("launched", True) and "duplicate_of" not in t.user_attrs]
        failed = [t for t in all_trials if t.state == TrialState.FAIL and "duplicate_of" not in t.user_attrs]
        split = {d.name: sum(ran_by(t, d) for t in launched) for d in (a, b)}
        print(f"\nlaunched {len(launched)} (budget {TRIALS}), by driver {split}; re-queued: trial {victim}")
        assert len(launched) == TRIALS, out  # the budget, jointly
        assert len({t.params["seqs"] for t in launched}) == len(launched)  # no config launched twice
        assert split["a"] and split["b"]  # both drivers did work
        # Only the killed driver's trial failed (nobody took a live driver's trial: trials last longer than the
        # grace), as infrastructure, and it ran again exactly once, with its parameters, by the driver left.
        assert [t.number for t in failed] == [victim], out
        assert failed[0].user_attrs["failure_class"] == "infra" and "lease" in failed[0].user_attrs["failure_detail"]
        rerun = [t for t in complete if t.user_attrs.get("requeued_from") == victim]
        assert len(rerun) == 1 and rerun[0].params == failed[0].params and ran_by(rerun[0], a)
        assert [t for t in all_trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []

        deadline = time.monotonic() + 30
        while (processes_tagged(str(a)) or processes_tagged(str(b))) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert processes_tagged(str(a)) == [] and processes_tagged(str(b)) == []  # the killed one's server too
        assert session_members(first.pid) == [] and session_members(second.pid) == []
    assert cluster.leftovers() == []
    print(f"wall time {time.monotonic() - started:.1f} s")
