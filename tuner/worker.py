"""One trial on one slice: launch the server, run the load sweep, always tear the server down.

`run_trial` is a plain function; the study runs it inside a Ray task that reserves the study's resources.
It never raises for a server's failure: every outcome comes back as a TrialOutcome with a failure class, plus
the server log and the raw per-request records (secrets redacted) for the driver to keep as artifacts.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tuner.errors import ServerStartupFailed
from tuner.failures import FailureClass, classify
from tuner.loadgen import RequestRecord, Workload, run_level, vocab_size_of
from tuner.results import LevelResult, TrialResult
from tuner.server_config import ServerConfig, redact_text
from tuner.server_process import ServerProcess, last_lines
from tuner.spec import LoadSpec, Timeouts
from tuner.startup import prepare_compile_cache, startup_attrs

LOG_TAIL_LINES = 60
MAX_ARTIFACT_BYTES = 8 * 1024 * 1024  # a server log beyond this keeps only its end


@dataclass
class TrialOutcome:
    result: TrialResult
    server_log: str = ""
    records_jsonl: str = ""

    def artifacts(self) -> dict[str, str]:
        """File name -> text, for the driver to keep in Optuna's artifact store."""
        return {"server.log": self.server_log, "requests.jsonl": self.records_jsonl}


def planned_levels(load: LoadSpec) -> list[tuple[int, int]]:
    """(concurrency, repeat) in the order they are measured: the sweep, then the top level again."""
    sweep = [(c, 0) for c in load.concurrency]
    top = load.concurrency[-1]
    return sweep + [(top, r) for r in range(1, load.repeats)]


def run_trial(config: ServerConfig, load: LoadSpec, timeouts: Timeouts, log_path: str, host: str = "127.0.0.1",
              served_model: str | None = None) -> TrialOutcome:
    started = time.monotonic()
    server = ServerProcess(config, Path(log_path), timeouts, host=host)
    result = TrialResult(argv=[redact_text(a, config.env) for a in server.argv], env=config.redacted_env(),
                         log_path=log_path, levels_planned=len(load.concurrency), hostname=socket.gethostname())
    records: list[str] = []
    cache_before = prepare_compile_cache(config)
    try:
        server.start()
        result.startup_s = server.wait_ready()
        _sweep(server, config, load, result, records, served_model)
    except ServerStartupFailed as exc:
        result.failure_class, result.failure_detail = exc.failure_class, exc.detail
    finally:
        server.stop()
        log = redact_text(server.log_text(MAX_ARTIFACT_BYTES), config.env)
        result.log_tail = last_lines(log, LOG_TAIL_LINES)
        result.startup = startup_attrs(config, log, result.startup_s, cache_before)
        result.failure_detail = redact_text(result.failure_detail, config.env)
        result.wall_s = time.monotonic() - started
    return TrialOutcome(result=result, server_log=log, records_jsonl="".join(records))


def _sweep(server: ServerProcess, config: ServerConfig, load: LoadSpec, result: TrialResult,
           records_out: list[str], served_model: str | None) -> None:
    workload = Workload(model=served_model or config.model, input_len=load.input_len, output_len=load.output_len,
                        endpoint=load.endpoint, vocab_size=vocab_size_of(config.model))
    for concurrency, repeat in planned_levels(load):
        level, records = run_level(server.base_url, workload, concurrency, load.requests_per_level,
                                   load.warmup_rounds * concurrency if repeat == 0 else 0,
                                   load.request_timeout_s, load.level_timeout_s, repeat)
        records_out.extend(_record_lines(level, records))
        result.levels.append(level)
        failure = _failure_after_level(server, level)
        if failure is not None:
            result.failure_class, result.failure_detail = failure
            return


EXIT_WAIT_S = 3.0  # after failed requests, how long to give a dying server to exit before calling it unresponsive


def _failure_after_level(server: ServerProcess, level: LevelResult) -> tuple[str, str] | None:
    code = server.wait_exit(EXIT_WAIT_S) if level.failed else server.exit_code()
    if code is not None:
        cause = classify(code, server.log_text())
        return FailureClass.DIED_UNDER_LOAD.value, f"exit code {code} at concurrency {level.concurrency}: {cause.detail}"
    if level.failed and not server.healthy():
        return (FailureClass.UNRESPONSIVE.value,
                f"{level.failed} of {level.requests} requests failed at concurrency {level.concurrency}"
                f" ({', '.join(f'{k} {v}' for k, v in level.errors.items())}) and /health did not answer")
    return None


def _record_lines(level: LevelResult, records: list[RequestRecord]) -> list[str]:
    lines = []
    for record in records:
        row = asdict(record)
        row.update(concurrency=level.concurrency, repeat=level.repeat)
        lines.append(json.dumps(row) + "\n")
    return lines
