"""Failure classes and how they are told apart from a server's exit code and log.

Signatures come from vLLM's GPU, CPU and TPU (tpu-inference / JAX) backends. vLLM prints the root cause just above
its final "Engine core initialization failed" (or EngineDeadError) line, so the class comes from the lines nearest
that fatal event: within that block, an infrastructure fault first (never the config's fault), then memory, then
KV capacity, then config errors. An earlier, harmless mention of any of them (a warning, a retried compile) in a
long log does not decide the class. A traceback alone is not fatal: vLLM prints non-fatal ones during long compiles.

"Free memory on device ... is less than desired GPU memory utilization" is decided from evidence: the config's
fault when the device was free at startup (the requested share is simply too high), infrastructure when another
process held memory (by the log's own numbers, or by the device's process list where the worker can read it).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum


class FailureClass(str, Enum):
    OOM = "oom"
    KV_CAPACITY = "kv_capacity"
    INVALID_CONFIG = "invalid_config"
    CRASH = "crash"
    STARTUP_TIMEOUT = "startup_timeout"
    DIED_UNDER_LOAD = "died_under_load"
    UNRESPONSIVE = "unresponsive"
    INFRA = "infra"
    TUNER_ERROR = "tuner_error"  # an exception in tuner's own code: a bug to report, never the config's fault

    @property
    def is_config_failure(self) -> bool:
        """The configuration is to blame: penalize the trial so the sampler learns the boundary."""
        return self not in (FailureClass.INFRA, FailureClass.TUNER_ERROR)


@dataclass(frozen=True)
class Diagnosis:
    failure_class: FailureClass
    detail: str  # the log line (or exit code) that decided it


_SIGNATURES: list[tuple[FailureClass, re.Pattern[str]]] = [
    # A TPU held by another process (a previous trial's runtime not yet gone, another user): /dev/vfio/N busy,
    # libtpu's lockfile, "already in use". Never the config's fault: the trial is retried, never penalized.
    (FailureClass.INFRA, re.compile(
        r"Address already in use|\[Errno 98\]|Device or resource busy|libtpu_lockfile"
        r"|TPU initialization failed|The TPU is already in use|/dev/vfio/\d+\)?:? (?:is )?(?:busy|in use)"
        r"|CUDA-capable device\(s\) is/are busy",
        re.IGNORECASE)),
    # TPU/JAX: every RESOURCE_EXHAUSTED variant (device buffer allocation, "XLA:TPU compile permanent error. Ran out
    # of memory in memory space hbm", "Error loading program ...: Attempting to reserve X at the bottom of memory")
    # and tpu-inference's own HBM cap check are out-of-memory, like CUDA's.
    (FailureClass.OOM, re.compile(
        r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError"
        r"|(?:Free memory on device|Available memory on node \d+) .* is less than desired"
        r"|RESOURCE_EXHAUSTED|Ran out of memory in memory space (?:hbm|vmem)|total_hbm_used_gb=.*exceeds"
        r"|exceeds total_hbm_limit_cap_gb|Attempting to reserve .* at the bottom of memory"
        r"|No available memory for the cache blocks|Cannot allocate memory|MemoryError")),
    (FailureClass.KV_CAPACITY, re.compile(
        r"To serve at least one request with the models?'?s? max seq len"
        r"|larger than the maximum number of tokens that can be stored in KV cache"
        r"|is larger than the available KV cache memory|KV cache is needed, which is larger than")),
    (FailureClass.INVALID_CONFIG, re.compile(
        r"error: argument |error: unrecognized arguments|: error: |ValidationError|Value error,"
        r"|is not supported|NotImplementedError|must be (?:greater|less|a multiple|divisible)"
        r"|should be (?:greater|less)|invalid choice|Unsupported .*configuration")),
]

# The engine's own last words: the fatal event the root cause is printed above.
FATAL_EVENT = re.compile(r"Engine core initialization failed|EngineDeadError|RuntimeError: Engine process failed to start")
# Lines that mean startup has failed even if the process has not exited yet (a traceback alone does not).
FATAL_MARKERS = re.compile(FATAL_EVENT.pattern + "|" + "|".join(p.pattern for _, p in _SIGNATURES[:3]), re.IGNORECASE)
CAUSE_WINDOW_LINES = 80  # how far above the fatal event vLLM's root cause is looked for first

# vLLM's startup memory check, GPU and CPU spellings: (free / total GiB) ... (utilization, requested GiB)
_FREE_MEMORY = re.compile(r"(?:Free memory on device|Available memory on node \d+) \(([\d.]+)/([\d.]+) GiB\) on startup"
                          r" is less than desired (GPU|CPU) memory utilization \(([\d.]+), ([\d.]+) GiB\)")
HELD_BY_OTHERS_GIB = 0.5  # memory in use at startup beyond this (or 5 % of the device) means another process


_LOG_PREFIX = re.compile(r"^\(\w+ pid=\d+\)\s+|^(?:ERROR|WARNING|INFO|DEBUG|CRITICAL)\s+(?:\d\d-\d\d [\d:.]+\s+)?\[[^\]]*\]\s+")


def _clean(line: str) -> str:
    """A log line without vLLM's "(EngineCore pid=N) ERROR 11-28 03:17:20 [file.py:12]" prefix."""
    line = line.strip()
    for _ in range(2):
        line = _LOG_PREFIX.sub("", line)
    return line[:300]


def classify(exit_code: int | None, log_text: str, device_users: int | None = None) -> Diagnosis:
    """Classify a server that stopped (or was stopped). `device_users`: other processes holding device memory, when
    the worker could read the device's process list (None: unknown)."""
    lines = log_text.splitlines()
    event = next((i for i in range(len(lines) - 1, -1, -1) if FATAL_EVENT.search(lines[i])), len(lines) - 1)
    window = lines[max(0, event - CAUSE_WINDOW_LINES): event + 1]
    found = _by_priority(window) or _nearest(lines[:max(0, event - CAUSE_WINDOW_LINES)])
    if found is not None:
        failure_class, line = found
        if failure_class is FailureClass.OOM and (memory := _FREE_MEMORY.search(line)):
            return _free_memory_diagnosis(memory, device_users)
        return Diagnosis(failure_class, _clean(line))
    if exit_code == 2:
        return Diagnosis(FailureClass.INVALID_CONFIG, "exit code 2 (command-line error)")
    if exit_code == -9:
        return Diagnosis(FailureClass.OOM, "killed by SIGKILL (host out-of-memory killer)")
    last = next((_clean(line) for line in reversed(lines) if line.strip()), "")
    return Diagnosis(FailureClass.CRASH, f"exit code {exit_code}: {last}")


def _by_priority(lines: list[str]) -> tuple[FailureClass, str] | None:
    """The highest-priority signature in a block of lines (its line nearest the end)."""
    for failure_class, pattern in _SIGNATURES:
        for line in reversed(lines):
            if pattern.search(line):
                return failure_class, line
    return None


def _nearest(lines: list[str]) -> tuple[FailureClass, str] | None:
    """The signature nearest the end of `lines`, whatever its class."""
    for line in reversed(lines):
        for failure_class, pattern in _SIGNATURES:
            if pattern.search(line):
                return failure_class, line
    return None


def _free_memory_diagnosis(memory: re.Match[str], device_users: int | None) -> Diagnosis:
    free, total, utilization, wanted = (float(memory.group(i)) for i in (1, 2, 4, 5))
    kind = memory.group(3)
    held = total - free
    if kind == "CPU":
        # Host RAM is always shared with the OS: asking for a fraction of all of it is the config's fault.
        return Diagnosis(FailureClass.OOM, f"vLLM's CPU backend asked for {wanted:g} GiB ({utilization:g} of host RAM)"
                         f" but {free:g} of {total:g} GiB were free; set --kv-cache-memory-bytes")
    if device_users:
        return Diagnosis(FailureClass.INFRA, f"{device_users} other process(es) held device memory at startup"
                         f" ({held:.1f} of {total:g} GiB in use): infrastructure, retried")
    if held > max(HELD_BY_OTHERS_GIB, 0.05 * total):
        return Diagnosis(FailureClass.INFRA, f"{held:.1f} of {total:g} GiB of device memory were already in use at"
                         " startup (another process): infrastructure, retried")
    return Diagnosis(FailureClass.OOM, f"--gpu-memory-utilization {utilization:g} asks for {wanted:g} GiB but the"
                     f" device had {free:g} of {total:g} GiB free: lower it")


def device_memory_users() -> int | None:
    """Processes holding GPU memory, from nvidia-smi when the worker has it (None: no way to tell here)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in out.splitlines() if line.strip())


def first_fatal_line(text: str) -> str | None:
    match = FATAL_MARKERS.search(text)
    return match.group(0) if match else None
