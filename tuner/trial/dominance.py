"""Stop a launch proven unable to reach the front (issue 33): slice time is spent only where it changes the answer.

The study hands a search launch the front as it stands, one `Bar` per config on it: a conservative value per
objective (tuner.scoring.confirmation.dominance_bars: a throughput's low end, stability and quality as they are). After
each sweep level the launch bounds what it could still reach:
  - throughput: the best level so far that meets the SLOs, at the high end of its 95 % interval; and every level not
    yet measured at the last level's high end times the concurrency ratio, since per-sequence throughput does not
    rise with concurrency (no bound is claimed past a level that misses the SLOs: the sweep stops there anyway);
  - stability and quality: 1, their best (neither is known before the launch ends).
The launch is dominated when some bar is at least as good on every objective and its throughput lies above the
launch's bound. It then stops: the levels left and the operating point's repeat are not measured, the reason (with
the numbers that proved it) is stored as `sweep_stopped`, and what was measured is scored and told to Optuna as it
is. A confirmation run is never stopped: it is the evidence the front stands on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tuner.contracts.goals import QUALITY, STABILITY, Goals
from tuner.contracts.results import LevelResult, LevelRole
from tuner.scoring.objectives import slo_excess

# Objectives a launch can bound from below the top of its sweep: throughput-like ones, read as output tok/s.
BOUNDABLE = ("output_tok_s", "goodput_tok_s", "tok_s_per_chip", STABILITY, QUALITY)


@dataclass(frozen=True)
class Bar:
    """One config on the front, as a launch must beat it: objective -> conservative value (maximized)."""

    trial: int
    values: tuple[tuple[str, float], ...]

    def value(self, name: str) -> float:
        return dict(self.values)[name]


def throughput_bound(levels: Sequence[LevelResult], remaining: Sequence[int], goals: Goals) -> float | None:
    """The most output tok/s this launch could still show at an operating point; None: no bound (nothing measured,
    or a level without an interval)."""
    sweep = [lv for lv in levels if lv.phase == LevelRole.SWEEP and lv.reliable and lv.completed]
    if not sweep:
        return None
    highs = []
    for lv in sweep:
        ci = lv.output_throughput_ci
        if ci is None or ci.high is None:
            return None
        if slo_excess(lv, goals) <= 0:
            highs.append(ci.high)
    last = sweep[-1]
    if remaining and slo_excess(last, goals) <= 0 and last.concurrency and last.output_throughput_ci is not None:
        ceiling = last.output_throughput_ci.high or 0.0  # known: every level's high end was checked above
        highs += [ceiling * c / last.concurrency for c in remaining]
    return max(highs, default=0.0)


def dominated_by(bars: Sequence[Bar], levels: Sequence[LevelResult], remaining: Sequence[int],
                 goals: Goals) -> str:
    """Why this launch cannot reach the front ("" when it still can)."""
    if not bars or any(name not in BOUNDABLE for name in goals.objectives):
        return ""
    bound = throughput_bound(levels, remaining, goals)
    if bound is None:
        return ""
    upper = {name: 1.0 for name in (STABILITY, QUALITY)}
    for name in goals.objectives:
        if name not in upper:
            upper[name] = bound / goals.chips if name == "tok_s_per_chip" else bound
    for bar in bars:
        if all(bar.value(n) >= upper[n] for n in goals.objectives) and any(
                bar.value(n) > upper[n] for n in goals.objectives):
            rank = goals.rank_metric
            return (f"dominated: at most {upper[rank]:,.0f} {rank} reachable (95 % CI high end, and per-sequence"
                    f" throughput not rising with concurrency), below trial {bar.trial}'s {bar.value(rank):,.0f}"
                    " (the low end of its interval) at least as good on every other objective")
    return ""
