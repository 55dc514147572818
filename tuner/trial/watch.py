"""Watching a server while its levels run, and judging it after each level: did it exit, stop answering, hang
with /health still green, or reject every request? The verdict is a failure class and one line of detail."""
from __future__ import annotations

import threading

import httpx

from tuner.contracts.results import LevelResult
from tuner.errors import ServerGone
from tuner.server.client import server_client
from tuner.server.failures import FailureClass
from tuner.server.process import ServerProcess

EXIT_WAIT_S = 3.0  # after failed requests, how long to give a dying server to exit before calling it unresponsive
WATCH_INTERVAL_S = 0.5
HEALTH_TIMEOUT_S = 5.0
PROBE_MIN_TIMEOUT_S = 15.0  # a 1-token request on starved cores can take seconds; a hung engine never answers
HEALTH_DOWN_CHECKS = 2  # consecutive definite "down" answers (refused, non-200) before the level is aborted


class ServerWatch:
    """Watches the server while levels run and sets `abort` the moment it exits or /health says it is down, so a
    level (warm-up included) ends within a second instead of at its timeout.

    A /health that does not answer in time is not evidence: a server streaming to many clients on busy cores may
    answer late. Only an exit, a refused connection or a non-200 answer count.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.abort = threading.Event()
        self.reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=HEALTH_TIMEOUT_S + 1)

    def _run(self) -> None:
        down = 0
        with server_client(HEALTH_TIMEOUT_S) as client:
            while not self._stop.wait(WATCH_INTERVAL_S):
                code = self.server.exit_code()
                if code is not None:
                    self._trip(f"the server exited with code {code}")
                    return
                answer = _health(client, self.server.base_url)
                down = down + 1 if answer not in (None, 200) else 0
                if down >= HEALTH_DOWN_CHECKS:
                    self._trip(f"/health answered {answer} {down} times in a row")
                    return

    def _trip(self, reason: str) -> None:
        self.reason = reason
        self.abort.set()


def _health(client: httpx.Client, base_url: str) -> int | str | None:
    """The /health status code, "refused" when nothing listens, None when it did not answer in time."""
    try:
        return client.get(f"{base_url}/health").status_code
    except ServerGone as exc:
        return None if exc.kind == "timeout" else "refused"


def failure_after_level(server: ServerProcess, level: LevelResult, watch: ServerWatch, model: str,
                        probe_timeout_s: float) -> tuple[FailureClass, str] | None:
    at = f"at concurrency {level.concurrency}"
    # Failed requests, a tripped watch or a last scrape the server did not answer: give a dying server the moment
    # it needs to exit, so the level is judged on what happened, not on who noticed first.
    unanswered_scrape = level.server is not None and not level.server.scraped
    suspicious = level.failed or watch.abort.is_set() or unanswered_scrape
    code = server.wait_exit(EXIT_WAIT_S) if suspicious else server.exit_code()
    if code is not None:
        cause = server.diagnose(code)
        return FailureClass.DIED_UNDER_LOAD, f"exit code {code} {at}: {cause.detail}"
    if watch.abort.is_set():
        return FailureClass.UNRESPONSIVE, f"{watch.reason} {at}; the level was stopped"
    if level.failed and not server.healthy():
        return FailureClass.UNRESPONSIVE, (f"{level.failed} of {level.requests} requests failed {at}"
                                                 f" ({_error_counts(level)}) and /health did not answer")
    if level.requests and not level.completed:
        if all(kind.startswith("http_4") for kind in level.errors):
            return FailureClass.INVALID_CONFIG, f"the server rejected every request {at} ({_error_counts(level)})"
        # A hung engine keeps /health green; a level in which nothing succeeds says more than /health does.
        return FailureClass.UNRESPONSIVE, (f"no request of {level.requests} succeeded {at}"
                                                 f" ({_error_counts(level)}), though /health answered")
    probe_s = max(probe_timeout_s, PROBE_MIN_TIMEOUT_S)
    if "timeout" in level.errors and not _completes(server.base_url, model, probe_s):
        return FailureClass.UNRESPONSIVE, (f"{level.errors['timeout']} requests timed out {at} and a 1-token"
                                                 " request got no answer afterwards,"
                                                 " though /health answered")
    return None


def _completes(base_url: str, model: str, timeout_s: float) -> bool:
    """Does the engine still produce a token? Asked once the level's own requests are gone (aborted by the client
    on timeout), so a healthy server answers at once."""
    body = {"model": model, "prompt": "ping", "max_tokens": 1, "temperature": 0.0}
    try:
        with server_client(timeout_s) as client:
            return client.post(f"{base_url}/v1/completions", json=body).status_code == 200
    except ServerGone:
        return False


def _error_counts(level: LevelResult) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in level.errors.items())
