"""Launches of one config combined (feasible when at least half of them met every SLO and none answered differently
from the quality reference; the export says how many met the SLOs, and the medians are over those): confirmed medians, stability across launches, the noise of the machine, and the
front a user picks from.

A config's runs are its search trial and the confirmation trials that relaunched it (`confirms` = the search trial's
number). Combined:
  values        each level objective is the median over the runs that found an operating point; the spread of the
                rank objective (MAD / median) is kept beside it
  survival      the share of launches the server lived through entirely (startup, every sweep level, the soak): a
                config that dies in one launch of three has 0.67, the seed's "occasional OOM" as a number
  success       requests that succeeded / sent, over every run
  headroom      1 - preemptions per request, over every run
  consistency   1 while the spread across launches is within twice the machine's noise; beyond that it drops by
                the excess (a spread of 30 % on a machine whose noise is 5 % gives 0.8)
Machine noise: the median relative spread of the same level measured twice within a launch, or across the launches
of confirmed configs when that is larger; 5 % until anything was repeated.

The front keeps every config that no other config beats by more than the noise: b leaves the front only when some a
is at least as good on every objective and better on one by more than its tolerance (twice the noise, relative, for
measured rates and latencies; 0.05 for stability). Throughput-like objectives also compare intervals: a beats b
there only when a's interval lies above b's (the gap exceeds both half-widths: each config's `precision`, from its
operating point's 95 % CI), with the machine's noise as the floor for launch-to-launch variation. Noise alone
therefore cannot move a config off the front.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tuner.contracts.goals import STABILITY, THROUGHPUT_LIKE, Goals, direction_of
from tuner.contracts.outcomes import FailureClass, Outcome
from tuner.scoring.score import Evidence, StabilityComponents, relative_mad

if TYPE_CHECKING:
    from tuner.scoring.score import Score

DEFAULT_NOISE = 0.05
MIN_NOISE = 0.01
NOISE_MULTIPLE = 2.0
STABILITY_TOLERANCE = 0.05


class Run(Protocol):
    """One launch as confirmation reads it: what a stored trial (tuner.study.records.Run) offers. Confirmation
    sits below the study's records, so it names what it reads instead of importing them."""

    @property
    def number(self) -> int: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def confirms(self) -> int | None: ...
    @property
    def complete(self) -> bool: ...
    @property
    def search_launch(self) -> bool: ...
    @property
    def outcome(self) -> Outcome | FailureClass: ...
    @property
    def score(self) -> Score | None: ...
    @property
    def run_feasible(self) -> bool: ...
    @property
    def operating_concurrency(self) -> int | None: ...
    def run_value(self, objective: str) -> float | None: ...


R = TypeVar("R", bound=Run)


class ConfigSummary(BaseModel):
    """A config's launches combined; stored with the study for each confirmed config (tuner.study.records)."""

    model_config = ConfigDict(extra="ignore")

    trial: int  # the search trial that found the config
    params: dict[str, Any]
    runs: list[int]  # trial numbers: the search trial first, then its confirmations
    confirmed: bool  # relaunched as many times as the study asks
    feasible: bool  # at least half its launches met every SLO, and none was wrong_output
    values: dict[str, float]  # objective -> combined value
    spread: float | None  # MAD / median of the rank objective across runs
    components: StabilityComponents  # survival: the share of launches that lived through every phase
    operating_concurrency: int | None
    slo_met_runs: int = 0
    outcomes: list[Outcome | FailureClass] = Field(default_factory=list)
    rank_range: list[float] | None = None  # lowest and highest rank-objective value across the runs that met the SLOs
    # Relative half-width of the 95 % CI of the throughput at the operating point: the median of its launches'
    # (each launch's own, tuner.scoring.score.Score.point_precision); None when a launch had no interval.
    precision: float | None = None

    def describe_range(self) -> str:
        """"range 7,120-7,880 across 3 launches (holds the median with 75 % confidence)": distribution-free, the
        interval of a median from n launches is their range, with confidence 1 - 2^(1-n)."""
        if not self.rank_range or len(self.runs) < 2:
            return ""
        n = self.slo_met_runs
        low, high = self.rank_range
        return (f"range {low:,.0f}-{high:,.0f} across {n} launches (holds the median with"
                f" {(1 - 2 ** (1 - n)) * 100:.0f} % confidence)")


def group_runs(records: Sequence[R]) -> dict[int, list[R]]:
    """Search trial number -> its runs (itself first), for every complete search trial."""
    groups: dict[int, list[R]] = {r.number: [r] for r in records if r.search_launch}
    for r in (r for r in records if r.complete):
        if r.confirms is not None and r.confirms in groups:
            groups[r.confirms].append(r)
    return groups


def machine_noise(records: Sequence[Run], goals: Goals) -> float:
    within = [s for r in records if r.score is not None and (s := r.score.evidence.repeat_spread) is not None]
    across = []
    for runs in group_runs(records).values():
        if len(runs) > 1:
            spread = relative_mad([v for r in runs if (v := r.run_value(goals.rank_metric)) is not None])
            if spread is not None:
                across.append(spread)
    estimates = [statistics.median(xs) for xs in (within, across) if xs]
    return max(max(estimates), MIN_NOISE) if estimates else DEFAULT_NOISE


def summarize(runs: Sequence[Run], goals: Goals, noise: float, repeats: int) -> ConfigSummary:
    search = runs[0]
    met = [r for r in runs if r.run_feasible]
    values: dict[str, float] = {}
    for name in dict.fromkeys([*goals.objectives, goals.rank_metric]):
        if name != STABILITY:
            xs = [v for r in met if (v := r.run_value(name)) is not None]
            worst = 0.0 if direction_of(name) == "maximize" else float("inf")
            values[name] = statistics.median(xs) if xs else worst
    rank = [v for r in met if (v := r.run_value(goals.rank_metric)) is not None]
    spread = relative_mad(rank) if len(rank) > 1 else None
    evidence = [r.score.evidence if r.score is not None else Evidence() for r in runs]  # no score: lived nothing
    requests = sum(e.requests for e in evidence)
    components = StabilityComponents(
        # A launch a signal killed before it served, then relaunched, counts as a launch that died.
        survival=statistics.mean([*(1.0 if e.lived_through else 0.0 for e in evidence),
                                  *(0.0 for e in evidence for _ in range(e.deaths_before))]),
        success=sum(e.completed for e in evidence) / requests if requests else 0.0,
        headroom=1.0 - min(1.0, sum(e.preemptions for e in evidence) / requests) if requests else 0.0,
        consistency=consistency(spread, noise),
    )
    stability = components.score
    if STABILITY in goals.objectives:
        values[STABILITY] = stability
    concurrencies = [r.operating_concurrency for r in met if r.operating_concurrency]
    precisions = [r.score.point_precision for r in met if r.score is not None and r.score.point_precision is not None]
    return ConfigSummary(
        trial=search.number, params=dict(search.params), runs=[r.number for r in runs],
        confirmed=len(runs) - 1 >= repeats, feasible=_feasible(runs, met), values=values, spread=spread,
        components=components, slo_met_runs=len(met), outcomes=[r.outcome for r in runs],
        rank_range=[min(rank), max(rank)] if len(rank) > 1 else None,
        precision=statistics.median(precisions) if met and len(precisions) == len(met) else None,
        operating_concurrency=statistics.median_low(concurrencies) if concurrencies else None)


def _feasible(runs: Sequence[Run], met: Sequence[Run]) -> bool:
    """At least half the launches met every SLO, and none answered differently from the reference: a config that
    gave a wrong answer once is never recommended, however often it was fast."""
    return bool(met) and len(met) * 2 >= len(runs) and not any(r.outcome == Outcome.WRONG_OUTPUT for r in runs)


def consistency(spread: float | None, noise: float) -> float:
    if spread is None:
        return 1.0
    return max(0.0, min(1.0, 1.0 - max(0.0, spread - NOISE_MULTIPLE * noise)))


def summaries(records: Sequence[Run], goals: Goals, repeats: int) -> list[ConfigSummary]:
    noise = machine_noise(records, goals)
    return [summarize(runs, goals, noise, repeats) for runs in group_runs(records).values()]


def _tolerance(name: str, a: ConfigSummary, b: ConfigSummary, noise: float) -> float:
    """How much better a must be than b on `name` to count: twice the machine's noise, relative to b; for
    throughput-like objectives at least both intervals' half-widths (a's low end above b's high end)."""
    if name == STABILITY:
        return STABILITY_TOLERANCE
    floor = abs(b.values[name]) * NOISE_MULTIPLE * noise
    if name in THROUGHPUT_LIKE and a.precision is not None and b.precision is not None:
        return max(floor, abs(a.values[name]) * a.precision + abs(b.values[name]) * b.precision)
    return floor


def _beats(a: ConfigSummary, b: ConfigSummary, goals: Goals, noise: float) -> bool:
    """a is at least as good as b on every objective and better on one by more than its tolerance."""
    clearly_better = False
    for name in goals.objectives:
        sign = 1.0 if direction_of(name) == "maximize" else -1.0
        diff = sign * (a.values[name] - b.values[name])
        if diff < 0:
            return False
        if diff > _tolerance(name, a, b, noise):
            clearly_better = True
    return clearly_better


def noise_front(items: Sequence[ConfigSummary], goals: Goals, noise: float) -> list[ConfigSummary]:
    """Feasible configs no other feasible config beats beyond the noise and both intervals, best by the rank
    objective first."""
    feasible = [s for s in items if s.feasible]
    front = [b for b in feasible if not any(_beats(a, b, goals, noise) for a in feasible if a is not b)]
    sign = 1.0 if direction_of(goals.rank_metric) == "maximize" else -1.0
    return sorted(front, key=lambda s: -sign * s.values[goals.rank_metric])


def improves_front(new: ConfigSummary, front: Sequence[ConfigSummary], goals: Goals, noise: float) -> bool:
    """`new` joins the front and is not within the noise of a config already on it: a trade-off the front lacked
    (a config no better than one it has, within the noise, joins the front but improves nothing)."""
    if not new.feasible or any(_beats(m, new, goals, noise) for m in front):
        return False
    return not any(all(abs(m.values[n] - new.values[n]) <= _tolerance(n, m, new, noise) for n in goals.objectives)
                   for m in front)


def search_front(records: Sequence[Run], goals: Goals, noise: float) -> list[ConfigSummary]:
    """The front of the search's own launches, one summary each: the front the user sees before confirmation, the
    one confirmation picks its candidates from, and the one whose growth the study's patience watches."""
    return noise_front([summarize([r], goals, noise, repeats=0) for r in records if r.search_launch], goals, noise)


def candidates(records: Sequence[Run], goals: Goals, limit: int) -> list[ConfigSummary]:
    """The search's configs on and near the front (single-launch numbers), at most `limit`: what to confirm. The
    best config by each objective comes first, then the rest by the rank objective, so that a small limit still
    confirms both ends of the trade-off (the most stable config, not only the fastest ones)."""
    front = search_front(records, goals, machine_noise(records, goals))  # by the rank objective, best first
    ends = []
    for name in goals.objectives:
        sign = 1.0 if direction_of(name) == "maximize" else -1.0
        best = max(front, key=lambda s: sign * s.values[name], default=None)  # ties: the first, best by rank
        if best is not None and best not in ends:
            ends.append(best)
    return (ends + [s for s in front if s not in ends])[:limit]


def confirmed_front(records: Sequence[Run], goals: Goals, repeats: int) -> list[ConfigSummary]:
    """The front from confirmed numbers only (with repeats 0, from single launches, each marked unconfirmed)."""
    noise = machine_noise(records, goals)
    items = [s for s in summaries(records, goals, repeats) if s.confirmed]
    return noise_front(items, goals, noise)
