"""The whole loop against the real CPU build of vLLM: `tuner study start` with 3 trials (one forced into the
infeasible region), `tuner study pareto`, `tuner study export`, and the exported YAML started through
`--config`. Slow (a few minutes): every trial launches a real server."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import optuna
import pytest
import yaml

from conftest import processes_tagged
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.spec import Timeouts

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

SPACE = """
parameters:
  max_num_seqs: {type: categorical, choices: [4, 32], flag: --max-num-seqs}
  max_model_len: {type: categorical, choices: [1024, 16384], flag: --max-model-len}
"""


def study_yaml(vllm_env: dict, storage: str, runs: Path) -> str:
    return yaml.safe_dump({
        "name": "e2e",
        "model": vllm_env["model"],
        "search_space": "space.yaml",
        "server": {"command": vllm_env["command"],
                   # Real conditions: idle keep-alive connections closed after 1 s while requests queue.
                   "env": {**vllm_env["env"], "TUNER_TEST_TAG": str(runs), "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1"},
                   "flags": {"--kv-cache-memory-bytes": 8388608, "--enforce-eager": True}},
        # The top level is 4x --max-num-seqs 4 with warm-up on: waves of queued requests, idle streams in between.
        "load": {"concurrency": [2, 16], "requests_per_level": 32, "warmup_rounds": 1, "input_len": 64,
                 "output_len": 128, "repeats": 2,
                 "request_timeout_s": 60, "level_timeout_s": 120},
        "resources": {"CPU": 1},
        "trials": 3,
        "storage": storage,
        "runs_dir": str(runs),
        "timeouts": {"startup_s": 240, "shutdown_grace_s": 10},
        "sampler": {"name": "random", "seed": 0},
        "enqueue": [
            {"max_num_seqs": 4, "max_model_len": 1024},
            {"max_num_seqs": 32, "max_model_len": 16384},  # 16,384 tokens cannot fit in 8,192 tokens of KV cache
            {"max_num_seqs": 32, "max_model_len": 1024},
        ],
    })


def tuner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_study_end_to_end(vllm_env, tmp_path):
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "study.yaml").write_text(study_yaml(vllm_env, storage, tmp_path / "runs"))

    started = tuner("study", "start", "study.yaml", cwd=tmp_path)
    assert "Pareto front" in started.stdout

    study = optuna.load_study(study_name="e2e", storage=storage)
    trials = {t.number: t for t in study.trials}
    assert [t.state.name for t in trials.values()] == ["COMPLETE"] * 3
    feasible = [t for t in trials.values() if t.constraints["config_failure"] <= 0]
    infeasible = [t for t in trials.values() if t.constraints["config_failure"] > 0]
    assert len(feasible) == 2 and len(infeasible) == 1

    for t in feasible:
        assert t.values[0] > 0 and 0 < t.values[1] <= 1
        levels = t.user_attrs["levels"]
        assert [lv["concurrency"] for lv in levels] == [2, 16, 16]
        for lv in levels:
            assert lv["completed"] == lv["requests"] == 32 and lv["failed"] == 0
            assert lv["output_tokens"] == 32 * 128  # counted from the server's usage
            assert lv["server"]["generation_tokens"] == lv["output_tokens"]  # and confirmed by its own counter
        assert t.user_attrs["startup_s"] > 0
        assert "--max-num-seqs" in t.user_attrs["argv"] and t.user_attrs["env"]["HF_HUB_OFFLINE"] == "1"
        assert Path(t.user_attrs["log_path"]).exists()
        assert set(t.user_attrs["stability_components"]) == {"success", "survival", "consistency", "memory"}

    bad = infeasible[0]
    assert bad.params == {"max_num_seqs": 32, "max_model_len": 16384}
    assert bad.user_attrs["failure_class"] == "kv_capacity"
    assert bad.values == [0.0, 0.0]
    assert "max seq len" in bad.user_attrs["failure_detail"]
    assert bad.user_attrs["log_tail"]
    assert study.metric_names == ["output_tok_s", "stability"]

    pareto = tuner("study", "pareto", "e2e", "--storage", storage, cwd=tmp_path).stdout
    assert f"│ {bad.number:>5} │" not in pareto

    tuner("study", "export", "e2e", "--storage", storage, "--trial", "max-throughput", "-o", "best.yaml",
          "--env-file", "best.env", cwd=tmp_path)
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["model"] == vllm_env["model"]
    assert exported["max-model-len"] == 1024
    assert "HF_HUB_OFFLINE=1" in (tmp_path / "best.env").read_text()

    # The exported file starts a real server through --config, unchanged.
    tag = str(tmp_path / "runs")
    config = ServerConfig(command=tuple(vllm_env["command"]), model="", env={**vllm_env["env"], "TUNER_TEST_TAG": tag})
    server = ServerProcess(config, tmp_path / "export-check.log", Timeouts(startup_s=240, shutdown_grace_s=10))
    server.argv = [*vllm_env["command"], "--config", str(tmp_path / "best.yaml"), "--host", server.host,
                   "--port", str(server.port)]
    with server:
        server.wait_ready()
        assert httpx.get(server.base_url + "/health").status_code == 200
        models = httpx.get(server.base_url + "/v1/models").json()
        assert models["data"][0]["max_model_len"] == 1024
    deadline = time.monotonic() + 10
    while processes_tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_tagged(tag) == []
