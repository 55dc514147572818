"""What a study optimises and what it must meet: objective names, SLO limits, and reading them off measured levels.

Objectives (the study's `objectives:` list, two or three of them; Optuna names its axes after them):
  output_tok_s       output tokens per second of the operating point (maximize)
  goodput_tok_s      output tokens per second of the requests that met every per-request SLO (maximize)
  goodput_req_s      requests per second that met every per-request SLO (maximize)
  tok_s_per_chip     output_tok_s / chips of the slice (maximize; needs `hardware`)
  usd_per_m_tokens   price_per_slice_hour / (output_tok_s x 3600) x 1e6 (minimize; needs `price_per_slice_hour`)
  <m>_<stat>_ms      latency m in ttft, tpot, itl, e2el at stat in mean, p50, p90, p99, e.g. ttft_p99_ms (minimize)
  stability          how much risk the config carries (tuner.scoring.score): survival x success x headroom x consistency
  quality            how closely its answers follow the quality reference's, in [0, 1] (tuner.scoring.quality; needs
                     `quality.enabled`): the fp8 KV-cache trade-off made visible on the front

SLOs (the study's `slo:` mapping) use the latency names: `ttft_p99_ms: 500` means the 99th percentile of TTFT at the
operating point is at most 500 ms, less the study's `slo_margin` (default 10 %: 450 ms), so that the point still
meets the limit when a relaunch measures it again. A config none of whose reliable levels meets every SLO is infeasible
(`slo_miss`), told to Optuna with how far it missed, so constraint-aware samplers learn the boundary.

The operating point of one launch: among its reliable levels (never one flagged for client saturation, a token
mismatch or an impossible figure) that meet every SLO, the one best by the first throughput-like objective (or
output_tok_s when none is chosen). Every level-based objective is read there, so the numbers on the front belong
together: "this config gives X tok/s at concurrency C with p99 TTFT Y".
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tuner.contracts.goals import LATENCY_RE, Goals, direction_of
from tuner.contracts.results import LatencyStats, LevelResult, LevelRole, LoadMode

UNMEASURED_EXCESS = 1.0


# -- reading a level -----------------------------------------------------------------------------------------------
def latency(level: LevelResult, name: str) -> float | None:
    metric, stat = LATENCY_RE.match(name).groups()  # type: ignore[union-attr]
    stats: LatencyStats = getattr(level, f"{metric}_ms")
    return getattr(stats, stat)


def level_value(level: LevelResult, name: str, goals: Goals) -> float | None:
    """One objective read off one level (stability is not a level figure: None)."""
    if name == "output_tok_s":
        return level.output_throughput
    if name == "goodput_tok_s":
        return level.goodput_tok_s if level.goodput_tok_s is not None else level.output_throughput
    if name == "goodput_req_s":
        return level.goodput if level.goodput is not None else level.request_throughput
    if name == "tok_s_per_chip":
        return level.output_throughput / max(goals.chips, 1)
    if name == "usd_per_m_tokens":
        if goals.price_per_slice_hour is None or level.output_throughput <= 0:
            return float("inf")
        return goals.price_per_slice_hour / (level.output_throughput * 3600.0) * 1e6
    if LATENCY_RE.match(name):
        return latency(level, name)
    return None


def slo_uncertain(level: LevelResult, goals: Goals) -> list[str]:
    """The SLOs this level meets by its figure whose 95 % interval still reaches past the held limit: met, but not
    for sure ("ttft_p99_ms: 95 % CI 41-2,210 ms reaches past 1,800"; a p99 from too few requests has no upper end).
    Only p99s carry intervals (order statistics, tuner.load.intervals)."""
    found = []
    for name in goals.slo:
        metric, stat = LATENCY_RE.match(name).groups()  # type: ignore[union-attr]
        value, limit = latency(level, name), goals.held_limit(name)
        ci = getattr(level, f"{metric}_ms").p99_ci if stat == "p99" else None
        if value is None or value > limit or ci is None or (ci.high is not None and ci.high <= limit):
            continue
        high = f"{ci.high:,.0f} ms" if ci.high is not None else "no upper end (too few requests)"
        low = f"{ci.low:,.0f}" if ci.low is not None else "?"
        found.append(f"{name}: 95 % CI {low}-{high} reaches past {limit:,.0f}")
    return found


def slo_excess(level: LevelResult, goals: Goals) -> float:
    """How far the level misses its worst SLO, as a fraction of the limit (<= 0: every SLO met)."""
    worst = float("-inf") if goals.slo else -1.0
    for name in goals.slo:
        value = latency(level, name)
        # Not measured (e.g. ITL of one-token outputs): counted as a full miss, never as met; finite, for samplers.
        excess = UNMEASURED_EXCESS if value is None else value / goals.held_limit(name) - 1.0
        worst = max(worst, excess)
    return worst


# -- a load point: the levels of one concurrency (or rate), repeats combined ------------------------------------
@dataclass(frozen=True)
class LoadPoint:
    """The reliable levels measured at one concurrency (or arrival rate) of one launch."""

    key: str  # "c=16" or "rate=4/s"
    levels: tuple[LevelResult, ...]

    @property
    def concurrency(self) -> int:
        return self.levels[0].concurrency

    @property
    def rate(self) -> float | None:
        """The arrival rate of an open-loop point (None in closed loop)."""
        return self.levels[0].request_rate if self.levels[0].mode == LoadMode.OPEN else None

    def value(self, name: str, goals: Goals) -> float | None:
        """Median over repeats; latencies take the worst repeat (an SLO must hold in every run, not on average)."""
        values = [v for lv in self.levels if (v := level_value(lv, name, goals)) is not None]
        if not values:
            return None
        if LATENCY_RE.match(name):
            return max(values)
        return statistics.median(values)

    def slo_excess(self, goals: Goals) -> float:
        return max(slo_excess(lv, goals) for lv in self.levels)

    def precision(self) -> float | None:
        """The relative half-width of the point's throughput interval, its levels combined as for their mean
        (sqrt(sum r_i^2) / k); None when a level has none."""
        widths = [lv.output_throughput_ci.relative if lv.output_throughput_ci else None for lv in self.levels]
        if not widths or any(w is None for w in widths):
            return None
        return math.sqrt(sum(w * w for w in widths if w is not None)) / len(widths)


def point_key(level: LevelResult) -> str:
    return f"rate={level.request_rate:g}/s" if level.mode == LoadMode.OPEN and level.request_rate else f"c={level.concurrency}"


def load_points(levels: Sequence[LevelResult], phase: LevelRole = LevelRole.SWEEP) -> list[LoadPoint]:
    """The reliable levels of one phase, grouped by load point, in the order first measured."""
    groups: dict[str, list[LevelResult]] = {}
    for level in levels:
        if level.reliable and level.phase == phase and level.completed:
            groups.setdefault(point_key(level), []).append(level)
    return [LoadPoint(key, tuple(group)) for key, group in groups.items()]


def operating_point(levels: Sequence[LevelResult], goals: Goals) -> tuple[LoadPoint | None, float]:
    """The best reliable load point that meets every SLO, and the SLO excess that decided (the smallest over all
    reliable points: > 0 means none met the SLOs and says by how much the closest one missed)."""
    points = load_points(levels)
    if not points:
        return None, float("inf")
    excess = {p.key: p.slo_excess(goals) for p in points}
    meeting = [p for p in points if excess[p.key] <= 0]
    if not meeting:
        return None, min(excess.values())
    metric = goals.rank_metric
    sign = 1.0 if direction_of(metric) == "maximize" else -1.0
    best = max(meeting, key=lambda p: sign * (p.value(metric, goals) or 0.0))
    return best, excess[best.key]
