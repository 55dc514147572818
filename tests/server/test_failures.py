"""Failure classification from captured log text (GPU, CPU and TPU signatures)."""
from __future__ import annotations

import pytest

from tuner.server.failures import FailureClass, classify, first_fatal_line

ENGINE_FAILED = "(EngineCore pid=7) ERROR 11-28 03:19:17 [core.py:1] RuntimeError: Engine core initialization failed."

CASES = [
    ("(EngineCore pid=4393) ERROR 11-28 03:19:16 [core.py:1510] ValueError: To serve at least one request with the "
     "model's max seq len (16384), (0.02 GiB KV cache is needed, which is larger than the available KV cache memory "
     "(0.01 GiB).", 1, FailureClass.KV_CAPACITY),
    ("ValueError: To serve at least one request with the models's max seq len (32768), (3 GiB KV cache", 1,
     FailureClass.KV_CAPACITY),
    ("ValueError: The model's max seq len (65536) is larger than the maximum number of tokens that can be stored in "
     "KV cache (40000).", 1, FailureClass.KV_CAPACITY),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", 1, FailureClass.OOM),
    ("ValueError: Free memory on device (78.9/79.2 GiB) on startup is less than desired GPU memory utilization "
     "(0.999, 79.1 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.", 1,
     FailureClass.OOM),
    ("ValueError: Free memory on device (10.1/79.2 GiB) on startup is less than desired GPU memory utilization "
     "(0.9, 71.3 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.", 1,
     FailureClass.INFRA),
    ("ValueError: Available memory on node 0 (6.77/8.09 GiB) on startup is less than desired CPU memory utilization "
     "(0.92, 7.44 GiB).", 1, FailureClass.OOM),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", 1, FailureClass.OOM),
    ("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Error allocating device buffer: Attempting to allocate "
     "1.50G. That was not possible.", 1, FailureClass.OOM),
    ("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm.", 1, FailureClass.OOM),
    ("ValueError: total_hbm_used_gb=120.5 exceeds total_hbm_limit_cap_gb=115.2", 1, FailureClass.OOM),
    ("RuntimeError: TPU initialization failed: open(/dev/vfio/0): Device or resource busy", 1, FailureClass.INFRA),
    ("OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use", 1,
     FailureClass.INFRA),
    ("vllm serve: error: argument --max-num-seqs: invalid int value: 'lots'", 2, FailureClass.INVALID_CONFIG),
    ("pydantic_core._pydantic_core.ValidationError: 1 validation error for SchedulerConfig", 1,
     FailureClass.INVALID_CONFIG),
    ("Segmentation fault", -11, FailureClass.CRASH),
    ("", -9, FailureClass.OOM),
    ("", 2, FailureClass.INVALID_CONFIG),
]


@pytest.mark.parametrize("line, code, expected", CASES)
def test_classify(line, code, expected):
    log = "\n".join(["INFO starting", line, "Traceback (most recent call last):", ENGINE_FAILED])
    assert classify(code, log).failure_class is expected


def test_infra_wins_over_a_later_generic_error():
    log = "TPU initialization failed: open(/dev/vfio/0): Device or resource busy\nValueError: something invalid is not supported"
    assert classify(1, log).failure_class is FailureClass.INFRA


def test_detail_strips_log_prefix():
    detail = classify(1, CASES[0][0]).detail
    assert detail.startswith("ValueError: To serve at least one request")


def test_crash_detail_names_exit_code():
    assert classify(-11, "last words").detail == "exit code -11: last words"


def test_fatal_markers():
    assert first_fatal_line("INFO fine\n" + ENGINE_FAILED)
    assert first_fatal_line("INFO Loading weights took 0.01 seconds\nINFO Application startup complete.") is None


def test_only_infra_and_tuner_errors_are_not_the_configs_fault():
    blameless = {FailureClass.INFRA, FailureClass.TUNER_ERROR}
    assert not any(c.is_config_failure for c in blameless)
    assert all(c.is_config_failure for c in FailureClass if c not in blameless)


def test_free_memory_shortfall_with_other_processes_on_the_device_is_infra():
    line = ("ValueError: Free memory on device (78.9/79.2 GiB) on startup is less than desired GPU memory "
            "utilization (0.999, 79.1 GiB).")
    assert classify(1, line).failure_class is FailureClass.OOM  # the device was free: the share is too high
    diagnosis = classify(1, line, device_users=2)  # nvidia-smi saw other processes holding memory
    assert diagnosis.failure_class is FailureClass.INFRA and "2 other process" in diagnosis.detail


def test_class_comes_from_the_lines_above_the_fatal_event_not_an_early_mention():
    early = ["WARNING compile attempt 1: RESOURCE_EXHAUSTED: Error allocating device buffer, retrying smaller",
             "WARNING [Errno 98] address already in use for the metrics exporter; using another port"]
    filler = [f"INFO step {i}" for i in range(500)]
    root = ("(EngineCore pid=7) ERROR 11-28 03:19:16 [core.py:1510] ValueError: To serve at least one request with "
            "the model's max seq len (16384), (0.02 GiB KV cache is needed, which is larger than the available KV "
            "cache memory (0.01 GiB).")
    log = "\n".join([*early, *filler, "Traceback (most recent call last):", root, ENGINE_FAILED])
    assert classify(1, log).failure_class is FailureClass.KV_CAPACITY
    # and the reverse: an early KV message, a late real OOM
    log = "\n".join([root.replace("ERROR", "WARNING"), *filler, "torch.OutOfMemoryError: CUDA out of memory.",
                     ENGINE_FAILED])
    assert classify(1, log).failure_class is FailureClass.OOM


def test_a_traceback_alone_is_not_fatal():
    harmless = "\n".join(["INFO compiling", "Traceback (most recent call last):",
                          '  File "torch/_dynamo/convert_frame.py", line 1, in _compile',
                          "torch._dynamo.exc.Unsupported: graph break; falling back to eager", "INFO still compiling"])
    assert first_fatal_line(harmless) is None
