"""One vLLM server process: launched on a free port in its own process group, watched until ready, torn down.

    with ServerProcess(config, log_path, timeouts) as server:
        server.wait_ready()          # raises ServerStartupFailed with a failure class
        ... load server.base_url ...
    # leaving the block always ends the whole process group

The command runs under tuner.server._reaper, which ends the group if this process dies without cleaning up.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tuner.errors import ServerGone, ServerStartupFailed
from tuner.inputs.spec import Timeouts
from tuner.server.client import server_client
from tuner.server.config import ServerConfig
from tuner.server.device import other_device_users
from tuner.server.failures import Diagnosis, FailureClass, classify, first_fatal_line, needs_device_users

POLL_S = 0.25
TAIL_BYTES = 256 * 1024
KILL_WAIT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    # Another process may take the port before the server binds it; that shows as "Address already in use",
    # an infra failure, and the trial is retried on a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def last_lines(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


class ServerProcess:
    def __init__(self, config: ServerConfig, log_path: Path, timeouts: Timeouts, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.timeouts = timeouts
        self.host = host
        self.port = port or free_port(host)
        self.argv = config.argv(host, self.port)
        self._proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.config.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tuner.server._reaper", str(self.timeouts.shutdown_grace_s),
                 "--nice", str(self.config.nice), "--", *self.argv],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # own session and process group: signals reach the server and its children
            )
        self.started_at = time.monotonic()

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code if the server ends within `timeout_s`, else None (it is still running)."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self, max_bytes: int = TAIL_BYTES) -> str:
        """The end of the server's log (enough for classification by default)."""
        return read_tail(self.log_path, max_bytes)

    def healthy(self) -> bool:
        with server_client(5.0) as client:
            return self._healthy(client)

    def wait_ready(self, on_lines: Callable[[list[str]], None] | None = None) -> float:
        """Block until GET /health answers 200; return the startup time in seconds. `on_lines`: handed each batch
        of log lines printed while starting (the live phase display).

        Watches the process and its log while waiting, so a fatal startup error ends the wait within seconds. Fatal
        is the process exiting or a fatal line in the log (failures.first_fatal_line), never a traceback alone:
        vLLM prints harmless ones during long compiles and goes on to serve.
        """
        assert self._proc is not None and self.started_at is not None, "start() first"
        deadline = self.started_at + self.timeouts.startup_s
        fatal_seen_at: float | None = None
        offset = 0
        with server_client(2.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    time.sleep(POLL_S)  # let the last log lines land
                    diagnosis = self.diagnose(code)
                    raise ServerStartupFailed(diagnosis.failure_class, diagnosis.detail)
                if self._healthy(client):
                    self.startup_s = time.monotonic() - self.started_at
                    return self.startup_s
                offset, fresh = self._read_new_lines(offset)
                if on_lines is not None and fresh:
                    on_lines(fresh.splitlines())
                if fatal_seen_at is None and first_fatal_line(fresh):
                    fatal_seen_at = time.monotonic()
                now = time.monotonic()
                if fatal_seen_at is not None and now - fatal_seen_at > self.timeouts.fatal_log_grace_s:
                    diagnosis = self.diagnose(None)
                    raise ServerStartupFailed(diagnosis.failure_class, diagnosis.detail)
                if now > deadline:
                    raise ServerStartupFailed(
                        FailureClass.STARTUP_TIMEOUT,
                        f"/health did not answer 200 within {self.timeouts.startup_s:g} s",
                    )
                time.sleep(POLL_S)

    def diagnose(self, exit_code: int | None) -> Diagnosis:
        """Why the server stopped, from its log and, when vLLM found less free device memory than it was told to
        take, from who else holds memory on the server's GPUs (another process: infrastructure, not the config)."""
        log = self.log_text()
        users = None
        if needs_device_users(log):
            visible = {**os.environ, **self.config.env}.get("CUDA_VISIBLE_DEVICES")
            users = other_device_users(own_pgid=self.pid, visible_devices=visible)  # the reaper leads the group
        return classify(exit_code, log, device_users=users)

    def _healthy(self, client: httpx.Client) -> bool:
        try:
            return client.get(f"{self.base_url}/health").status_code == 200
        except ServerGone:
            return False

    def _read_new_lines(self, offset: int) -> tuple[int, str]:
        """The complete lines written after `offset`, and the offset after them. A line still being written waits
        for the next call: a fatal line is judged whole, with the level prefix that says whether it is an error."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset, ""
        complete = data[:data.rfind(b"\n") + 1]
        return offset + len(complete), complete.decode("utf-8", errors="replace")

    def stop(self) -> int | None:
        """End the whole process group: SIGTERM, grace period, SIGKILL. Idempotent. Returns the exit code."""
        if self._proc is None:
            return None
        pgid = self._proc.pid  # the reaper leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.timeouts.shutdown_grace_s
        while time.monotonic() < deadline and _group_alive(pgid, self._proc):
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S  # SIGKILL is delivered asynchronously: wait until it took
        while time.monotonic() < deadline and _group_alive(pgid, self._proc):
            time.sleep(0.05)
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            code = None
        if self._proc.stdin:
            self._proc.stdin.close()
        return code

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int, leader: subprocess.Popen) -> bool:
    leader.poll()  # reap the leader if it exited, so a zombie does not count as alive
    return bool(live_group_members(pgid))


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group `pgid` that are not zombies (zombies hold no memory or devices)."""
    if not os.path.isdir("/proc"):  # pragma: no cover - non-Linux: fall back to the kernel's answer
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members
