"""What a study stores with each trial, and how every reader gets it back: one typed record.

The study loop writes a TrialRecord's fields as Optuna user attributes (plain JSON, readable in optuna-dashboard);
report, export, matrix and summary code read them back with `TrialRecord.of(trial)`, never by key. Feasibility
lives where Optuna's constraint-aware samplers and `Study.best_trials` look for it: `FrozenTrial.constraints`
(> 0 means infeasible). The attribute names are those tuner has always written, so older storages still load.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from tuner.scoring.objectives import DEFAULT_OBJECTIVES, Goals
from tuner.contracts.results import LevelResult

STARTUP_PREFIX = "startup_"


class TrialRecord(BaseModel):
    """One trial as stored: the exact launch, what it measured or why it failed, and how the loop scored it."""

    model_config = ConfigDict(extra="ignore")

    # From Optuna's own trial
    number: int = -1
    state: str = "COMPLETE"
    params: dict[str, Any] = Field(default_factory=dict)
    values: list[float] | None = None
    feasible: bool = False  # every constraint <= 0

    # The launch (secrets redacted)
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    server_flags: dict[str, Any] = Field(default_factory=dict)
    hostname: str = ""
    node_id: str = ""  # the Ray node of the attempt that was recorded (studies from before it: empty)
    attempts: int = 0
    log_path: str = ""
    log_tail: str = ""
    wall_s: float = 0.0
    startup_s: float | None = None
    startup: dict[str, Any] = Field(default_factory=dict, description="startup_* phases, stored as flat attributes")

    # The outcome
    failure_class: str | None = None
    failure_detail: str = ""
    levels: list[LevelResult] = Field(default_factory=list)
    sweep_stopped: str = ""  # why the sweep ended early (load.stop_early): its higher levels were never measured
    peak_concurrency: int | None = Field(None, description="the operating point's concurrency (tuner.scoring.objectives)")
    score: dict[str, Any] = Field(default_factory=dict, description="tuner.scoring.score.Score.stored(): outcome, values by"
                                  " objective, constraints, stability components, evidence, operating point")

    # Confirmation (tuner.scoring.confirmation)
    confirms: int | None = None  # a confirmation run: the search trial it relaunches

    # Where the config came from, and whether it ran
    replayed: str = ""  # drawn from a recorded surface (tuner.study.replay), not launched by this study
    warm_start_from: str = ""  # "STUDY#N": another study's trial, added to seed the sampler (tuner.study.warm_start)
    enqueued: bool = False
    requeued_from: int | None = None
    duplicate_of: int | None = None
    launched: bool = True
    predicted: bool = False
    prediction: str = ""
    memory_estimate: dict[str, Any] = Field(default_factory=dict)

    # -- reading ------------------------------------------------------------------------------------------------
    @classmethod
    def of(cls, trial: FrozenTrial) -> "TrialRecord":
        attrs = dict(trial.user_attrs)
        startup = {k: v for k, v in attrs.items() if k.startswith(STARTUP_PREFIX) and k != "startup_s"}
        return cls.model_validate({**attrs, "number": trial.number, "state": trial.state.name,
                                   "params": dict(trial.params), "values": trial.values,
                                   "feasible": is_feasible(trial), "startup": startup})

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE.name

    @property
    def outcome(self) -> str:
        """measured, slo_miss, unreliable, or the server's failure class (tuner.scoring.score)."""
        return self.score.get("outcome") or self.failure_class or ("measured" if self.feasible else "penalized")

    @property
    def answered(self) -> bool:
        """A duplicate proposal answered with an earlier trial's result: no launch, no measurement of its own."""
        return self.duplicate_of is not None

    @property
    def search_launch(self) -> bool:
        """A finished search trial of its own: not a confirmation run, not an answered duplicate, not another study's
        trial added by warm start."""
        return self.complete and self.confirms is None and not self.answered and not self.warm_start_from

    @property
    def run_feasible(self) -> bool:
        return self.complete and self.feasible

    def run_value(self, objective: str) -> float | None:
        """This launch's value of one objective (None unless it met every constraint)."""
        return self.score.get("values", {}).get(objective) if self.run_feasible else None

    @property
    def operating_concurrency(self) -> int | None:
        return self.score.get("operating_concurrency", self.peak_concurrency)

    @property
    def operating_rate(self) -> float | None:
        return self.score.get("operating_rate")

    @property
    def throughput(self) -> float | None:
        """Output tok/s at this launch's operating point (studies from before objectives: the first value)."""
        if not self.run_feasible:
            return None
        if self.score:
            level = self.peak_level
            return level.output_throughput if level else self.score.get("values", {}).get("output_tok_s")
        return self.values[0] if self.values else None

    @property
    def stability(self) -> float | None:
        if not self.run_feasible:
            return None
        if self.score:
            return self.score.get("components", {}).get("score")
        return self.values[1] if self.values and len(self.values) > 1 else None

    @property
    def penalized(self) -> bool:
        """Told to Optuna as infeasible: a config failure, measured or predicted."""
        return self.complete and not self.feasible

    @property
    def peak_level(self) -> LevelResult | None:
        """The first reliable sweep level at the operating point."""
        return next((lv for lv in self.levels if lv.concurrency == self.operating_concurrency and lv.reliable
                     and lv.phase == "sweep"), None)

    @property
    def preemptions(self) -> float:
        return sum((lv.server.preemptions or 0.0) for lv in self.levels if lv.server)

    # -- writing ------------------------------------------------------------------------------------------------
    def user_attrs(self) -> dict[str, Any]:
        """The attributes the study writes (Optuna's own fields and empty provenance left out)."""
        data = self.model_dump(mode="json", exclude={"number", "state", "params", "values", "feasible", "startup"})
        for key in ("requeued_from", "duplicate_of", "confirms"):
            if data[key] is None:
                del data[key]
        for key in ("replayed", "warm_start_from"):
            if not data[key]:
                del data[key]
        return {**data, **self.startup}


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible per Optuna's constraints; storages written before tuner used them keep a `constraint` attribute."""
    if trial.constraints:
        return all(c <= 0 for c in trial.constraints.values())
    return trial.user_attrs.get("constraint", 1.0) <= 0


def records(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=states)]


def goals_of(study: optuna.Study) -> Goals:
    """The study's objectives and limits, from the spec stored with it (older studies: the defaults)."""
    spec = study.user_attrs.get("spec", {})
    from tuner.capacity.hardware import SLICES

    hardware = (spec.get("hardware") or {}).get("name")
    return Goals(objectives=tuple(spec.get("objectives") or DEFAULT_OBJECTIVES), slo=dict(spec.get("slo") or {}),
                 chips=SLICES[hardware].count if hardware in SLICES else 1,
                 price_per_slice_hour=spec.get("price_per_slice_hour"),
                 slo_margin=spec.get("slo_margin", 0.0))  # studies stored before the margin existed: none


def confirm_repeats_of(study: optuna.Study) -> int:
    return int((study.user_attrs.get("spec", {}).get("confirm") or {}).get("repeats", 0))


def best_by(candidates: list[TrialRecord], objective: str) -> TrialRecord:
    """The best single launch by "throughput" or "stability", ties broken by the other."""
    other = "stability" if objective == "throughput" else "throughput"
    return max(candidates, key=lambda r: (getattr(r, objective) or 0.0, getattr(r, other) or 0.0))
