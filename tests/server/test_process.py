"""The server process: readiness, fast failure on a fatal log line, timeouts, whole-group teardown, orphan safety.

Uses tests/fakes/fake_vllm.py, which replays captured vLLM logs and misbehaves on demand."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import pids_alive
from tuner.errors import ServerStartupFailed
from tuner.inputs.spec import Timeouts
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess, live_group_members

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
VLLM_LOGS = Path(__file__).parents[1] / "fixtures" / "vllm_logs"
KV_LOG = """INFO Starting to load model
(EngineCore pid=1) ERROR [core.py:1] ValueError: To serve at least one request with the model's max seq len (16384), (0.02 GiB KV cache is needed, which is larger than the available KV cache memory (0.01 GiB).
(EngineCore pid=1) ERROR [core.py:2] RuntimeError: Engine core initialization failed. See root cause above.
"""
FAST = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)


def fake(mode: str, **env: str) -> ServerConfig:
    return ServerConfig(command=(sys.executable, FAKE), model="fake", env={"FAKE_VLLM_MODE": mode, **env})


def test_ready_server_answers_and_leaves_nothing_behind(tmp_path):
    server = ServerProcess(fake("ok"), tmp_path / "s.log", FAST)
    with server:
        assert server.wait_ready() < 10
        assert httpx.get(server.base_url + "/health").status_code == 200
        pgid = server.pid
    assert live_group_members(pgid) == []
    assert "fake vLLM" in (tmp_path / "s.log").read_text()


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("nice", [0, 7])
def test_server_steps_back_for_the_client_in_its_own_scheduling_group(tmp_path, nice):
    from dataclasses import replace
    mine = _niceness(os.getpid())
    with ServerProcess(replace(fake("ok"), nice=nice), tmp_path / "s.log", FAST) as server:
        server.wait_ready()
        members = live_group_members(server.pid)
        assert len(members) >= 2  # the reaper and the server it started
        assert {_niceness(pid) for pid in members} == {min(19, mine + nice)}
        autogroup = Path(f"/proc/{server.pid}/autogroup")
        if autogroup.exists() and nice:
            assert autogroup.read_text().split()[-1] == str(nice)


def test_exit_at_startup_is_classified_from_the_log(tmp_path):
    log = tmp_path / "captured.log"
    log.write_text(KV_LOG)
    with ServerProcess(fake(f"exit:1:{log}"), tmp_path / "s.log", FAST) as server:
        with pytest.raises(ServerStartupFailed) as info:
            server.wait_ready()
    assert info.value.failure_class == "kv_capacity"
    assert info.value.detail.startswith("ValueError: To serve at least one request")


def test_fatal_line_ends_the_wait_long_before_the_timeout(tmp_path):
    log = tmp_path / "captured.log"
    log.write_text(KV_LOG)
    slow_timeout = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)
    started = time.monotonic()
    with ServerProcess(fake(f"fatal-hang:{log}"), tmp_path / "s.log", slow_timeout) as server:
        with pytest.raises(ServerStartupFailed) as info:
            server.wait_ready()
    assert info.value.failure_class == "kv_capacity"
    assert time.monotonic() - started < 30  # seconds after the line, not the 120 s timeout


def test_startup_timeout(tmp_path):
    with ServerProcess(fake("never-ready"), tmp_path / "s.log", Timeouts(startup_s=2, shutdown_grace_s=2)) as server:
        with pytest.raises(ServerStartupFailed) as info:
            server.wait_ready()
    assert info.value.failure_class == "startup_timeout"


def test_port_taken_is_infra(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with ServerProcess(fake("ok"), tmp_path / "s.log", FAST, port=port) as server:
            with pytest.raises(ServerStartupFailed) as info:
                server.wait_ready()
    assert info.value.failure_class == "infra"


def test_child_that_ignores_sigterm_is_killed_with_the_group(tmp_path):
    server = ServerProcess(fake("stubborn-child"), tmp_path / "s.log", FAST)
    with server:
        server.wait_ready()
        members = live_group_members(server.pid)
        assert len(members) >= 3  # reaper, server, stubborn child
    assert pids_alive(members) == []


def test_server_dies_with_a_killed_parent(tmp_path):
    """SIGKILL of the process that started the server (a Ray worker, the tuner) must not orphan it."""
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from pathlib import Path
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.inputs.spec import Timeouts
s = ServerProcess(ServerConfig(command=(sys.executable, {FAKE!r}), model="fake", env={{"FAKE_VLLM_MODE": "stubborn-child"}}),
                  Path({str(tmp_path / 's.log')!r}), Timeouts(shutdown_grace_s=1))
s.start(); s.wait_ready(); print(s.pid, flush=True); time.sleep(3600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pgid = int(parent.stdout.readline())
    members = live_group_members(pgid)
    assert members
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pids_alive(members):
        time.sleep(0.2)
    assert pids_alive(members) == []


def test_stop_is_idempotent(tmp_path):
    server = ServerProcess(fake("ok"), tmp_path / "s.log", FAST)
    server.start()
    server.wait_ready()
    server.stop()
    server.stop()
    assert server.exit_code() is not None


@pytest.mark.parametrize("name, needle", [
    ("harmless_compile_traceback.log", "Traceback (most recent call last)"),
    ("tpu_compile_retried_after_resource_exhausted.log", "RESOURCE_EXHAUSTED"),
])
def test_harmless_traceback_during_startup_is_not_fatal(tmp_path, name, needle):
    # vLLM prints non-fatal tracebacks (graph breaks, compile retries that ran out of memory) and goes on to serve.
    config = fake(f"log-then-serve:{VLLM_LOGS / name}", FAKE_VLLM_STARTUP_S="2")  # stands > fatal_log_grace_s
    timeouts = Timeouts(startup_s=30, shutdown_grace_s=2, fatal_log_grace_s=1)
    with ServerProcess(config, tmp_path / "s.log", timeouts) as server:
        assert server.wait_ready() > 1.5
        assert needle in (tmp_path / "s.log").read_text()


def test_real_kv_capacity_log_of_a_server_that_hangs_ends_the_wait(tmp_path):
    slow_timeout = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)
    started = time.monotonic()
    config = fake(f"fatal-hang:{VLLM_LOGS / 'cpu_kv_capacity.log'}")
    with ServerProcess(config, tmp_path / "s.log", slow_timeout) as server:
        with pytest.raises(ServerStartupFailed) as info:
            server.wait_ready()
    assert info.value.failure_class == "kv_capacity"
    assert time.monotonic() - started < 30


def test_log_is_watched_in_whole_lines(tmp_path):
    # A fatal line caught half-written must be judged whole: its ERROR prefix and its signature together.
    log = tmp_path / "s.log"
    server = ServerProcess(fake("ok"), log, FAST)
    prefix = b"(EngineCore_DP0 pid=7) ERROR 11-28 03:17:20 [core.py:708] "
    log.write_bytes(b"INFO 11-28 03:17:19 [core.py:1] loading\n" + prefix)
    offset, text = server._read_new_lines(0)
    assert text == "INFO 11-28 03:17:19 [core.py:1] loading\n"
    with log.open("ab") as f:
        f.write(b"torch.OutOfMemoryError: CUDA out of memory.\n")
    offset, text = server._read_new_lines(offset)
    assert text == (prefix + b"torch.OutOfMemoryError: CUDA out of memory.\n").decode()
    assert server._read_new_lines(offset) == (offset, "")


def test_diagnosis_asks_the_device_who_else_holds_memory(tmp_path, monkeypatch):
    # The log's numbers say the device was free (the share is too high), but nvidia-smi shows another process.
    nvidia_smi = tmp_path / "bin" / "nvidia-smi"
    nvidia_smi.parent.mkdir()
    nvidia_smi.write_text(f"#!/bin/sh\nprintf '{os.getpid()}, 12390, GPU-aaa\\n'\n")
    nvidia_smi.chmod(0o755)
    log = tmp_path / "s.log"
    log.write_text("(EngineCore_DP0 pid=7) ERROR 11-28 03:17:11 [core.py:1510] ValueError: Free memory on device cuda:0"
                   " (15.41/15.77 GiB) on startup is less than desired GPU memory utilization (0.99, 15.61 GiB).\n")
    server = ServerProcess(fake("ok"), log, FAST)
    monkeypatch.setenv("PATH", str(nvidia_smi.parent))
    assert server.diagnose(1).failure_class.value == "infra"
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: the numbers alone decide
    assert server.diagnose(1).failure_class.value == "oom"
