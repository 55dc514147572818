"""Who else holds GPU memory (nvidia-smi), the evidence for "less free memory than requested" being infrastructure.

nvidia-smi is replaced by a script on PATH that prints what the real one prints."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuner.server.device import DeviceUser, other_device_users, parse_compute_apps

NOT_A_PID_HERE = 99_999_999  # above Linux's pid_max: a process in another PID namespace


def test_parse_compute_apps():
    text = "4242, 12390, GPU-aaa\n77, [N/A], GPU-bbb\nNo running processes found\n\n"
    assert parse_compute_apps(text) == [DeviceUser(4242, 12390 / 1024, "GPU-aaa"), DeviceUser(77, None, "GPU-bbb")]


def test_no_nvidia_smi_means_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert other_device_users(own_pgid=os.getpgid(0)) is None


@pytest.fixture
def own_group():
    """A stand-in for the server: a process leading its own group, as ServerProcess starts it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc.pid
    proc.kill()
    proc.wait()


def fake_nvidia_smi(tmp_path, monkeypatch, apps: str) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\ncase \"$1\" in\n"
                      "  --query-gpu=*) printf '0, GPU-aaa\\n1, GPU-bbb\\n' ;;\n"
                      f"  *) printf '{apps}' ;;\nesac\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_only_other_visible_processes_count(tmp_path, monkeypatch, own_group):
    me = os.getpid()  # the test process: someone else as far as the server's group is concerned
    fake_nvidia_smi(tmp_path, monkeypatch,
                    f"{own_group}, 900, GPU-aaa\\n{me}, 12390, GPU-aaa\\n{NOT_A_PID_HERE}, 4000, GPU-aaa\\n")
    assert other_device_users(own_pgid=own_group) == [DeviceUser(me, 12390 / 1024, "GPU-aaa")]


def test_processes_on_gpus_the_server_cannot_see_do_not_count(tmp_path, monkeypatch, own_group):
    # Eight trials on an eight-GPU node: the neighbours' servers are not on this server's GPU.
    me = os.getpid()
    fake_nvidia_smi(tmp_path, monkeypatch, f"{me}, 12390, GPU-bbb\\n")
    assert other_device_users(own_pgid=own_group, visible_devices="0") == []
    assert other_device_users(own_pgid=own_group, visible_devices="1") == [DeviceUser(me, 12390 / 1024, "GPU-bbb")]
    assert other_device_users(own_pgid=own_group, visible_devices="GPU-aaa") == []
    assert len(other_device_users(own_pgid=own_group, visible_devices=None)) == 1  # all GPUs are the server's
