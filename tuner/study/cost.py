"""What a study spent in slice time, where it went, what is left, and what an exhaustive grid would have cost.

A launch's slice time is its wall time from the server's start to its teardown (TrialRecord.wall_s, split by phase
in TrialRecord.phases); waiting for a free slice is not counted. Every launch counts, search and confirmation,
feasible or not, and an attempt ended by an infrastructure failure too: the slice was held. A config penalized
without a launch (a rule, the memory estimate, a learned failure), an answered duplicate, another study's trial
added by warm start and a replayed draw cost nothing.

Before any launch is measured, the expected launch is an estimate (tuner.planning.launch_time), always labelled so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tuner.contracts.phases import LaunchPhase
from tuner.study.records import TrialRecord

HOUR_S = 3600.0


def costs_slice_time(record: TrialRecord) -> bool:
    """A launch that held a slice (see the module docstring for what does not)."""
    held = record.state in ("COMPLETE", "FAIL") and record.wall_s > 0
    return held and record.launched and not record.answered and not record.warm_start_from and not record.replayed


@dataclass(frozen=True)
class StudyCost:
    launches: int
    slice_s: float
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase over every launch, in phase order
    price_per_slice_hour: float | None = None
    grid_configs: int | None = None  # None: the space has a continuous parameter, no finite grid

    @property
    def slice_hours(self) -> float:
        return self.slice_s / HOUR_S

    @property
    def mean_launch_s(self) -> float | None:
        return self.slice_s / self.launches if self.launches else None

    def price_of(self, seconds: float) -> float | None:
        return None if self.price_per_slice_hour is None else seconds / HOUR_S * self.price_per_slice_hour

    @property
    def grid_slice_hours(self) -> float | None:
        """Every config of the space launched once, at the mean measured launch."""
        if self.grid_configs is None or self.mean_launch_s is None:
            return None
        return self.grid_configs * self.mean_launch_s / HOUR_S

    def phase_shares(self) -> dict[str, float]:
        total = sum(self.phases.values())
        return {name: seconds / total for name, seconds in self.phases.items()} if total else {}

    def describe(self) -> str:
        """"0.42 slice-hours over 12 launches (2.1 min each), $1.05 at $2.50/slice-hour"."""
        if not self.launches:
            return "no launch yet"
        text = (f"{self.slice_hours:.2f} slice-hours over {self.launches} launches"
                f" ({(self.mean_launch_s or 0) / 60:.1f} min each)")
        price = self.price_of(self.slice_s)
        if price is not None:
            text += f", {price:,.2f} at {self.price_per_slice_hour:g}/slice-hour"
        return text

    def describe_grid(self) -> str:
        grid = self.grid_slice_hours
        if self.grid_configs is None:
            return "no finite grid (a continuous parameter)"
        if grid is None:
            return f"{self.grid_configs:,} configs (no launch measured yet to cost them)"
        price = self.price_of(grid * HOUR_S)
        return (f"{self.grid_configs:,} configs, about {grid:,.1f} slice-hours at the mean launch"
                + (f" ({price:,.0f})" if price is not None else ""))


def study_cost(records: list[TrialRecord], price_per_slice_hour: float | None = None,
               grid_configs: int | None = None) -> StudyCost:
    held = [r for r in records if costs_slice_time(r)]
    phases: dict[str, float] = {}
    for r in held:
        for name, seconds in (r.phases or {"other": r.wall_s}).items():  # studies from before phases: all "other"
            phases[name] = phases.get(name, 0.0) + seconds
    ordered: dict[str, float] = {str(p.value): phases[p.value] for p in LaunchPhase if p.value in phases}
    return StudyCost(launches=len(held), slice_s=sum(r.wall_s for r in held), phases=ordered,
                     price_per_slice_hour=price_per_slice_hour, grid_configs=grid_configs)


def grid_size(grid: dict[str, list[object]]) -> int:
    """The configs of a finite space (conditional parameters counted as if always set: an upper bound)."""
    return math.prod(len(values) for values in grid.values()) if grid else 1
