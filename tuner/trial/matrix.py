"""A matrix launch: one server, every (concurrency, input, output) point measured against it, judged after each
point like a sweep level (tuner.trial.watch), so a relaunch that dies or hangs is classified like any trial."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from tuner.contracts.matrix import MatrixPoint
from tuner.contracts.results import LevelResult, TrialResult
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.load.matrix import workload_for
from tuner.load.runner import LevelOptions, LoadPattern, measure_level
from tuner.load.workload import Workload
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.trial.run import run_launch
from tuner.trial.sweep_plan import TrialOutcome
from tuner.trial.watch import ServerWatch, failure_after_level

MeasuredPoint = tuple[MatrixPoint, LevelResult]


def run_matrix_launch(config: ServerConfig, points: Sequence[MatrixPoint], load: LoadSpec, timeouts: Timeouts,
                      log_path: str, host: str = "127.0.0.1", requests_per_point: int | None = None,
                      on_point: Callable[[MatrixPoint, LevelResult], None] | None = None,
                      ) -> tuple[TrialOutcome, list[MeasuredPoint]]:
    """Launch `config`, measure `points` in order (each warms up on its own shape), tear it down. The points
    measured before a failure are kept; the outcome carries the failure class."""
    measured: list[MeasuredPoint] = []

    def matrix(server: ServerProcess, result: TrialResult, records: list[str]) -> None:
        base = Workload(model=config.model, input_len=1, output_len=1, endpoint=load.endpoint)
        with ServerWatch(server) as watch:
            options = LevelOptions(request_timeout_s=load.request_timeout_s, level_timeout_s=load.level_timeout_s,
                                   abort=watch.abort)
            for point in points:
                n = requests_per_point or max(16, 4 * point.concurrency)
                pattern = LoadPattern(concurrency=point.concurrency, requests=n,
                                      warmup=load.warmup_rounds * point.concurrency)
                level, _ = measure_level(server.base_url, workload_for(point, base), pattern, options)
                result.levels.append(level)
                measured.append((point, level))
                if on_point:
                    on_point(point, level)
                failure = failure_after_level(server, level, watch, config.model, load.request_timeout_s)
                if failure is not None:
                    result.failure_class, result.failure_detail = failure
                    return

    outcome = run_launch(config, timeouts, log_path, host, len(points), matrix)
    return outcome, measured
