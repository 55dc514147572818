"""Failure classes and how they are told apart from a server's exit code and log.

Signatures come from vLLM's GPU, CPU and TPU (tpu-inference / JAX) backends. vLLM prints the root cause
above its final "Engine core initialization failed" line, so the whole tail is searched, by priority:
an infrastructure fault first (never the config's fault), then memory, then KV capacity, then config errors.
"""
from __future__ import annotations

import re
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
        r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError|Free memory on device .* is less than desired"
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

# Lines that mean startup has failed even if the process has not exited yet.
FATAL_MARKERS = re.compile(
    r"Engine core initialization failed|EngineDeadError|RuntimeError: Engine process failed to start"
    r"|Traceback \(most recent call last\)|" + "|".join(p.pattern for _, p in _SIGNATURES[:3]),
    re.IGNORECASE,
)


_LOG_PREFIX = re.compile(r"^\(\w+ pid=\d+\)\s+|^(?:ERROR|WARNING|INFO|DEBUG|CRITICAL)\s+(?:\d\d-\d\d [\d:.]+\s+)?\[[^\]]*\]\s+")


def _clean(line: str) -> str:
    """A log line without vLLM's "(EngineCore pid=N) ERROR 11-28 03:17:20 [file.py:12]" prefix."""
    line = line.strip()
    for _ in range(2):
        line = _LOG_PREFIX.sub("", line)
    return line[:300]


def classify(exit_code: int | None, log_text: str) -> Diagnosis:
    """Classify a server that stopped (or was stopped) during startup."""
    lines = log_text.splitlines()
    for failure_class, pattern in _SIGNATURES:
        for line in reversed(lines):
            if pattern.search(line):
                return Diagnosis(failure_class, _clean(line))
    if exit_code == 2:
        return Diagnosis(FailureClass.INVALID_CONFIG, "exit code 2 (command-line error)")
    if exit_code == -9:
        return Diagnosis(FailureClass.OOM, "killed by SIGKILL (host out-of-memory killer)")
    last = next((_clean(line) for line in reversed(lines) if line.strip()), "")
    return Diagnosis(FailureClass.CRASH, f"exit code {exit_code}: {last}")


def first_fatal_line(text: str) -> str | None:
    match = FATAL_MARKERS.search(text)
    return match.group(0) if match else None
