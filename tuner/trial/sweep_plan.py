"""What the driver hands a launch (LaunchRequest, with its SweepPlan) and what the launch hands back (TrialOutcome),
and the order in which a plan's levels are measured. The driver builds plans (tuner.planning.traffic), the trial runs
them (tuner.trial.run), replay answers them from a recorded surface (tuner.study.replay)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from tuner.capacity.memory_fit import ModelShape
from tuner.contracts.goals import LATENCY_RE, Goals
from tuner.contracts.hardware import Hardware
from tuner.contracts.quality import QualityPlan
from tuner.contracts.results import TrialResult
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.load.runner import LoadPattern
from tuner.load.stats import SLO
from tuner.load.stopping import PercentileLimit, StopRule, default_min_requests
from tuner.load.workload import Sample
from tuner.server.config import ServerConfig
from tuner.trial.dominance import Bar


@dataclass(frozen=True)
class SweepPlan:
    """What one launch is asked to measure: the study's load sweep with its traffic, and, for a confirmation run, a
    soak at the operating point that cycles through every shape. Built by the study driver (tuner.study)."""

    load: LoadSpec
    samples: tuple[Sample, ...] = ()  # the study's dataset or mix of shapes; empty: the load's fixed lengths/ranges
    workload_label: str = ""
    slo: SLO | None = None  # per-request limits for goodput
    hardware: Hardware | None = None  # with model_shape: each level against the slice's ceilings (roofline.py)
    model_shape: ModelShape | None = None
    soak_concurrency: int | None = None  # closed loop: the operating point's streams; open loop: the cap
    soak_rate: float | None = None  # open loop: the operating point's arrival rate
    soak_requests: int = 0  # 0: 2 x requests_per_level
    goals: Goals | None = None  # the study's SLOs: a sweep stops at a level that misses them (load.stop_early)
    quality: QualityPlan | None = None  # the probes to answer before the sweep (the study's quality guard)
    front: tuple[Bar, ...] = ()  # the front a search launch must be able to reach, or it stops (tuner.trial.dominance)

    def with_quality(self, quality: QualityPlan | None) -> SweepPlan:
        return replace(self, quality=quality)

    def with_front(self, front: tuple[Bar, ...]) -> SweepPlan:
        return replace(self, front=front)

    def with_soak(self, concurrency: int | None, rate: float | None) -> SweepPlan:
        """A confirmation run's plan: this sweep, then a soak at the operating point."""
        return replace(self, soak_concurrency=concurrency, soak_rate=rate)

    @property
    def phases(self) -> int:
        soak = 1 if self.soak_concurrency or self.soak_rate else 0
        return len(planned_levels(self.load)) + soak + (1 if self.load.worst_case else 0)


@dataclass(frozen=True)
class LaunchRequest:
    """What the driver hands a worker for one attempt (tuner.study._executor): everything a launch needs, by name.
    Picklable: it rides in a Ray task's arguments."""

    config: ServerConfig
    plan: SweepPlan
    timeouts: Timeouts
    log_path: str  # absolute: the worker writes the server's log there
    host: str = "127.0.0.1"
    vocab_size: int | None = None  # token-id prompts; None: text prompts through the server's /tokenize


@dataclass
class TrialOutcome:
    result: TrialResult
    server_log: str = ""
    records_jsonl: str = ""

    def artifacts(self) -> dict[str, str]:
        """File name -> text, for the driver to keep in Optuna's artifact store."""
        return {"server.log": self.server_log, "requests.jsonl": self.records_jsonl,
                "traceback.txt": self.result.traceback}


def sweep_points(load: LoadSpec, goals: Goals | None = None) -> list[LoadPattern]:
    """The sweep's levels in the order they are measured. Closed loop: one level per concurrency. Open loop
    (`rates`): one level per arrival rate, at most `concurrency[0]` requests in flight. With `load.precision`, each
    level measures to it (requests_per_level is the cap) and stops once it misses one of `goals`' SLOs for sure;
    coarse first: to `screen_precision`, the operating point's repeats (`repeat_pattern`) to `precision`."""
    if load.rates:
        cap = load.concurrency[0]
        return [LoadPattern(concurrency=cap, rate=r, arrival=load.arrival, burstiness=load.burstiness,
                            requests=load.requests_per_level, warmup=load.warmup_rounds * cap,
                            stop=stop_rule(load, goals, cap, screen=True)) for r in load.rates]
    return [LoadPattern(concurrency=c, requests=load.requests_per_level, warmup=load.warmup_rounds * c,
                        stop=stop_rule(load, goals, c, screen=True)) for c in load.concurrency]


def repeat_pattern(point: LoadPattern, load: LoadSpec, goals: Goals | None) -> LoadPattern:
    """A sweep level measured again (the launch's operating point): no warm-up, and to the full `precision`."""
    return replace(point, warmup=0, stop=stop_rule(load, goals, point.concurrency or 0))


def stop_rule(load: LoadSpec, goals: Goals | None, concurrency: int, screen: bool = False) -> StopRule | None:
    """A level's stop rule (tuner.load.stopping): the study's precision (`screen`: its screening precision), its
    minimum (default: two rounds of the streams and enough requests for the SLOs' percentiles) and the SLOs held
    with their margin."""
    precision = load.screen_precision if screen and load.screen_precision is not None else load.precision
    if precision is None:
        return None
    goals = goals or Goals()
    limits = tuple(PercentileLimit(metric, int(stat[1:]) / 100, goals.held_limit(name)) for name in goals.slo
                   if (match := LATENCY_RE.match(name)) and (metric := match[1]) and (stat := match[2]) != "mean")
    least = load.min_requests or default_min_requests(concurrency, [lim.quantile for lim in limits],
                                                      load.requests_per_level)
    return StopRule(precision=precision, min_requests=min(least, load.requests_per_level), limits=limits)


def planned_levels(load: LoadSpec, goals: Goals | None = None) -> list[tuple[LoadPattern, int]]:
    """(pattern, repeat) measured when the sweep runs to its end, in order: the sweep, then one level again
    (`repeats`: the operating point; the top level stands for it here, as it is known only once the sweep is over).
    What a launch counts as planned (survival) and what a launch's time is estimated from."""
    points = sweep_points(load, goals)
    repeats = [repeat_pattern(points[-1], load, goals) for _ in range(1, load.repeats)]
    return [(p, 0) for p in points] + [(p, r) for r, p in enumerate(repeats, start=1)]


def prepared_levels(load: LoadSpec, goals: Goals | None = None) -> list[tuple[LoadPattern, int]]:
    """(pattern, repeat) whose requests a launch builds before its first level: the sweep, and a repeat at every
    level, since which one is the operating point is known only once the sweep is over."""
    points = sweep_points(load, goals)
    return [(p, 0) for p in points] + [(repeat_pattern(p, load, goals), r) for p in points
                                       for r in range(1, load.repeats)]
