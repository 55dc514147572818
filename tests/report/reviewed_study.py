"""One small real study for the report tests: `tuner study start` on the fake vLLM (real uvicorn, queueing past
--max-num-seqs), three enqueued configs, one of which fails kv_capacity with a captured vLLM log."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna

FAKE = Path(__file__).parent.parent / "fakes" / "fake_vllm.py"
KV_LOG = ("ValueError: To serve at least one request with the model's max seq len (16384), (0.02 GiB KV cache is"
          " needed, which is larger than the available KV cache memory (0.01 GiB).\n"
          "RuntimeError: Engine core initialization failed. See root cause above.\n")


@dataclass
class Reviewed:
    root: Path
    storage: str
    name: str

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def make_reviewed(tmp_path_factory) -> Reviewed:
    """Used by the session fixture `reviewed` in tests/conftest.py (a conftest.py here would shadow that one's
    name for the tests that `from conftest import ...`)."""
    root = tmp_path_factory.mktemp("reviewed")
    (root / "kv.log").write_text(KV_LOG)
    failing = f"exit:1:{root / 'kv.log'}"
    (root / "space.yaml").write_text(
        "parameters:\n  seqs: {type: categorical, choices: [1, 2, 4], flag: --max-num-seqs}\n"
        f"  mode: {{type: categorical, choices: [ok, '{failing}'], env: FAKE_VLLM_MODE}}\n")
    storage = f"sqlite:///{root / 'db.sqlite'}"
    # The fake's shape, so every level is read against the host's measured limits (the report's Physical limits).
    (root / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,'
                                      ' "vocab_size": 2048, "intermediate_size": 128}')
    (root / "study.yaml").write_text(f"""
name: reviewed
model: fake
search_space: space.yaml
server:
  command: [{sys.executable}, {FAKE}]
  env: {{FAKE_VLLM_TOKEN_MS: "1", VLLM_HTTP_TIMEOUT_KEEP_ALIVE: "1", TUNER_TEST_TAG: "{root}"}}
load: {{concurrency: [1, 4], requests_per_level: 8, warmup_rounds: 1, input_len: 8, output_len: 8, repeats: 1,
        request_timeout_s: 5, level_timeout_s: 20}}
resources: {{CPU: 1}}
model_info: {{config_json: config.json}}
hardware: {{name: cpu}}
trials: 3
storage: {storage}
runs_dir: {root / 'runs'}
timeouts: {{startup_s: 120, shutdown_grace_s: 2, fatal_log_grace_s: 1}}
slo: {{ttft_p99_ms: 2000}}
confirm: {{repeats: 0}}
enqueue_labels: ["baseline: one sequence"]
enqueue:
  - {{seqs: 1, mode: ok}}
  - {{seqs: 4, mode: ok}}
  - {{seqs: 2, mode: "{failing}"}}
""")
    run_cli("study", "start", "study.yaml", cwd=root)
    return Reviewed(root, storage, "reviewed")
