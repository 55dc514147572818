"""A study on a real multi-node Ray cluster (tests/ray_cluster.py: a head and a worker node started with `ray start`,
one `slice` each), driven by `tuner study start --ray-address` as a user would against a cluster it did not start:
trials spread over the nodes, a node lost mid-trial is an infrastructure failure retried elsewhere, and nothing of
the cluster or the servers is left afterwards."""
from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import pids_alive, processes_tagged
from ray_cluster import SLICE, RayCluster, session_members

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")


@pytest.fixture
def cluster():
    with RayCluster(workers=1) as running:
        yield running
    assert running.leftovers() == []


def write_study(tmp_path: Path, trials: int, requests: int) -> str:
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 1000, flag: --max-num-seqs}\n")
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "cluster", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "FAKE_VLLM_TOKEN_MS": "5",
                                                               "TUNER_TEST_TAG": str(tmp_path)}},
        "load": {"concurrency": [1], "requests_per_level": requests, "warmup_rounds": 0, "input_len": 8,
                 "output_len": 16, "repeats": 1, "worst_case": False,  # up to 1,000 sequences at once: not here
                 "precision": None},  # every request sent: the load lasts as long as the tests need
        "resources": {SLICE: 1}, "parallel": 2, "trials": trials, "storage": storage,
        "runs_dir": str(tmp_path / "runs"), "sampler": {"name": "random", "seed": 3}, "max_infra_retries": 2,
        "timeouts": {"startup_s": 120, "shutdown_grace_s": 2}, "confirm": {"repeats": 0},
    }))
    return storage


def start_driver(tmp_path: Path, cluster: RayCluster) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml",
                             "--ray-address", cluster.address], cwd=tmp_path, env=cluster.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(driver: subprocess.Popen) -> str:
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out
    return out


def trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="cluster", storage=storage).get_trials()


def assert_nothing_left(cluster: RayCluster, driver: subprocess.Popen, tag: Path) -> None:
    deadline = time.monotonic() + 30
    while (processes_tagged(str(tag)) or session_members(driver.pid)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_tagged(str(tag)) == []  # no server outlived its trial
    assert session_members(driver.pid) == []  # the driver started nothing that outlives it
    cluster.close()
    assert cluster.leftovers() == []  # every process of every node, by session


def test_trials_spread_over_the_nodes(tmp_path, cluster):
    started = time.monotonic()
    storage = write_study(tmp_path, trials=4, requests=24)
    ids = cluster.node_ids()
    driver = start_driver(tmp_path, cluster)
    finish(driver)
    done = [t for t in trials(storage) if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and all(t.values[0] > 0 for t in done)
    names = {node_id: name for name, node_id in ids.items()}
    split = collections.Counter(names.get(t.user_attrs["node_id"], "?") for t in done)
    print(f"\ntrials per node: {dict(sorted(split.items()))} (node ids: {ids})")
    # Two slices, parallel 2: the first two trials ran at once, so on both nodes; nothing ran anywhere else.
    assert set(split) == {"head", "worker1"}
    assert all(t.user_attrs["hostname"] for t in done)
    assert_nothing_left(cluster, driver, tmp_path)
    print(f"wall time {time.monotonic() - started:.1f} s")


def server_on(cluster: RayCluster, node_name: str, tag: Path, timeout_s: float = 120) -> int:
    """A fake server of this study running under a Ray worker of the named node."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in processes_tagged(str(tag)):
            node = cluster.node_of(pid)
            if node is not None and node.name == node_name and "fake_vllm" in open(f"/proc/{pid}/cmdline").read():
                return pid
        time.sleep(0.2)
    pytest.fail(f"no trial ran on {node_name}")


def test_a_node_lost_mid_trial_is_retried_elsewhere(tmp_path, cluster):
    started = time.monotonic()
    storage = write_study(tmp_path, trials=3, requests=120)  # about 10 s of load per trial: time to lose a node
    ids = cluster.node_ids()
    driver = start_driver(tmp_path, cluster)
    worker = cluster.worker_nodes[0]
    server = server_on(cluster, worker.name, tmp_path)
    worker.kill_raylet()
    lost = time.monotonic()
    deadline = time.monotonic() + 60
    while pids_alive([server]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids_alive([server]) == []  # the server did not outlive its node
    gone = time.monotonic()
    worker.end()  # what is left of the lost host (its agents) goes with it
    out = finish(driver)
    print(f"\nnode lost {lost - started:.1f} s in; server gone after {gone - lost:.1f} s; study done"
          f" {time.monotonic() - lost:.1f} s after")
    all_trials = trials(storage)
    done = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3, out  # exactly the budget
    assert [t for t in all_trials if t.state != TrialState.COMPLETE] == []  # nothing failed, nothing left queued
    retried = [t for t in done if t.user_attrs["attempts"] == 2]
    assert len(retried) == 1, out  # the lost attempt counted once, as infrastructure
    assert retried[0].user_attrs["node_id"] == ids["head"]  # retried on the node that was still there
    assert all(t.constraints["config_failure"] < 0 and t.values[0] > 0 for t in done)  # not penalized
    assert_nothing_left(cluster, driver, tmp_path)
    print(f"\nwall time {time.monotonic() - started:.1f} s")
