"""A real CPU vLLM whose engine dies in the middle of the warm-up: the trial sees it at once (the server exits),
classifies it from the log like any death under load, and leaves no process behind. Slow: one real launch."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import processes_tagged
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.server.config import ServerConfig
from tuner.trial import run_trial
from tuner.trial.sweep_plan import SweepPlan

pytestmark = pytest.mark.e2e


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def server_groups(tag: str) -> set[int]:
    """Process groups of this test's servers (the reaper leads one per server and carries the tag)."""
    return {int(fields[2]) for pid in processes_tagged(tag) if (fields := _stat(pid))}


def group_members(groups: set[int]) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and (f := _stat(int(e))) and int(f[2]) in groups
            and f[0] != "Z"]


def engine_core_of(groups: set[int]) -> int | None:
    # vLLM renames its engine process (setproctitle "VLLM::EngineCore"), which also hides its environment: find it
    # by its process group, not by the test's tag.
    for pid in group_members(groups):
        try:
            if b"EngineCore" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


def test_engine_killed_during_warmup_is_classified_within_seconds(vllm_env, tmp_path):
    tag = str(tmp_path)
    log = tmp_path / "server.log"
    config = ServerConfig(command=tuple(vllm_env["command"]), model=vllm_env["model"],
                          flags={"--max-num-seqs": 4, "--max-model-len": 1024, "--kv-cache-memory-bytes": 8388608,
                                 "--enforce-eager": True},
                          env={**vllm_env["env"], "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1", "TUNER_TEST_TAG": tag})
    # The warm-up alone is 2 rounds x 16 requests x 256 tokens at 4 sequences at a time: many seconds.
    # Without the worst-case wave: the kill is aimed at the warm-up of the level (test_worst_case covers that phase).
    load = LoadSpec(concurrency=[16], requests_per_level=32, warmup_rounds=2, input_len=64, output_len=256,
                    repeats=1, request_timeout_s=300, level_timeout_s=900, worst_case=False)
    killed_at: list[float] = []
    groups: set[int] = set()

    def kill_engine_in_warmup() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "Application startup complete" not in _read(log):
            time.sleep(0.2)
        time.sleep(3)  # the sweep has started its warm-up
        groups.update(server_groups(tag))
        pid = engine_core_of(groups)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_engine_in_warmup, daemon=True)
    killer.start()
    outcome = run_trial(config, SweepPlan(load), Timeouts(startup_s=240, shutdown_grace_s=10), str(log), vocab_size=None)
    ended_at = time.monotonic()
    killer.join()
    result = outcome.result
    assert killed_at, "the engine core was never found"
    assert result.failure_class == "died_under_load", result.failure_detail
    assert "at concurrency 16" in result.failure_detail
    assert ended_at - killed_at[0] < 30  # seconds (server exit + teardown), not the 900 s level timeout
    deadline = time.monotonic() + 10
    while (processes_tagged(tag) or group_members(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_tagged(tag) == [] and group_members(groups) == []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
