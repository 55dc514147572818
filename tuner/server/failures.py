"""Failure classes and how they are told apart from a server's exit code and log.

Signatures come from vLLM's GPU, CPU and TPU (tpu-inference / JAX) backends. The class comes from the lines nearest
the fatal event, because vLLM prints the root cause just above its final "Engine core initialization failed" (or
EngineDeadError) line: the last CAUSE_WINDOW_LINES message lines up to that event (or up to the end of the log when
the process exited without one) are searched first, and the signature nearest the event wins, except that an
infrastructure fault beats the memory errors it causes further down (a busy TPU makes vLLM fall through to "No
available memory"). Only when that block names no cause is the rest of the log searched, again nearest first.
Lines vLLM logged as INFO or WARNING (or glog I/W, Python warnings) never decide the class: they are things vLLM
handled, like a retried compile that ran out of memory or a port probe that found its port taken.

A traceback alone is not fatal (vLLM prints harmless ones during long compiles). Startup has failed when the
process exits, or when a fatal event or a signature logged at ERROR level appears (FATAL_MARKERS, first_fatal_line).

"Free memory on device ... is less than desired GPU memory utilization" is decided from evidence: the config's
fault when nobody else held the device's memory at startup (the requested share is simply too high),
infrastructure when someone did, by the log's own numbers or by the device's process list where the worker can
read it (tuner.server.device). The CPU backend's "Available memory on node N ..." gets the same rule with a
tolerance sized for a host, whose OS and tuner processes always hold some RAM.
"""
from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from tuner.contracts.outcomes import FailureClass
from tuner.server.device import DeviceUser


@dataclass(frozen=True)
class Diagnosis:
    failure_class: FailureClass
    detail: str  # the log line (or exit code, or the evidence) that decided it, in words a user understands


_SIGNATURES: list[tuple[FailureClass, re.Pattern[str]]] = [
    # A device held by another process (a previous trial's runtime not yet gone, another user): /dev/vfio/N busy,
    # libtpu's lockfile, a busy CUDA device, the port taken. Never the config's fault: retried, never penalized.
    (FailureClass.INFRA, re.compile(
        r"Address already in use|\[Errno 98\]|Device or resource busy|libtpu_lockfile"
        r"|TPU initialization failed|The TPU is already in use|/dev/vfio/\d+\)?:? (?:is )?(?:busy|in use)"
        r"|CUDA-capable device\(s\) is/are busy",
        re.IGNORECASE)),
    # TPU/JAX: every RESOURCE_EXHAUSTED variant (device buffer allocation, "XLA:TPU compile permanent error. Ran out
    # of memory in memory space hbm", "Error loading program ...: Attempting to reserve X at the bottom of memory")
    # and tpu-inference's own HBM cap check are out-of-memory, like CUDA's. vLLM's startup memory checks (GPU and CPU
    # spellings) are too, until the numbers say another process is to blame (_memory_shortfall_diagnosis).
    (FailureClass.OOM, re.compile(
        r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError"
        r"|(?:Free memory on device|Available memory on node \d+)\b.* is less than (?:desired|requested|the engine)"
        r"|exceed the desired GPU memory utilization"
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
_FATAL_WHEN_ERROR = {FailureClass.INFRA, FailureClass.OOM, FailureClass.KV_CAPACITY}

# The engine's own last words: the root cause is printed above them.
FATAL_EVENT = re.compile(r"Engine core initialization failed|EngineDeadError|RuntimeError: Engine process failed to start")
# Lines that end the startup wait even before the process exits: a fatal event, or the engine core's own first
# error line (printed ABOVE its root cause, so never the event classification counts back from). first_fatal_line
# also counts a memory / KV / infrastructure signature logged as an error. A traceback alone is none of these.
FATAL_MARKERS = re.compile(FATAL_EVENT.pattern + r"|EngineCore failed to start")
CAUSE_WINDOW_LINES = 40  # message lines (traceback frames not counted) above the fatal event searched first

# vLLM's startup memory checks (vllm/v1/worker/utils.py request_memory, cpu_worker.py), GPU and CPU spellings:
#   Free memory on device cuda:0 (10.1/79.2 GiB) on startup is less than desired GPU memory utilization (0.9, 71.28 GiB)
#   Available memory on node 0 (6.77/8.09 GiB) on startup is less than desired CPU memory utilization (0.92, 7.44 GiB)
#   Available memory on node 0 (1.2/8.09 GiB) on kv cache allocation is less than requested memory for kv (4.0 GiB)
_MEMORY_SHORTFALL = re.compile(
    r"(?P<where>Free memory on device(?: \S+)?|Available memory on node \d+) \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\)"
    r" on (?:startup|kv cache allocation) is less than"
    r" (?:desired (?:GPU|CPU) memory utilization \((?P<utilization>[\d.]+), |requested memory for kv \()"
    r"(?P<wanted>[\d.]+)")
# Memory in use at startup beyond max(share of the total, GiB) means another process holds it. A GPU with nothing
# else on it shows only a little in use (the server's own CUDA context). A host always has its OS, the tuner and
# its Ray workers in RAM, and that share does not go away on a retry, so it gets a wider margin.
DEVICE_TOLERANCE = (0.05, 0.5)
HOST_TOLERANCE = (0.25, 2.0)


@dataclass(frozen=True)
class _LogLine:
    text: str  # without vLLM's "(EngineCore_DP0 pid=N) ERROR 11-28 03:17:20 [core.py:708] " prefix
    level: str | None  # "error", "handled" (INFO/WARNING/DEBUG: something vLLM dealt with), or None (no level)

    @property
    def may_be_a_cause(self) -> bool:
        return self.level != "handled"


_PROCESS_PREFIX = re.compile(r"^\([\w.-]+ pid=\d+\) ")
_VLLM_LEVEL = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (?:\d\d-\d\d [\d:.]+ )?\[[^\]]*\] ?")
_GLOG_LEVEL = re.compile(r"^\[?([IWEF])\d{4} ")  # absl/glog/c10d: "E1128 ...", "[W1128 08:41:00.71 socket.cpp:1] ..."
_PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")
_LEVELS = {"DEBUG": "handled", "INFO": "handled", "WARNING": "handled", "ERROR": "error", "CRITICAL": "error",
           "I": "handled", "W": "handled", "E": "error", "F": "error"}


def _parse(line: str) -> _LogLine:
    text = _PROCESS_PREFIX.sub("", line.rstrip())
    if match := _VLLM_LEVEL.match(text):
        return _LogLine(text[match.end():], _LEVELS[match.group(1)])
    if match := _GLOG_LEVEL.match(text):
        return _LogLine(text, _LEVELS[match.group(1)])
    if _PYTHON_WARNING.match(text):
        return _LogLine(text, "handled")
    return _LogLine(text, None)


def _message_lines(log_text: str) -> list[_LogLine]:
    """The log's lines that say something: not blank, not a traceback frame or its source line (indented)."""
    parsed = (_parse(line) for line in log_text.splitlines())
    return [line for line in parsed if line.text and not line.text[0].isspace()]


def _signature(text: str) -> FailureClass | None:
    return next((failure_class for failure_class, pattern in _SIGNATURES if pattern.search(text)), None)


def classify(exit_code: int | None, log_text: str, device_users: Sequence[DeviceUser] | None = None) -> Diagnosis:
    """Why a server stopped (or was stopped: exit_code None), from its exit code and the end of its log.

    `device_users`: processes outside the server's own group holding memory on its device, when the worker could
    read the device's process list (tuner.server.device.other_device_users); None when it could not tell.
    """
    lines = _message_lines(log_text)
    cause = _root_cause(lines)
    if cause is not None:
        failure_class, text = cause
        if shortfall := _MEMORY_SHORTFALL.search(text):
            return _memory_shortfall_diagnosis(shortfall, device_users)
        return Diagnosis(failure_class, text[:300])
    if exit_code == 2:
        return Diagnosis(FailureClass.INVALID_CONFIG, "exit code 2 (command-line error)")
    if exit_code == -9:
        return Diagnosis(FailureClass.OOM, "killed by SIGKILL (host out-of-memory killer)")
    killed = signal_death(exit_code, log_text)
    return Diagnosis(FailureClass.CRASH, (f"{killed}; " if killed else "") + f"exit code {exit_code}:"
                     f" {_last_words(lines)}"[:300])


# vLLM's engine reports a worker that a signal ended: "Worker proc VllmWorker-0 died unexpectedly (exit code: -4)".
_WORKER_DIED = re.compile(r"(?:Worker proc|process) (?P<who>[\w.-]+) died unexpectedly\W+exit code:? (?P<code>-\d+)")


def _killed(exit_code: int | None, log_text: str) -> tuple[str, int] | None:
    """(who, exit code) of the process a signal ended: the engine's worker as the log reports it, else the server
    itself by its exit status; None when no signal ended anything."""
    found = _WORKER_DIED.search(log_text)
    if found is not None:
        return f"worker {found.group('who')}", int(found.group("code"))
    if exit_code is not None and exit_code < 0:
        return "the server", exit_code
    return None


def signal_death(exit_code: int | None, log_text: str) -> str:
    """Which process a signal ended, in words ("worker VllmWorker-0 killed by SIGILL (exit code -4)"); "" when
    none did. The API server itself often exits 0 after its engine's worker died: the worker's signal is the
    evidence."""
    killed = _killed(exit_code, log_text)
    return "" if killed is None else f"{killed[0]} killed by {_signal_name(killed[1])} (exit code {killed[1]})"


def killing_signal(exit_code: int | None, log_text: str) -> str:
    """The signal's name ("SIGILL") that ended the server or its engine's worker; "" when none did."""
    killed = _killed(exit_code, log_text)
    return "" if killed is None else _signal_name(killed[1])


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _root_cause(lines: list[_LogLine]) -> tuple[FailureClass, str] | None:
    event = _fatal_event_index(lines)
    start = max(0, event - CAUSE_WINDOW_LINES)
    return _cause_near_event(lines[start:event + 1]) or _nearest_cause(lines[:start])


def _fatal_event_index(lines: list[_LogLine]) -> int:
    """The last fatal event's line; the end of the log when the process exited (or hung) without printing one."""
    return next((i for i in range(len(lines) - 1, -1, -1)
                 if lines[i].may_be_a_cause and FATAL_EVENT.search(lines[i].text)), len(lines))


def _cause_near_event(block: list[_LogLine]) -> tuple[FailureClass, str] | None:
    found = [(failure_class, line.text) for line in block
             if line.may_be_a_cause and (failure_class := _signature(line.text)) is not None]
    infra = [cause for cause in found if cause[0] is FailureClass.INFRA]
    # A busy device makes everything after it fail too (JAX falls back, memory checks fail): the busy device is the
    # cause. Otherwise the signature nearest the event is the one vLLM reported as the root cause.
    if infra:
        return infra[-1]
    return found[-1] if found else None


def _nearest_cause(lines: list[_LogLine]) -> tuple[FailureClass, str] | None:
    for line in reversed(lines):
        if line.may_be_a_cause and (failure_class := _signature(line.text)) is not None:
            return failure_class, line.text
    return None


def _last_words(lines: list[_LogLine]) -> str:
    """The line that best says how the process ended: its fatal event, else its last line that was not a notice."""
    event = _fatal_event_index(lines)
    if event < len(lines):
        return lines[event].text
    return next((line.text for line in reversed(lines) if line.may_be_a_cause), lines[-1].text if lines else "")


def _memory_shortfall_diagnosis(shortfall: re.Match[str], device_users: Sequence[DeviceUser] | None) -> Diagnosis:
    free, total, wanted = (float(shortfall.group(name)) for name in ("free", "total", "wanted"))
    held = total - free
    on_host = shortfall.group("where").startswith("Available memory on node")
    share, floor_gib = HOST_TOLERANCE if on_host else DEVICE_TOLERANCE
    tolerance = max(share * total, floor_gib)
    utilization = shortfall.group("utilization")
    if on_host:
        if held > tolerance:
            return Diagnosis(FailureClass.INFRA, f"other processes hold {held:.1f} of {total:g} GiB of host RAM, more"
                             " than a host normally does (a server not yet gone?): infrastructure, retried")
        if utilization is None:
            return Diagnosis(FailureClass.OOM, f"--kv-cache-memory-bytes asks for {wanted:g} GiB but only {free:g} of"
                             f" {total:g} GiB of host RAM is free: lower it")
        return Diagnosis(FailureClass.OOM, f"--gpu-memory-utilization {utilization} (the share of host RAM on the CPU"
                         f" backend) asks for {wanted:g} GiB but only {free:g} of {total:g} GiB is free: lower it, or"
                         " set --kv-cache-memory-bytes")
    others = [user for user in device_users or () if user.used_gib is None or user.used_gib > 0]
    others_gib = sum(user.used_gib or 0 for user in others)
    if others and (others_gib > tolerance or any(user.used_gib is None for user in others)):
        pids = ", ".join(str(user.pid) for user in others[:5])
        return Diagnosis(FailureClass.INFRA, f"another process (pid {pids}) holds memory on the device"
                         f" ({held:.1f} of {total:g} GiB in use at startup): infrastructure, retried")
    if held > tolerance:
        return Diagnosis(FailureClass.INFRA, f"another process holds {held:.1f} of {total:g} GiB on the device:"
                         " infrastructure, retried")
    return Diagnosis(FailureClass.OOM, f"--gpu-memory-utilization {utilization} asks for {wanted:g} GiB, more than"
                     f" the {free:g} of {total:g} GiB the device has free: lower it")


def needs_device_users(log_text: str) -> bool:
    """Whether classifying this log would use the device's process list (vLLM's GPU startup memory check failed)."""
    return "Free memory on device" in log_text


def first_fatal_line(text: str) -> str | None:
    """The first line of `text` that means startup has failed, without vLLM's prefix; None if there is none."""
    for raw in text.splitlines():
        line = _parse(raw)
        if line.may_be_a_cause and FATAL_MARKERS.search(line.text):
            return line.text
        if line.level == "error" and _signature(line.text) in _FATAL_WHEN_ERROR:
            return line.text
    return None
