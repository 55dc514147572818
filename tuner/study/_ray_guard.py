"""Ends the local Ray cluster's processes if the tuner driver is killed without cleaning up.

After SIGKILL of a driver that started a local Ray, Ray's own GCS, raylet and workers exit, but its dashboard
and runtime-env agents are orphaned and live on. The driver starts this guard with a pipe on its stdin and
sends the PIDs (with start times, against PID reuse) of the Ray processes it started; when the pipe reaches EOF
the guard waits for Ray to stop by itself, then SIGKILLs exactly those PIDs that remain. It never signals a
process group or a process by name.

    python -m tuner.study._ray_guard GRACE_S        (stdin: lines "PID START_TIME")
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after "(comm)": state ppid pgrp session ... starttime is index 19."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def session_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[3]) if fields else None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().decode(errors="replace").rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class OrphanGuard:
    """Driver side: start the guard, tell it which processes to end if this process dies."""

    def __init__(self, grace_s: float = 5.0) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "tuner.study._ray_guard", str(grace_s)], stdin=subprocess.PIPE,
                                      start_new_session=True)
        self._sent: set[int] = set()

    def refresh(self) -> None:
        """Send the driver's descendants not sent yet (Ray starts some of them lazily)."""
        if self._proc.stdin is None or self._proc.stdin.closed:
            return
        lines = []
        own_session = session_of(os.getpid())
        for pid in descendants(os.getpid()):
            stamp = start_time(pid)
            # Ray's processes stay in our session; servers run in sessions of their own under tuner.server._reaper,
            # which ends them itself (after its grace period), so they are not ours to kill here.
            if pid != self._proc.pid and pid not in self._sent and stamp and session_of(pid) == own_session:
                lines.append(f"{pid} {stamp}\n")
                self._sent.add(pid)
        if lines:
            self._proc.stdin.write("".join(lines).encode())
            self._proc.stdin.flush()

    def close(self) -> None:
        """After a clean ray.shutdown(): the guard finds nothing left to end, and exits."""
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


def main(grace_s: float) -> None:
    watched: dict[int, str] = {}
    for line in sys.stdin:  # ends at EOF: the driver closed the pipe or died
        pid, stamp = line.split()
        watched[int(pid)] = stamp
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(start_time(p) == s for p, s in watched.items()):
        time.sleep(0.2)
    for pid, stamp in watched.items():
        if start_time(pid) == stamp:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver must not end the guard
    main(float(sys.argv[1]))
