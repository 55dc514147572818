"""One trial on one slice: launch the server, run the load sweep, always tear the server down.

`run_trial` is a plain function; the study runs it inside a Ray task that reserves the study's resources.
It never raises for a server's failure: every outcome comes back as a TrialResult with a failure class.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from tuner.errors import ServerStartupFailed
from tuner.failures import FailureClass, classify
from tuner.loadgen import RequestRecord, Workload, run_level, vocab_size_of
from tuner.results import LevelResult, TrialResult
from tuner.server_config import ServerConfig
from tuner.server_process import ServerProcess, last_lines
from tuner.spec import LoadSpec, Timeouts

LOG_TAIL_LINES = 60


def planned_levels(load: LoadSpec) -> list[tuple[int, int]]:
    """(concurrency, repeat) in the order they are measured: the sweep, then the top level again."""
    sweep = [(c, 0) for c in load.concurrency]
    top = load.concurrency[-1]
    return sweep + [(top, r) for r in range(1, load.repeats)]


def run_trial(config: ServerConfig, load: LoadSpec, timeouts: Timeouts, log_path: str, host: str = "127.0.0.1",
              served_model: str | None = None) -> TrialResult:
    started = time.monotonic()
    server = ServerProcess(config, Path(log_path), timeouts, host=host)
    result = TrialResult(argv=server.argv, env=config.redacted_env(), log_path=log_path,
                         levels_planned=len(load.concurrency), hostname=socket.gethostname())
    try:
        server.start()
        result.startup_s = server.wait_ready()
        _sweep(server, config, load, result, Path(log_path).with_suffix(".requests.jsonl"), served_model)
    except ServerStartupFailed as exc:
        result.failure_class, result.failure_detail = exc.failure_class, exc.detail
    finally:
        server.stop()
        result.log_tail = last_lines(server.log_text(), LOG_TAIL_LINES)
        result.wall_s = time.monotonic() - started
    return result


def _sweep(server: ServerProcess, config: ServerConfig, load: LoadSpec, result: TrialResult,
           records_path: Path, served_model: str | None) -> None:
    workload = Workload(model=served_model or config.model, input_len=load.input_len, output_len=load.output_len,
                        endpoint=load.endpoint, vocab_size=vocab_size_of(config.model))
    with records_path.open("w") as records_file:
        for concurrency, repeat in planned_levels(load):
            level, records = run_level(server.base_url, workload, concurrency, load.requests_per_level,
                                       load.warmup_rounds * concurrency if repeat == 0 else 0,
                                       load.request_timeout_s, load.level_timeout_s, repeat)
            _save_records(records_file, level, records)
            result.levels.append(level)
            failure = _failure_after_level(server, level)
            if failure is not None:
                result.failure_class, result.failure_detail = failure
                return


def _failure_after_level(server: ServerProcess, level: LevelResult) -> tuple[str, str] | None:
    code = server.exit_code()
    if code is not None:
        cause = classify(code, server.log_text())
        return FailureClass.DIED_UNDER_LOAD.value, f"exit code {code} at concurrency {level.concurrency}: {cause.detail}"
    if level.completed == 0 and not _healthy(server.base_url):
        return FailureClass.UNRESPONSIVE.value, f"no request completed at concurrency {level.concurrency} and /health failed"
    return None


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _save_records(f, level: LevelResult, records: list[RequestRecord]) -> None:
    for record in records:
        row = asdict(record)
        row.update(concurrency=level.concurrency, repeat=level.repeat)
        f.write(json.dumps(row) + "\n")
