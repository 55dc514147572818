"""From what a trial measured to the two objectives Optuna sees, plus a feasibility constraint.

peak throughput  the best output tok/s over the sweep's levels (median of the repeats where a level was repeated)

stability        a score in [0, 1], the product of four measured components (each in [0, 1]):
    success      requests that succeeded / requests sent, over every measured level
    survival     levels the server lived through / levels planned
    consistency  slowest / fastest output throughput of the repeated top level (1.0 when `repeats` is 1)
    memory       (1 - min(1, preemptions / requests sent)) * (1 - 0.25 * kv_overfill), where kv_overfill is how far
                 the peak KV-cache usage the server reported went into its top 10 % (0 at <= 90 %, 1 at 100 %)
  A product, so one bad component cannot be hidden by good ones.

constraint       <= 0 for a trial whose server started and survived the sweep, 1.0 for a config failure
                 (oom, kv_capacity, invalid_config, crash, startup_timeout, died_under_load, unresponsive).
                 Config failures are told to Optuna with the worst values (0 tok/s, stability 0), so they never
                 enter the Pareto front, and constraint-aware samplers learn where the boundary lies.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from tuner.results import LevelResult, TrialResult

FEASIBLE = -1.0
INFEASIBLE = 1.0
OBJECTIVE_NAMES = ["output_tok_s", "stability"]


@dataclass(frozen=True)
class StabilityComponents:
    success: float
    survival: float
    consistency: float
    memory: float

    @property
    def score(self) -> float:
        return self.success * self.survival * self.consistency * self.memory


@dataclass(frozen=True)
class Score:
    throughput: float
    stability: float
    constraint: float
    components: StabilityComponents | None
    peak_concurrency: int | None

    @property
    def feasible(self) -> bool:
        return self.constraint <= 0

    @property
    def values(self) -> list[float]:
        return [self.throughput, self.stability]

    def components_dict(self) -> dict[str, float]:
        return asdict(self.components) if self.components else {}


def throughput_by_concurrency(levels: list[LevelResult]) -> dict[int, float]:
    by_c: dict[int, list[float]] = {}
    for level in levels:
        by_c.setdefault(level.concurrency, []).append(level.output_throughput)
    return {c: statistics.median(v) for c, v in by_c.items()}


def stability_components(result: TrialResult) -> StabilityComponents:
    levels = result.levels
    sent = sum(level.requests for level in levels)
    succeeded = sum(level.completed for level in levels)
    success = succeeded / sent if sent else 0.0
    distinct_levels = len({level.concurrency for level in levels})
    alive_levels = distinct_levels - (1 if result.failure_class else 0)
    survival = max(0, alive_levels) / result.levels_planned if result.levels_planned else 0.0
    top = max((level.concurrency for level in levels), default=None)
    top_runs = [level.output_throughput for level in levels if level.concurrency == top]
    consistency = (min(top_runs) / max(top_runs)) if len(top_runs) > 1 and max(top_runs) > 0 else (1.0 if top_runs else 0.0)
    preemptions = sum((level.server.preemptions or 0.0) for level in levels if level.server)
    peak_kv = max(((level.server.peak_kv_cache_usage or 0.0) for level in levels if level.server), default=0.0)
    kv_overfill = min(1.0, max(0.0, (peak_kv - 0.9) / 0.1))
    memory = (1.0 - min(1.0, preemptions / sent if sent else 0.0)) * (1.0 - 0.25 * kv_overfill)
    return StabilityComponents(success=success, survival=min(1.0, survival), consistency=consistency, memory=memory)


def score_trial(result: TrialResult) -> Score:
    components = stability_components(result) if result.levels else None
    if result.failure_class is not None:
        return Score(0.0, 0.0, INFEASIBLE, components, None)
    by_c = throughput_by_concurrency(result.levels)
    peak_c = max(by_c, key=by_c.get)
    assert components is not None
    return Score(by_c[peak_c], components.score, FEASIBLE, components, peak_c)
