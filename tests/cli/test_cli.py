"""The CLI edge: bad input gives one line naming file, key and expectation, exit code 2, and writes nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUNER = [sys.executable, "-m", "tuner.cli"]


def tuner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TUNER, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 8, flag: --max-num-seqs}\n")
    return tmp_path


@pytest.mark.parametrize(
    "study_text, fragment",
    [
        ("name: s\nmodel: m\nsearch_space: space.yaml\nload: {concurrency: [4, 2]}\n", "study.yaml: load.concurrency:"),
        ("name: s\nmodel: m\nsearch_space: space.yaml\nstorage: 'sqlite:///no/such/dir/x.db'\n", "study.yaml: storage: cannot open"),
        ("name: s\nmodel: m\nsearch_space: space.yaml\nstorage: 'nosuchdb://x'\n", "study.yaml: storage: cannot open"),
        ("name: s\nmodel: m\nsearch_space: missing.yaml\n", "missing.yaml: file not found"),
        ("name: s\nmodel: m\nsearch_space: space.yaml\nserver: {env: {lower: x}}\n", "study.yaml: server.env:"),
        ("name: s\nmodel: [unclosed\n", "study.yaml: malformed YAML at line"),
    ],
)
def test_study_start_bad_input(workdir, study_text, fragment):
    (workdir / "study.yaml").write_text(study_text)
    line = one_line_error(tuner("study", "start", "study.yaml", cwd=workdir))
    assert fragment in line
    assert not (workdir / "tuner.db").exists()  # nothing written to storage


def test_bad_storage_option(workdir):
    (workdir / "study.yaml").write_text("name: s\nmodel: m\nsearch_space: space.yaml\n")
    line = one_line_error(tuner("study", "start", "study.yaml", "--storage", "sqlite:///nodir/x.db", cwd=workdir))
    assert line.startswith("error: --storage: cannot open")
    assert not list(workdir.glob("*.db"))


@pytest.mark.parametrize("command", [["study", "status", "nope"], ["study", "pareto", "nope"],
                                     ["study", "export", "nope", "-o", "x.yaml"]])
def test_missing_study_storage(workdir, command):
    line = one_line_error(tuner(*command, cwd=workdir))
    assert "no study storage" in line
    assert not (workdir / "x.yaml").exists()


def test_help_explains_commands(workdir):
    result = tuner("study", "start", "--help", cwd=workdir)
    assert result.returncode == 0
    for option in ("--trials", "--storage", "--name", "--ray-address"):
        assert option in result.stdout


def test_prescreen_input_error_before_anything_is_written(workdir):
    # A CPU slice has no device memory to take a share of: the estimate needs --kv-cache-memory-bytes. That must be
    # said before the study is created, like every other input error.
    model = workdir / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_hidden_layers":'
                                       ' 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,'
                                       ' "vocab_size": 2048, "max_position_embeddings": 4096, "torch_dtype": "float32"}')
    (workdir / "study.yaml").write_text(f"name: s\nmodel: {model}\nsearch_space: space.yaml\nprescreen: true\n"
                                        "resources: {CPU: 1}\n")
    line = one_line_error(tuner("study", "start", "study.yaml", cwd=workdir))
    assert "--kv-cache-memory-bytes" in line
    assert not (workdir / "tuner.db").exists() and not (workdir / "tuner-runs").exists()
