"""From what one launch measured to the values and constraints Optuna sees (tuner.scoring.confirmation combines launches).

Outcome of a launch (`Score.outcome`), checked in this order:
  <failure class>  the server never served a measured level (oom, kv_capacity, invalid_config, crash,
                   startup_timeout, or died_under_load / unresponsive before any level finished): penalized,
                   constraint `config_failure` = 1
  unreliable       levels ran, but every one was flagged (client saturated, client/server token counts more than
                   1 % apart, above the hardware's compute ceiling): nothing trustworthy to score, constraint
                   `measurement` = 1, and the trial says which flags
  slo_miss         reliable levels ran, but none met every SLO: constraint `slo` = how far the closest one missed
                   (0.6 = 60 % over its limit); its measured values are told as they are
  measured         an operating point (tuner.scoring.objectives) met every SLO: feasible. A server that died or hung at a
                   higher level is still feasible: what it served is measured, and its survival says it died

Stability of one launch, a product of components in [0, 1] (one bad component cannot hide behind good ones):
  survival      1 when the server lived through every phase of the launch, 0 when it failed at startup or died or
                hung under load; 1/2 when it lived, but only on a relaunch after a signal killed its first launch
                before it served (tuner.study._runner: the first death counts like any death) (across launches, tuner.scoring.confirmation makes it the share of launches survived: the
                measured failure rate, e.g. the seed's "occasional OOM" config)
  success       requests that succeeded / requests sent, every phase
  headroom      1 - preemptions per request sent. A KV cache that runs full without preempting is vLLM's scheduler
                doing its job, not a risk: peak KV usage is kept as evidence but never docks the score. The worst-case
                phase (every sequence at the longest lengths at once) is meant to fill the cache: its preemptions
                are recorded but not counted here
  consistency   1 for a single launch; tuner.scoring.confirmation judges the spread across launches against the noise of
                the machine
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, computed_field

from tuner.contracts.goals import QUALITY as QUALITY_OBJECTIVE
from tuner.contracts.goals import STABILITY, Goals, direction_of
from tuner.contracts.outcomes import FailureClass, Outcome
from tuner.contracts.results import FLAGGING_KINDS, LevelResult, LevelRole, TrialResult, WarningKind, warning_kind
from tuner.scoring.objectives import LoadPoint, load_points, operating_point, slo_uncertain
from tuner.scoring.quality import QualityCheck, QualityEvidence, beyond_noise

CONFIG_FAILURE = "config_failure"
SLO = "slo"
MEASUREMENT = "measurement"
CONSTRAINT_NAMES = (CONFIG_FAILURE, SLO, MEASUREMENT)
QUALITY = "quality"  # answers beyond the reference's noise: a fourth constraint in studies with the guard on
MET = -1.0
VIOLATED = 1.0


class _Stored(BaseModel):
    # Stored with the trial and read back by tuner.study.records: fields tuner no longer writes are ignored, so
    # storages written by any version still load.
    model_config = ConfigDict(frozen=True, extra="ignore")


class StabilityComponents(_Stored):
    survival: float
    success: float
    headroom: float
    consistency: float = 1.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def score(self) -> float:
        return self.survival * self.success * self.headroom * self.consistency


class Evidence(_Stored):
    """What one launch says about risk and noise; kept with the trial so launches can be combined later."""

    phases_planned: int = 1
    phases_lived: int = 0
    survived: bool | None = None  # the server lived through every phase (None: stored before this was kept)
    requests: int = 0
    completed: int = 0
    preemptions: float = 0.0
    peak_kv_usage: float | None = None
    repeat_spread: float | None = None  # relative deviation of the repeated top level within this launch: noise
    deaths_before: int = 0  # earlier launches of these parameters a signal killed before they served (relaunched)

    @property
    def lived_through(self) -> bool:
        if self.survived is not None:
            return self.survived
        return self.phases_lived >= self.phases_planned


class Score(_Stored):
    outcome: Outcome | FailureClass
    detail: str = ""
    values: dict[str, float] = Field(default_factory=dict)  # objective name -> value, in the objective order
    constraints: dict[str, float] = Field(default_factory=dict)  # > 0 violated
    components: StabilityComponents
    evidence: Evidence = Field(default_factory=Evidence)
    operating_point: str | None = None  # "c=16": where the level objectives were read
    operating_concurrency: int | None = None
    operating_rate: float | None = None  # open loop: the arrival rate of the operating point
    # Relative half-width of the 95 % CI of the operating point's throughput (its levels combined as for their mean);
    # None: some level there has no interval (or stored before intervals). Throughput-like objectives carry it.
    point_precision: float | None = None
    # SLOs the operating point meets by its figures but not for sure: the p99's 95 % interval reaches past the held
    # limit (tuner.scoring.objectives.slo_uncertain). Met, and said to be uncertain.
    slo_uncertain: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)  # why levels were left out
    quality: QualityEvidence | None = None  # the launch's answers against the reference (quality guard on)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def ordered_values(self, goals: Goals) -> list[float]:
        return [self.values[name] for name in goals.objectives]


def _phase_key(level: LevelResult) -> tuple[str, int, float | None, int]:
    return level.phase, level.concurrency, level.request_rate, level.repeat


def _died_in(level: LevelResult) -> bool:
    return any(warning_kind(w) == WarningKind.SERVER_DIED for w in level.warnings)


def evidence_of(result: TrialResult) -> Evidence:
    """Phases count once however often a flagged one was measured again; a phase the server died in (or whose
    requests found it dead at connect, which leaves no level) is not lived."""
    levels = result.levels
    lived = len({_phase_key(lv) for lv in levels if not _died_in(lv)})
    measured = len({_phase_key(lv) for lv in levels})
    return Evidence(
        phases_planned=max(result.levels_planned, measured, 1),
        phases_lived=lived,
        survived=result.failure_class is None,
        deaths_before=1 if result.relaunched_after else 0,
        requests=sum(lv.requests for lv in levels),
        completed=sum(lv.completed for lv in levels),
        # The worst case is meant to fill the KV cache: preempting there is the scheduler's job, not fragility
        # under the traffic; its survival and its failed requests count like any phase's.
        preemptions=sum((lv.server.preemptions or 0.0) for lv in levels if lv.server and lv.phase != LevelRole.WORST_CASE),
        peak_kv_usage=max((lv.server.peak_kv_cache_usage for lv in levels
                           if lv.server and lv.server.peak_kv_cache_usage is not None), default=None),
        repeat_spread=_repeat_spread(load_points(levels)),
    )


def _repeat_spread(points: list[LoadPoint]) -> float | None:
    """MAD / median of the output throughput of the most repeated load point (None without repeats)."""
    repeated = [p for p in points if len(p.levels) > 1]
    if not repeated:
        return None
    top = max(repeated, key=lambda p: len(p.levels))
    return relative_mad([lv.output_throughput for lv in top.levels])


def relative_mad(values: list[float]) -> float | None:
    """Median absolute deviation over the median: the robust spread of a few repeats (0 for one value)."""
    if not values:
        return None
    mid = statistics.median(values)
    if mid <= 0:
        return None
    return statistics.median(abs(v - mid) for v in values) / mid


def components_of(evidence: Evidence) -> StabilityComponents:
    return StabilityComponents(
        survival=(1.0 if evidence.survived else 0.0) / (1 + evidence.deaths_before),  # the share of launches lived
        success=evidence.completed / evidence.requests if evidence.requests else 0.0,
        headroom=1.0 - min(1.0, evidence.preemptions / evidence.requests) if evidence.requests else 0.0,
    )


def score_run(result: TrialResult, goals: Goals, quality: QualityCheck | None = None) -> Score:
    """Score one launch (never raises on what a server did). With `quality`, its probe answers are judged against
    the reference first: a config that answers differently is `wrong_output` however fast it is."""
    score = _score_measured(result, goals)
    if quality is None:
        return score
    # Every trial of a guarded study carries the quality constraint, so Optuna sees one set of constraints.
    score = score.model_copy(update={"constraints": {**score.constraints, QUALITY: MET}})
    evidence = _worse(quality.evidence(result.probes) if result.probes else None,
                      quality.evidence(result.probes_after_soak) if result.probes_after_soak else None)
    if evidence is None:
        return score
    if beyond_noise(evidence) and score.constraints[CONFIG_FAILURE] <= 0:  # it served, and answered wrongly
        first = evidence.diverged[0]
        where = "at its first token" if first.diverged_at == 0 else f"at token {first.diverged_at}"
        detail = f"{evidence.describe()}; probe {first.probe} diverged {where}"
        wrong = _penalized(Outcome.WRONG_OUTPUT, detail, QUALITY, goals, score.components, score.evidence,
                           score.flags)
        return wrong.model_copy(update={"quality": evidence,
                                        "constraints": {**wrong.constraints, QUALITY: VIOLATED}})
    if QUALITY_OBJECTIVE in score.values:
        score = score.model_copy(update={"values": {**score.values, QUALITY_OBJECTIVE: evidence.figure}})
    return score.model_copy(update={"quality": evidence})


def _worse(before: QualityEvidence | None, after_soak: QualityEvidence | None) -> QualityEvidence | None:
    """A confirmation run is judged on the worse of its two checks (before the sweep, after the soak)."""
    if after_soak is None:
        return before
    after_soak = after_soak.model_copy(update={"after_soak": True})
    return after_soak if before is None or after_soak.figure < before.figure else before


def _score_measured(result: TrialResult, goals: Goals) -> Score:
    evidence = evidence_of(result)
    components = components_of(evidence)
    measured = [lv for lv in result.levels if lv.completed and lv.phase == LevelRole.SWEEP]
    flags = sorted({str(kind) for lv in measured if not lv.reliable for w in lv.warnings
                    if (kind := warning_kind(w)) in FLAGGING_KINDS})
    if not load_points(result.levels):
        if result.failure_class or not measured:  # it never served a level that can be scored: the config's fault
            return _penalized(result.failure_class or Outcome.NO_MEASUREMENT,
                              result.failure_detail or "no level completed a request", CONFIG_FAILURE, goals,
                              components, evidence, flags)
        return _penalized(Outcome.UNRELIABLE, "every measured level was flagged: " + ", ".join(flags), MEASUREMENT, goals,
                          components, evidence, flags)
    point, excess = operating_point(result.levels, goals)
    if point is None:
        closest = min(load_points(result.levels), key=lambda p: p.slo_excess(goals))
        values = _values(closest, goals, components)
        constraints = {CONFIG_FAILURE: MET, SLO: excess, MEASUREMENT: MET}
        return Score(outcome=Outcome.SLO_MISS, detail=_miss_detail(closest, goals), values=values,
                     constraints=constraints, components=components, evidence=evidence,
                     operating_point=closest.key, operating_concurrency=closest.concurrency,
                     operating_rate=closest.rate, flags=flags)
    constraints = {CONFIG_FAILURE: MET, SLO: min(excess, 0.0) if goals.slo else MET, MEASUREMENT: MET}
    return Score(outcome=result.failure_class or Outcome.MEASURED, detail=result.failure_detail,
                 values=_values(point, goals, components), constraints=constraints, components=components,
                 evidence=evidence, operating_point=point.key, operating_concurrency=point.concurrency,
                 operating_rate=point.rate, point_precision=point.precision(),
                 slo_uncertain=_one_per_slo(u for lv in point.levels for u in slo_uncertain(lv, goals)), flags=flags)


def _one_per_slo(lines: Iterable[str]) -> list[str]:
    """One line per SLO ("ttft_p99_ms: ..."), the last repeat's, when several levels of the point are uncertain."""
    return list({line.split(":", 1)[0]: line for line in lines}.values())


def _values(point: LoadPoint, goals: Goals, components: StabilityComponents) -> dict[str, float]:
    """The objectives' values, and the rank objective's even when it is not one of them (it orders the front)."""
    values = {}
    names = list(goals.objectives) + ([goals.rank_metric] if goals.rank_metric not in goals.objectives else [])
    for name in names:
        if name not in goals.objectives:
            values[name] = float(point.value(name, goals) or 0.0)
            continue
        if name == QUALITY_OBJECTIVE:
            values[name] = 1.0  # until compared with the reference (score_run): the reference's own figure
            continue
        value = components.score if name == STABILITY else point.value(name, goals)
        values[name] = goals.worst()[goals.objectives.index(name)] if value is None else float(value)
    return values


def _penalized(outcome: Outcome | FailureClass, detail: str, constraint: str, goals: Goals, components: StabilityComponents,
               evidence: Evidence, flags: list[str]) -> Score:
    constraints = {name: (VIOLATED if name == constraint else MET) for name in CONSTRAINT_NAMES if name != QUALITY}
    values = dict(zip(goals.objectives, goals.worst()))
    values.setdefault(goals.rank_metric, 0.0 if direction_of(goals.rank_metric) == "maximize" else float("inf"))
    return Score(outcome=outcome, detail=detail, values=values, constraints=constraints, components=components,
                 evidence=evidence, flags=flags)


def _miss_detail(point: LoadPoint, goals: Goals) -> str:
    from tuner.scoring.objectives import latency

    misses = []
    for name in goals.slo:
        limit = goals.held_limit(name)
        worst = max((v for lv in point.levels if (v := latency(lv, name)) is not None), default=None)
        if worst is None or worst > limit:
            misses.append(f"{name} {'n/a' if worst is None else f'{worst:,.0f}'} > {limit:,.0f}")
    return f"no reliable level met the SLOs; closest {point.key}: " + ", ".join(misses)


