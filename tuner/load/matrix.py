"""A matrix of load points (concurrency x input length x output length) against one running server.

The caller launches the server once and passes its URL; every point is a measured level with its own warm-up,
so compilation or cache effects of one shape do not leak into the next point's figures. The matrix report of
`tuner study matrix` calls `run_matrix`; `tuner bench` plans its points with `grid` and `workload_for`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from tuner.contracts.matrix import MatrixPoint, grid
from tuner.contracts.results import LevelResult
from tuner.load.runner import LevelOptions, LoadPattern, measure_level
from tuner.load.workload import Workload

__all__ = ["MatrixPoint", "grid", "run_matrix", "workload_for"]


def workload_for(point: MatrixPoint, workload: Workload) -> Workload:
    """The workload of one point: its lengths (length ranges dropped: a matrix point is one shape)."""
    return replace(workload, input_len=point.input_len, output_len=point.output_len, input_len_max=None,
                   output_len_max=None, prefix_len=min(workload.prefix_len, point.input_len))


def run_matrix(base_url: str, workload: Workload, points: Iterable[MatrixPoint], requests_per_point: int | None = None,
               warmup_rounds: int = 1, options: LevelOptions | None = None,
               on_level: Callable[[MatrixPoint, LevelResult], None] | None = None) -> list[LevelResult]:
    """Measure each point in order; `requests_per_point` defaults to 4 x concurrency (at least 16).

    `workload` supplies the model, endpoint and prompt settings; each point overrides its lengths (length ranges of
    the workload are dropped: a matrix point is one shape)."""
    results = []
    for point in points:
        w = workload_for(point, workload)
        n = requests_per_point or max(16, 4 * point.concurrency)
        pattern = LoadPattern(concurrency=point.concurrency, requests=n, warmup=warmup_rounds * point.concurrency)
        level, _ = measure_level(base_url, w, pattern, options)
        results.append(level)
        if on_level:
            on_level(point, level)
    return results
