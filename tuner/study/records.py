"""What a study stores, and the only code that reads or writes it: one typed record per trial, one per study.

The study loop writes a TrialRecord's fields as Optuna user attributes (plain JSON, readable in optuna-dashboard);
report, export, matrix and summary code read them back with `TrialRecord.of(trial)` and `StudyRecord.of(study)`,
never by key. The keys are the constants below (Optuna's own habit with its system attributes): no other module
names one. Feasibility lives where Optuna's constraint-aware samplers and `Study.best_trials` look for it:
`FrozenTrial.constraints` (> 0 means infeasible). The attribute names are those tuner has always written, and
fields a record no longer knows are ignored, so older storages still load.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuner.contracts.goals import Goals
from tuner.contracts.outcomes import FailureClass, Outcome
from tuner.contracts.results import LevelResult, LevelRole, TrialResult
from tuner.scoring.confirmation import ConfigSummary
from tuner.scoring.quality import QualityReference
from tuner.scoring.score import Score

# -- trial attributes (user attributes of a trial) --------------------------------------------------------------
ATTR_SCORE = "score"
ATTR_FAILURE_CLASS = "failure_class"
ATTR_FAILURE_DETAIL = "failure_detail"
ATTR_CONFIRMS = "confirms"
ATTR_ENQUEUED = "enqueued"
ATTR_REQUEUED_FROM = "requeued_from"
ATTR_DUPLICATE_OF = "duplicate_of"
ATTR_RERECORDS_REFERENCE = "rerecords_reference"  # the quality reference queued again (another server version)
ATTR_LAUNCHED = "launched"
ATTR_WARM_START_FROM = "warm_start_from"
ATTR_PEAK_CONCURRENCY = "peak_concurrency"
ATTR_HOSTNAME = "hostname"
ATTR_STARTUP_S = "startup_s"
ATTR_LEGACY_CONSTRAINT = "constraint"  # storages from before tuner used Optuna's constraints
STARTUP_PREFIX = "startup_"  # startup phases, one flat attribute each (startup_load_s, ...)

# What an answered duplicate copies from the trial that answers it, and a warm-start trial from its source.
ANSWER_ATTRS = (ATTR_SCORE, ATTR_FAILURE_CLASS, ATTR_FAILURE_DETAIL)
WARM_START_ATTRS = (*ANSWER_ATTRS, ATTR_PEAK_CONCURRENCY, ATTR_HOSTNAME)

# -- study attributes -------------------------------------------------------------------------------------------
STUDY_ATTR_STUDY_FILE = "study_file"
STUDY_ATTR_SPEC = "spec"
STUDY_ATTR_ARTIFACT_DIR = "artifact_dir"
STUDY_ATTR_SAMPLER = "sampler"
STUDY_ATTR_SEARCH_STOPPED = "search_stopped"
STUDY_ATTR_CONFIRMED_FRONT = "confirmed_front"
STUDY_ATTR_CONFIRMED_PREFIX = "confirmed_trial_"  # + search trial number: its ConfigSummary
STUDY_ATTR_MATRIX_PREFIX = "matrix_trial_"  # + trial number: {"points": [MatrixPoint, ...]}
STUDY_ATTR_QUALITY_REFERENCE = "quality_reference"  # the reference's probe answers (tuner.scoring.quality)


class TrialOrigin(StrEnum):
    """Where a stored trial came from: one origin per trial (TrialRecord.origin)."""

    SEARCH = "search"  # proposed by the sampler or enqueued, and launched (a replayed draw counts as launched here)
    PREDICTED = "predicted"  # penalized by the pre-launch check (rules, memory fit, learned failures), never launched
    ANSWERED = "answered"  # a duplicate proposal, answered with an earlier trial's result
    WARM_START = "warm_start"  # another study's trial, added to seed the sampler
    CONFIRMATION = "confirmation"  # a relaunch of a search trial's config (`confirms`)
    REFERENCE = "reference"  # the quality reference launched again to record its answers on another server version


TrialStateName = Literal["RUNNING", "WAITING", "COMPLETE", "PRUNED", "FAIL"]  # Optuna's TrialState, by name


class TrialRecord(BaseModel):
    """One trial as stored: the exact launch, what it measured or why it failed, and how the loop scored it."""

    model_config = ConfigDict(extra="ignore")

    # From Optuna's own trial
    number: int = -1
    state: TrialStateName = "COMPLETE"
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
    wall_s: float = 0.0  # the slice time the launch held: server start to teardown (waiting for a slice excluded)
    phases: dict[str, float] = Field(default_factory=dict)  # wall_s split by phase (tuner.contracts.phases)
    server_version: str = ""  # what the server reported at /version (empty: no such endpoint, or older studies)
    startup_s: float | None = None
    startup: dict[str, Any] = Field(default_factory=dict, description="startup_* phases, stored as flat attributes")
    prompts_s: float | None = None  # building every planned level's requests after startup (tuner.trial)
    prompts_built: int = 0

    # The outcome
    failure_class: FailureClass | None = None
    failure_detail: str = ""
    levels: list[LevelResult] = Field(default_factory=list)
    sweep_stopped: str = ""  # why the sweep ended early (load.stop_early): its higher levels were never measured
    killed_by: str = ""  # the signal that ended the server or its worker (SIGILL, ...); studies from before: empty
    relaunched_after: str = ""  # a first launch a signal killed before it served (relaunched once; its death counts)
    peak_concurrency: int | None = Field(None, description="the operating point's concurrency (tuner.scoring.objectives)")
    score: Score | None = Field(None, description="how the loop scored the launch (tuner.scoring.score): outcome,"
                                " values by objective, constraints, stability components, evidence, operating point")

    # Confirmation (tuner.scoring.confirmation)
    confirms: int | None = None  # a confirmation run: the search trial it relaunches

    # Where the config came from, and whether it ran
    replayed: str = ""  # drawn from a recorded surface (tuner.study.replay), not launched by this study
    warm_start_from: str = ""  # "STUDY#N": another study's trial, added to seed the sampler (tuner.study.warm_start)
    enqueued: bool = False
    requeued_from: int | None = None
    duplicate_of: int | None = None
    rerecords_reference: bool = False  # launched again to record the quality reference on another server version
    launched: bool = True
    predicted: bool = False
    prediction: str = ""
    memory_estimate: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score", mode="before")
    @classmethod
    def _no_score(cls, v: object) -> object:
        return v or None  # trials stored without a score kept {}

    @model_validator(mode="before")
    @classmethod
    def _predicted_was_never_launched(cls, data: Any) -> Any:
        """A predicted trial stored without `launched` (older storages, hand-written ones) was never launched."""
        if isinstance(data, dict) and data.get("predicted") and "launched" not in data:
            return {**data, "launched": False}
        return data

    @model_validator(mode="after")
    def _one_origin(self) -> TrialRecord:
        """The origin markers tuner writes never contradict each other; a record that says so was not written by
        tuner (or storage is corrupt), and reading it as something it is not would mislead every figure."""
        if self.predicted and self.launched:
            raise ValueError(f"trial {self.number}: stored as both predicted (never launched) and launched")
        if self.duplicate_of is not None and self.warm_start_from:
            raise ValueError(f"trial {self.number}: stored as both an answered duplicate and a warm-start trial")
        return self

    @property
    def origin(self) -> TrialOrigin:
        if self.warm_start_from:
            return TrialOrigin.WARM_START
        if self.duplicate_of is not None:
            return TrialOrigin.ANSWERED
        if self.predicted:
            return TrialOrigin.PREDICTED
        if self.rerecords_reference:
            return TrialOrigin.REFERENCE
        if self.confirms is not None:
            return TrialOrigin.CONFIRMATION
        return TrialOrigin.SEARCH

    @classmethod
    def of_result(cls, result: TrialResult, **fields: Any) -> TrialRecord:
        """A record whose launch part (command, log, phases, outcome, levels) is what the worker returned;
        `fields` give the rest (and may override a launch field, e.g. an argv the worker never built)."""
        launch = dict(
            argv=result.argv, env=result.env, hostname=result.hostname, node_id=result.node_id,
            log_path=result.log_path, log_tail=result.log_tail, wall_s=result.wall_s, startup_s=result.startup_s,
            server_version=result.server_version, startup=result.startup, phases=result.phases,
            failure_class=result.failure_class, failure_detail=result.failure_detail, levels=result.levels,
            sweep_stopped=result.sweep_stopped, killed_by=result.killed_by, relaunched_after=result.relaunched_after,
            prompts_s=result.prompts_s, prompts_built=result.prompts_built, replayed=result.replayed)
        return cls(**{**launch, **fields})

    # -- reading ------------------------------------------------------------------------------------------------
    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        attrs = dict(trial.user_attrs)
        startup = {k: v for k, v in attrs.items() if k.startswith(STARTUP_PREFIX) and k != ATTR_STARTUP_S}
        return cls.model_validate({**attrs, "number": trial.number, "state": trial.state.name,
                                   "params": dict(trial.params), "values": trial.values,
                                   "feasible": is_feasible(trial), "startup": startup})

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE.name

    @property
    def outcome(self) -> Outcome | FailureClass:
        """measured, slo_miss, unreliable, or the server's failure class (tuner.scoring.score)."""
        if self.score is not None:
            return self.score.outcome
        return self.failure_class or (Outcome.MEASURED if self.feasible else Outcome.PENALIZED)

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
        return self.score.values.get(objective) if self.run_feasible and self.score is not None else None

    @property
    def operating_concurrency(self) -> int | None:
        return self.score.operating_concurrency if self.score is not None else self.peak_concurrency

    @property
    def operating_rate(self) -> float | None:
        return self.score.operating_rate if self.score is not None else None

    @property
    def throughput(self) -> float | None:
        """Output tok/s at this launch's operating point (studies from before objectives: the first value)."""
        if not self.run_feasible:
            return None
        if self.score is not None:
            level = self.peak_level
            return level.output_throughput if level else self.score.values.get("output_tok_s")
        return self.values[0] if self.values else None

    @property
    def stability(self) -> float | None:
        if not self.run_feasible:
            return None
        if self.score is not None:
            return self.score.components.score
        return self.values[1] if self.values and len(self.values) > 1 else None

    @property
    def penalized(self) -> bool:
        """Told to Optuna as infeasible: a config failure, measured or predicted."""
        return self.complete and not self.feasible

    @property
    def peak_level(self) -> LevelResult | None:
        """The first reliable sweep level at the operating point."""
        return next((lv for lv in self.levels if lv.concurrency == self.operating_concurrency and lv.reliable
                     and lv.phase == LevelRole.SWEEP), None)

    @property
    def preemptions(self) -> float:
        return sum((lv.server.preemptions or 0.0) for lv in self.levels if lv.server)

    # -- writing ------------------------------------------------------------------------------------------------
    def user_attrs(self) -> dict[str, Any]:
        """The attributes the study writes (Optuna's own fields and empty provenance left out)."""
        data = self.model_dump(mode="json", exclude={"number", "state", "params", "values", "feasible", "startup"})
        for key in (ATTR_REQUEUED_FROM, ATTR_DUPLICATE_OF, ATTR_CONFIRMS):
            if data[key] is None:
                del data[key]
        for key in ("replayed", ATTR_WARM_START_FROM, "prompts_s", "server_version", ATTR_RERECORDS_REFERENCE,
                    "killed_by", "relaunched_after"):
            if not data[key]:
                del data[key]
        if data[ATTR_SCORE] is None:
            data[ATTR_SCORE] = {}  # as every version wrote it
        return {**data, **self.startup}

    def write(self, trial: optuna.Trial) -> None:
        for key, value in self.user_attrs().items():
            trial.set_user_attr(key, value)


# -- trial attributes the loop reads or writes before a record exists -------------------------------------------
def confirms_of(trial: FrozenTrial | optuna.Trial) -> int | None:
    """For a confirmation run: the search trial it relaunches."""
    value = trial.user_attrs.get(ATTR_CONFIRMS)
    return None if value is None else int(value)


def was_enqueued(trial: FrozenTrial | optuna.Trial) -> bool:
    """Queued from the study file's `enqueue` (the user's own configs)."""
    return bool(trial.user_attrs.get(ATTR_ENQUEUED))


def requeued_from(trial: FrozenTrial | optuna.Trial) -> int | None:
    value = trial.user_attrs.get(ATTR_REQUEUED_FROM)
    return None if value is None else int(value)


def warm_start_source(trial: FrozenTrial) -> str:
    """"STUDY#N" for another study's trial added by warm start, else ""."""
    return str(trial.user_attrs.get(ATTR_WARM_START_FROM) or "")


def measures_its_params(trial: FrozenTrial) -> bool:
    """A search trial of this study's own: not an answered duplicate, a confirmation run or a warm-start trial."""
    return (trial.user_attrs.get(ATTR_DUPLICATE_OF) is None and confirms_of(trial) is None
            and not warm_start_source(trial))


def enqueue_attrs(confirms: int | None = None) -> dict[str, Any]:
    """A queued trial's attributes: the user's config (no confirms) or a confirmation of a search trial."""
    return {ATTR_ENQUEUED: True} if confirms is None else {ATTR_CONFIRMS: confirms}


def reference_rerun_attrs() -> dict[str, Any]:
    """The quality reference queued again to record its answers on another server version: launched even though
    its parameters were measured before."""
    return {ATTR_RERECORDS_REFERENCE: True}


def rerecords_reference(trial: FrozenTrial | optuna.Trial) -> bool:
    return bool(trial.user_attrs.get(ATTR_RERECORDS_REFERENCE))


def requeue_attrs(trial: FrozenTrial | optuna.Trial) -> dict[str, Any]:
    """What a re-queued trial carries: where it came from, and the search trial it confirms, if any."""
    carried: dict[str, Any] = {ATTR_REQUEUED_FROM: trial.number}
    confirms = confirms_of(trial)
    if confirms is not None:
        carried[ATTR_CONFIRMS] = confirms
    return carried


def failure_attrs(failure_class: FailureClass, detail: str) -> dict[str, Any]:
    """A trial that ends FAIL without a record of its own (interrupted, its driver gone)."""
    return {ATTR_FAILURE_CLASS: failure_class.value, ATTR_FAILURE_DETAIL: detail}


def duplicate_attrs(earlier: FrozenTrial) -> dict[str, Any]:
    """A proposal identical to `earlier`: not launched; answered from it when it has finished."""
    attrs: dict[str, Any] = {ATTR_DUPLICATE_OF: earlier.number, ATTR_LAUNCHED: False}
    if earlier.state == TrialState.RUNNING:
        attrs[ATTR_FAILURE_DETAIL] = f"same parameters as trial {earlier.number}, still running"
        return attrs
    return attrs | {key: earlier.user_attrs[key] for key in ANSWER_ATTRS if key in earlier.user_attrs}


def warm_start_attrs(source_study: str, source: FrozenTrial) -> dict[str, Any]:
    """What a warm-start trial carries from its source, besides params, values and constraints."""
    attrs = {key: source.user_attrs[key] for key in WARM_START_ATTRS if key in source.user_attrs}
    return attrs | {ATTR_WARM_START_FROM: f"{source_study}#{source.number}", ATTR_LAUNCHED: False}


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible per Optuna's constraints; storages written before tuner used them keep a `constraint` attribute."""
    if trial.constraints:
        return all(c <= 0 for c in trial.constraints.values())
    return float(trial.user_attrs.get(ATTR_LEGACY_CONSTRAINT, 1.0)) <= 0


def records(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=states)]


# -- the study's own record ------------------------------------------------------------------------------------
class StoredHardware(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None


class StoredConfirm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    repeats: int = 0


class StoredReplay(BaseModel):
    model_config = ConfigDict(extra="ignore")
    surface: str = ""


class StoredServer(BaseModel):
    model_config = ConfigDict(extra="allow")

    command: list[str] = Field(default_factory=lambda: ["vllm", "serve"])


class StoredSpec(BaseModel):
    """The study spec as stored with it (tuner.study._bookkeeping.stored_spec: secrets redacted). Only what readers
    of a stored study need is typed; the rest is kept as written. A missing field has the default studies had
    before it existed."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    hardware: StoredHardware | None = None
    objectives: list[str] = Field(default_factory=list)
    slo: dict[str, float] = Field(default_factory=dict)
    price_per_slice_hour: float | None = None
    slo_margin: float = 0.0  # studies stored before the margin existed: none
    confirm: StoredConfirm = Field(default_factory=StoredConfirm)
    replay: StoredReplay | None = None
    enqueue_labels: list[str] = Field(default_factory=list)
    server: StoredServer = Field(default_factory=StoredServer)

    def goals(self) -> Goals:
        return Goals.on_slice(self.objectives, self.slo, self.hardware.name if self.hardware else None,
                              self.price_per_slice_hour, self.slo_margin)


class MatrixRun(BaseModel):
    """`tuner study matrix` kept with the study, so the report draws it from storage alone."""

    points: list[dict[str, Any]] = Field(default_factory=list)  # tuner.load.matrix.MatrixPoint, as dumped


class StudyRecord(BaseModel):
    """The study's own attributes: the file and spec it was created from, this run's sampler, why the search
    stopped early, the confirmed configs and front, and the matrices measured for its trials."""

    study_file: str = ""
    spec: StoredSpec = Field(default_factory=StoredSpec)
    artifact_dir: str = ""
    sampler: str = ""
    search_stopped: str = ""
    confirmed_front: list[int] = Field(default_factory=list)
    confirmed: dict[int, ConfigSummary] = Field(default_factory=dict)
    matrices: dict[int, MatrixRun] = Field(default_factory=dict)
    quality_reference: QualityReference | None = None

    @classmethod
    def of(cls, study: optuna.Study | optuna.study.StudySummary) -> StudyRecord:
        attrs = dict(study.user_attrs)
        return cls.model_validate({
            "study_file": attrs.get(STUDY_ATTR_STUDY_FILE, ""), "spec": attrs.get(STUDY_ATTR_SPEC) or {},
            "artifact_dir": attrs.get(STUDY_ATTR_ARTIFACT_DIR) or "", "sampler": attrs.get(STUDY_ATTR_SAMPLER, ""),
            "search_stopped": attrs.get(STUDY_ATTR_SEARCH_STOPPED, ""),
            "confirmed_front": attrs.get(STUDY_ATTR_CONFIRMED_FRONT) or [],
            "confirmed": _numbered(attrs, STUDY_ATTR_CONFIRMED_PREFIX),
            "matrices": _numbered(attrs, STUDY_ATTR_MATRIX_PREFIX),
            "quality_reference": attrs.get(STUDY_ATTR_QUALITY_REFERENCE) or None,
        })


def _numbered(attrs: dict[str, Any], prefix: str) -> dict[int, Any]:
    return {int(key.removeprefix(prefix)): value for key, value in attrs.items()
            if key.startswith(prefix) and key.removeprefix(prefix).isdigit() and isinstance(value, dict)}


def write_created(study: optuna.Study, study_file: str, spec: dict[str, Any], artifact_dir: str) -> None:
    """What a new study keeps from the file it was created from."""
    study.set_user_attr(STUDY_ATTR_STUDY_FILE, study_file)
    study.set_user_attr(STUDY_ATTR_SPEC, spec)
    study.set_user_attr(STUDY_ATTR_ARTIFACT_DIR, artifact_dir)


def write_sampler(study: optuna.Study, name: str) -> None:
    study.set_user_attr(STUDY_ATTR_SAMPLER, name)  # this run's: `auto` can choose anew on resume


def write_search_stopped(study: optuna.Study, message: str) -> None:
    study.set_user_attr(STUDY_ATTR_SEARCH_STOPPED, message)


def write_confirmed(study: optuna.Study, confirmed: list[ConfigSummary], front: list[int]) -> None:
    """Each confirmed config's combined numbers and the front (a finished trial cannot be changed;
    optuna-dashboard shows study attributes beside the trials)."""
    for summary in confirmed:
        study.set_user_attr(f"{STUDY_ATTR_CONFIRMED_PREFIX}{summary.trial}", summary.model_dump(mode="json"))
    study.set_user_attr(STUDY_ATTR_CONFIRMED_FRONT, front)


def write_quality_reference(study: optuna.Study, reference: QualityReference) -> None:
    study.set_user_attr(STUDY_ATTR_QUALITY_REFERENCE, reference.model_dump(mode="json"))


def write_matrix(study: optuna.Study, trial_number: int, points: list[dict[str, Any]]) -> None:
    study.set_user_attr(f"{STUDY_ATTR_MATRIX_PREFIX}{trial_number}", MatrixRun(points=points).model_dump())


@dataclass(frozen=True)
class TrialCounts:
    """What a study's finished trials amount to, counted once for the loop's budget and the status table alike."""

    search: list[TrialRecord]  # finished search trials of this study's own (no confirmations, answers, warm start)
    launched: list[TrialRecord]  # those that cost a launch: the budget counts these
    predicted: list[TrialRecord]  # penalized by prediction (rules, memory fit), never launched
    penalized: list[TrialRecord]  # search trials told as infeasible, measured or predicted
    feasible: list[TrialRecord]
    confirmations: list[TrialRecord]  # finished confirmation runs
    answered: list[TrialRecord]  # duplicate proposals answered from an earlier trial
    warm: list[TrialRecord]  # another study's trials seeding the sampler

    @classmethod
    def of(cls, recs: list[TrialRecord]) -> TrialCounts:
        complete = [r for r in recs if r.complete]
        search = [r for r in complete if r.search_launch]
        penalized = [r for r in search if r.penalized]
        return cls(search=search, launched=[r for r in search if r.launched],
                   predicted=[r for r in penalized if not r.launched], penalized=penalized,
                   feasible=[r for r in search if r.feasible],
                   confirmations=[r for r in complete if r.confirms is not None],
                   answered=[r for r in complete if r.answered], warm=[r for r in complete if r.warm_start_from])


def best_by(candidates: list[TrialRecord], objective: str) -> TrialRecord:
    """The best single launch by "throughput" or "stability", ties broken by the other."""
    other = "stability" if objective == "throughput" else "throughput"
    return max(candidates, key=lambda r: (getattr(r, objective) or 0.0, getattr(r, other) or 0.0))
