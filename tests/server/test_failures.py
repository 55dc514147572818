"""Failure classification from captured log text (GPU, CPU and TPU signatures)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.server.device import DeviceUser
from tuner.server.failures import CAUSE_WINDOW_LINES, FailureClass, classify, first_fatal_line

LOGS = Path(__file__).parents[1] / "fixtures" / "vllm_logs"

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
    assert classify(-11, "last words").detail == "the server killed by SIGSEGV (exit code -11); exit code -11: last words"
    assert classify(1, "last words").detail == "exit code 1: last words"


def test_fatal_markers():
    assert first_fatal_line("INFO fine\n" + ENGINE_FAILED)
    assert first_fatal_line("INFO Loading weights took 0.01 seconds\nINFO Application startup complete.") is None


def test_only_infra_setup_and_tuner_errors_are_not_the_configs_fault():
    blameless = {FailureClass.INFRA, FailureClass.TUNER_ERROR, FailureClass.SETUP_ERROR}
    assert not any(c.is_config_failure for c in blameless)
    assert all(c.is_config_failure for c in FailureClass if c not in blameless)


def test_free_memory_shortfall_with_other_processes_on_the_device_is_infra():
    line = ("ValueError: Free memory on device cuda:0 (78.9/79.2 GiB) on startup is less than desired GPU memory "
            "utilization (0.999, 79.1 GiB).")
    assert classify(1, line).failure_class is FailureClass.OOM  # the device was free: the share is too high
    assert classify(1, line, device_users=[]).failure_class is FailureClass.OOM  # nobody else on it either
    diagnosis = classify(1, line, device_users=[DeviceUser(4242, 12.1)])  # nvidia-smi saw another process
    assert diagnosis.failure_class is FailureClass.INFRA and "pid 4242" in diagnosis.detail


def test_another_process_with_a_sliver_of_memory_does_not_make_it_infra():
    # A monitoring agent or a display server holding a few MiB did not take the memory the config asked for.
    line = ("ValueError: Free memory on device cuda:0 (78.9/79.2 GiB) on startup is less than desired GPU memory "
            "utilization (0.999, 79.1 GiB).")
    assert classify(1, line, device_users=[DeviceUser(77, 0.05)]).failure_class is FailureClass.OOM
    # ... unless the driver will not say how much a process holds: then it may be the one.
    assert classify(1, line, device_users=[DeviceUser(77, None)]).failure_class is FailureClass.INFRA


@pytest.mark.parametrize("free, total, expected", [
    (15.21, 15.77, FailureClass.OOM),    # 0.56 GiB in use: the server's own CUDA context
    (14.9, 15.77, FailureClass.INFRA),   # 0.87 GiB: more than 5 % of the device
    (78.9, 79.2, FailureClass.OOM),
    (74.0, 79.2, FailureClass.INFRA),    # 5.2 GiB: more than 5 % of 79.2
    (75.5, 79.2, FailureClass.OOM),      # 3.7 GiB: less
])
def test_free_memory_shortfall_by_the_logs_numbers(free, total, expected):
    line = (f"ValueError: Free memory on device cuda:0 ({free}/{total} GiB) on startup is less than desired GPU memory"
            f" utilization (0.99, {0.99 * total:.2f} GiB).")
    assert classify(1, line).failure_class is expected


@pytest.mark.parametrize("name, expected, words", [
    ("gpu_free_memory_held_by_another_process.log", FailureClass.INFRA,
     "another process holds 11.9 of 15.77 GiB on the device: infrastructure, retried"),
    ("gpu_free_memory_share_too_high.log", FailureClass.OOM,
     "--gpu-memory-utilization 0.98 asks for 15.45 GiB, more than the 15.21 of 15.77 GiB the device has free"),
    ("cpu_free_memory_share_too_high.log", FailureClass.OOM,
     "--gpu-memory-utilization 0.92 (the share of host RAM on the CPU backend) asks for 7.44 GiB"),
])
def test_free_memory_shortfall_in_a_full_log_is_explained_in_words(name, expected, words):
    diagnosis = classify(1, (LOGS / name).read_text())
    assert diagnosis.failure_class is expected
    assert words in diagnosis.detail


def test_host_ram_held_by_a_server_not_yet_gone_is_infra():
    # On a CPU host the OS and tuner always hold some RAM (the 6.77/8.09 case above is the config's fault), but a
    # previous trial's server still holding most of it is not.
    line = ("ValueError: Available memory on node 0 (0.91/8.09 GiB) on startup is less than desired CPU memory "
            "utilization (0.5, 4.05 GiB).")
    assert classify(1, line).failure_class is FailureClass.INFRA
    # The host has no device process list: other processes always use RAM there, so that evidence is not used.
    line = line.replace("0.91/8.09", "6.77/8.09").replace("(0.5, 4.05", "(0.92, 7.44")
    assert classify(1, line, device_users=[DeviceUser(1, 3.0)]).failure_class is FailureClass.OOM


def test_kv_cache_allocation_shortfall_on_cpu_is_the_configs_fault():
    line = ("ValueError: Available memory on node 0 (6.5/8.09 GiB) on kv cache allocation is less than requested "
            "memory for kv (16.0 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory "
            "used by other processes.")
    diagnosis = classify(1, line)
    assert diagnosis.failure_class is FailureClass.OOM
    assert diagnosis.detail.startswith("--kv-cache-memory-bytes asks for 16 GiB")


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


def test_real_cpu_kv_capacity_capture():
    text = (LOGS / "cpu_kv_capacity.log").read_text()
    diagnosis = classify(1, text)
    assert diagnosis.failure_class is FailureClass.KV_CAPACITY
    assert diagnosis.detail.startswith("ValueError: To serve at least one request with the model's max seq len (16384)")
    assert first_fatal_line(text) == "EngineCore failed to start."


def test_harmless_early_mentions_do_not_decide_the_class_in_a_real_log():
    # c10d's "Address already in use" port probe and a compile that hit "Cannot allocate memory" and fell back,
    # then the KV-capacity ValueError just above "Engine core initialization failed".
    text = (LOGS / "cpu_kv_capacity_after_harmless_mentions.log").read_text()
    assert "Address already in use" in text and "Cannot allocate memory" in text
    assert classify(1, text).failure_class is FailureClass.KV_CAPACITY
    assert classify(None, text).failure_class is FailureClass.KV_CAPACITY  # hung instead of exiting: same answer


def test_reverse_early_port_and_kv_mentions_then_a_late_cuda_oom():
    text = (LOGS / "gpu_oom_after_harmless_mentions.log").read_text()
    assert "[Errno 98] Address already in use" in text and "larger than the available KV cache memory" in text
    diagnosis = classify(1, text)
    assert diagnosis.failure_class is FailureClass.OOM
    assert diagnosis.detail.startswith("torch.OutOfMemoryError: CUDA out of memory")


def test_an_unprefixed_early_mention_far_above_the_event_loses_to_the_cause_beside_it():
    # No log level to go by (a traceback printed straight to stderr): only the distance to the event tells.
    early = ["Traceback (most recent call last):", "OSError: [Errno 98] Address already in use"]
    filler = [f"INFO 11-28 03:17:20 [gpu_model_runner.py:1] step {i}" for i in range(CAUSE_WINDOW_LINES + 10)]
    kv = ("ValueError: To serve at least one request with the model's max seq len (16384), (0.02 GiB KV cache is "
          "needed, which is larger than the available KV cache memory (0.01 GiB).")
    assert classify(1, "\n".join([*early, *filler, kv, ENGINE_FAILED])).failure_class is FailureClass.KV_CAPACITY
    # the same mention right above the event is the cause (a taken port, or a busy device, makes what follows fail)
    assert classify(1, "\n".join([*filler, *early, kv, ENGINE_FAILED])).failure_class is FailureClass.INFRA
    # and with no signature near the event, the wider log is searched
    assert classify(1, "\n".join([*early, *filler, ENGINE_FAILED])).failure_class is FailureClass.INFRA


def test_signatures_in_info_and_warning_lines_never_decide():
    handled = ["(EngineCore_DP0 pid=7) WARNING 11-28 03:17:20 [gpu_model_runner.py:3] CUDA graph capture for size 512 "
               "hit torch.OutOfMemoryError; capturing sizes up to 256 only",
               "[W1128 03:17:20.716 socket.cpp:767] [c10d] The server socket has failed to bind to [::]:29500 "
               "(errno: 98 - Address already in use).",
               "/venv/lib/python3.12/site-packages/vllm/config.py:88: UserWarning: chunked prefill is not supported"]
    diagnosis = classify(1, "\n".join([*handled, "Segmentation fault (core dumped)"]))
    assert diagnosis.failure_class is FailureClass.CRASH
    assert diagnosis.detail == "exit code 1: Segmentation fault (core dumped)"
    assert first_fatal_line("\n".join(handled)) is None


def test_crash_detail_is_the_fatal_event_not_a_trailing_warning():
    text = re.sub(r"ValueError: To serve.*", "ValueError: a failure no signature knows",
                  (LOGS / "cpu_kv_capacity.log").read_text())
    assert classify(1, text).detail.startswith("exit code 1: RuntimeError: Engine core initialization failed.")


def test_memory_and_kv_errors_are_fatal_only_when_logged_as_errors():
    retried = (LOGS / "tpu_compile_retried_after_resource_exhausted.log").read_text()
    assert "RESOURCE_EXHAUSTED" in retried and first_fatal_line(retried) is None
    error = ("(EngineCore_DP0 pid=240) ERROR 05-13 10:09:42 [core.py:700] jaxlib._jax.XlaRuntimeError: "
             "RESOURCE_EXHAUSTED: Error allocating device buffer: Attempting to allocate 1.50G.")
    assert first_fatal_line(error).startswith("jaxlib._jax.XlaRuntimeError: RESOURCE_EXHAUSTED")


def test_a_traceback_alone_is_not_fatal():
    harmless = "\n".join(["INFO compiling", "Traceback (most recent call last):",
                          '  File "torch/_dynamo/convert_frame.py", line 1, in _compile',
                          "torch._dynamo.exc.Unsupported: graph break; falling back to eager", "INFO still compiling"])
    assert first_fatal_line(harmless) is None
    assert first_fatal_line((LOGS / "harmless_compile_traceback.log").read_text()) is None
