"""TPU failure signatures: JAX/XLA RESOURCE_EXHAUSTED variants and tpu-inference's HBM cap are `oom` (the config's
fault, penalized); a TPU held by another process (/dev/vfio busy, libtpu's lockfile) is `infra` (retried, never
penalized). Captured-style TPU log tails (tests/fixtures/tpu_logs) go through the fake server and ServerProcess,
the same path a real trial's startup failure takes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tuner.errors import ServerStartupFailed
from tuner.inputs.spec import Timeouts
from tuner.server.config import ServerConfig
from tuner.server.failures import FailureClass, classify, first_fatal_line
from tuner.server.process import ServerProcess

LOGS = Path(__file__).parents[1] / "fixtures" / "tpu_logs"
FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
FAST = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)

EXPECTED = {
    "oom_device_buffer.log": (FailureClass.OOM, "RESOURCE_EXHAUSTED: Error allocating device buffer"),
    "oom_compile_hbm.log": (FailureClass.OOM, "Ran out of memory in memory space hbm"),
    "oom_reserve_program.log": (FailureClass.OOM, "at the bottom of memory"),
    "oom_hbm_cap.log": (FailureClass.OOM, "exceeds total_hbm_limit_cap_gb"),
    "infra_vfio_busy.log": (FailureClass.INFRA, "/dev/vfio/0"),
    "infra_lockfile.log": (FailureClass.INFRA, "libtpu_lockfile"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_tpu_log_is_classified(name):
    expected_class, needle = EXPECTED[name]
    diagnosis = classify(1, (LOGS / name).read_text())
    assert diagnosis.failure_class is expected_class
    assert needle in diagnosis.detail
    assert not diagnosis.detail.startswith("(EngineCore")  # the vLLM prefix is stripped


@pytest.mark.parametrize("name", ["oom_compile_hbm.log", "oom_hbm_cap.log", "infra_vfio_busy.log",
                                  "infra_lockfile.log"])
def test_tpu_failure_through_the_fake_server(tmp_path, name):
    expected_class, needle = EXPECTED[name]
    config = ServerConfig(command=(sys.executable, FAKE), model="fake",
                          env={"FAKE_VLLM_MODE": f"exit:1:{LOGS / name}"})
    with ServerProcess(config, tmp_path / "server.log", FAST) as server, pytest.raises(ServerStartupFailed) as info:
        server.wait_ready()
    assert info.value.failure_class == expected_class.value
    assert needle in info.value.detail


def test_tpu_busy_is_never_the_configs_fault():
    assert not FailureClass.INFRA.is_config_failure
    assert FailureClass.OOM.is_config_failure


def test_infra_wins_over_the_follow_on_memory_error():
    # libtpu refusing the chips makes vLLM fall through to "No available memory": the cause is the busy TPU.
    text = (LOGS / "infra_lockfile.log").read_text()
    assert "No available memory" in text
    assert classify(1, text).failure_class is FailureClass.INFRA


@pytest.mark.parametrize("line", [
    "RuntimeError: Unable to initialize backend 'tpu': ABORTED: The TPU is already in use by process with pid 77.",
    "open(/dev/vfio/3): Device or resource busy",
    "E1128 libtpu: /dev/vfio/1 is busy",
])
def test_busy_variants_are_infra(line):
    assert classify(1, line).failure_class is FailureClass.INFRA


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fatal_marker_ends_the_startup_wait(name):
    # A hung TPU runtime must not cost the whole hour-long startup timeout: the fatal line ends the wait.
    assert first_fatal_line((LOGS / name).read_text()) is not None
