"""Runs a server command and guarantees it dies with its parent.

Started by ServerProcess as the leader of a new process group:

    python -m tuner.server._reaper GRACE_S [--nice N] -- ARGV...

The server and every process it forks stay in that group. The parent holds the write end of our stdin; when
the parent dies for any reason (SIGKILL included, which no handler can catch), stdin reaches EOF and the whole
group is terminated: SIGTERM, GRACE_S seconds, then SIGKILL. Our own exit status mirrors the server's.

With --nice N the server yields the CPU to tuner's load client: the niceness is inherited by every process
the server starts, and on Linux with autogroup (where niceness counts only inside a session) the session's
own scheduling group gets it too. Raising niceness needs no privilege.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time


def _terminate_group(child: subprocess.Popen, grace_s: float) -> None:
    # Our own SIGTERM handler (set in main) ignores the group-wide SIGTERM, so we live to send the SIGKILL.
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # ends the group, this process included


_parent_gone = threading.Event()


def _watch_parent(child: subprocess.Popen, grace_s: float) -> None:
    try:
        sys.stdin.buffer.read()
    except OSError:
        pass
    _parent_gone.set()
    _terminate_group(child, grace_s)


def _step_back(nice: int) -> None:
    if nice <= 0:
        return
    os.nice(nice)
    try:  # this session's CPU scheduling group; absent without CONFIG_SCHED_AUTOGROUP
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass


def main(argv: list[str]) -> int:
    grace_s = float(argv[1])
    options, command = argv[2:argv.index("--")], argv[argv.index("--") + 1:]
    _step_back(int(options[options.index("--nice") + 1]) if "--nice" in options else 0)
    # A group-wide SIGTERM from ServerProcess.stop() reaches the server directly; we stay alive to report its exit.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    watcher = threading.Thread(target=_watch_parent, args=(child, grace_s), daemon=True)
    watcher.start()
    code = child.wait()
    if _parent_gone.is_set():
        watcher.join()  # its SIGKILL of the whole group ends this process too; exiting first would spare the rest
    if code < 0:  # killed by a signal: die by the same one, so the parent sees the same status
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    # os._exit: a normal interpreter shutdown would abort on the watcher thread still blocked reading stdin.
    os._exit(main(sys.argv))
