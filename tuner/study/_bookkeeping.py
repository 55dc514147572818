"""The study's Optuna side: create or load the study, propose the next config, and record what each trial gave.

Nothing here knows Ray. The driver is the only writer to storage: every trial's record (tuner.study.records) is
written here, its feasibility set as an Optuna constraint, and its server log, request records and any traceback
kept as artifacts.
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from tuner.capacity.failure_rules import KnownFailure, predict_kv_capacity
from tuner.contracts.results import TrialResult
from tuner.inputs.spec import Study
from tuner.planning.prelaunch import Prescreen, model_context, pre_launch, prompt_vocab_size
from tuner.scoring.confirmation import (
    candidates,
    improves_front,
    machine_noise,
    search_front,
    summaries,
    summarize,
)
from tuner.scoring.score import Score, score_run
from tuner.server.config import ServerConfig, build_server_config, redact_env
from tuner.server.failures import FailureClass
from tuner.study._lease import Lease, claimed_before
from tuner.study._optuna import enqueued_params, storage_of, trial_id_of
from tuner.study._quality import QualityGuard
from tuner.study._sampler import SamplerChoice, choose_sampler, make_sampler
from tuner.study.cost import StudyCost, study_cost
from tuner.study.front import study_front
from tuner.study.records import (
    TrialCounts,
    TrialRecord,
    confirms_of,
    duplicate_attrs,
    enqueue_attrs,
    failure_attrs,
    measures_its_params,
    records,
    reference_rerun_attrs,
    requeue_attrs,
    requeued_from,
    rerecords_reference,
    set_attrs,
    was_enqueued,
    write_confirmed,
    write_created,
    write_sampler,
)
from tuner.study.warm_start import WarmTrial, add_warm_trials
from tuner.trial.sweep_plan import TrialOutcome

PROPOSING_WAIT_S = 10.0  # how long a proposal waits for an earlier one another driver is still writing


def _may_become(partial: dict[str, Any], params: dict[str, Any]) -> bool:
    """A trial's parameters, written one by one, may still end up equal to `params`."""
    return len(partial) < len(params) and all(params.get(k, object()) == v for k, v in partial.items())


def stored_spec(study: Study) -> dict[str, Any]:
    """The study spec as kept in storage: secret env values (HF_TOKEN, API keys) never leave the machine."""
    spec = json.loads(study.spec.model_dump_json())
    spec["server"]["env"] = redact_env(spec["server"]["env"])
    return spec


def artifact_dir(runs_dir: Path | str) -> Path:
    return Path(runs_dir) / "artifacts"


def create_or_load(study: Study, storage: optuna.storages.BaseStorage, name: str,
                   warm: Sequence[WarmTrial] = (), sampler_choice: SamplerChoice | None = None) -> optuna.Study:
    """Create the study (or load it to continue), seed it with `warm` trials not added before, and queue the study
    file's new `enqueue` entries. `sampler_choice`: this run's sampler (default: choose_sampler's)."""
    choice = sampler_choice or choose_sampler(study)
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    sampler = make_sampler(study, seed_offset=existing.get(name, 0), choice=choice)
    goals = study.spec.goals()
    optuna_study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                       directions=goals.directions, load_if_exists=True)
    if name not in existing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna_study.set_metric_names(list(goals.objectives))
        write_created(optuna_study, str(study.path), stored_spec(study),
                      str(artifact_dir(study.spec.runs_dir).absolute()))
    write_sampler(optuna_study, choice.name)
    add_warm_trials(optuna_study, list(warm))
    enqueue_new(study, optuna_study)
    return optuna_study


def enqueue_new(study: Study, optuna_study: optuna.Study) -> list[dict[str, Any]]:
    """Queue the study file's `enqueue` entries not queued before: entries added to the file after the study was
    created run on the next `study start` too, and no entry runs more often than the file lists it. Returns the
    entries queued now."""
    queued = [enqueued_params(t) for t in optuna_study.get_trials(deepcopy=False) if was_enqueued(t)]
    added = []
    reference = study.spec.quality_reference()
    # The quality guard's reference runs first: queued ahead of the file's entries when it is not one of them.
    entries = ([reference] if reference is not None and reference not in study.spec.enqueue else []) + study.spec.enqueue
    for params in entries:
        if params in queued:
            queued.remove(params)  # this listing of it was queued before
            continue
        optuna_study.enqueue_trial(params, user_attrs=enqueue_attrs())
        added.append(params)
    return added


def recover_interrupted(optuna_study: optuna.Study, lease: Lease | None = None) -> list[int]:
    """Trials whose driver is gone: mark them failed (infra) and queue their parameters again. With a lease, those
    whose lease expired (tuner.study._lease); without, every RUNNING trial (a storage no other driver uses).

    Several drivers may find the same expired trial: only the one whose FAIL lands re-queues it, so it runs again
    exactly once."""
    # Optuna has no public API to set attributes on a trial another process left RUNNING: its storage API, with the
    # trial's storage id, is the way (Study.tell by number alone cannot record why the trial failed).
    storage = storage_of(optuna_study)
    why = failure_attrs(FailureClass.INFRA, "the tuner driver running this trial stopped (its lease expired); re-queued")
    gone = lease.expired() if lease is not None else optuna_study.get_trials(deepcopy=False,
                                                                             states=(TrialState.RUNNING,))
    recovered = []
    for t in gone:
        trial_id = trial_id_of(t)
        try:
            # Attributes first: a finished trial takes none. Another driver writing the same ones is harmless.
            for key, value in why.items():
                storage.set_trial_user_attr(trial_id, key, value)
            won = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # finished meanwhile: by its own driver, or failed by another driver that found it first
        if not won:
            continue
        if t.params:
            optuna_study.enqueue_trial(t.params, user_attrs=requeue_attrs(t))
        recovered.append(t.number)
    return recovered


@dataclass
class Proposal:
    """A config to launch: the Optuna trial that asked for it and the exact server config."""

    trial: optuna.Trial
    params: dict[str, Any]
    config: ServerConfig

    @property
    def confirms(self) -> int | None:
        """For a confirmation run: the search trial it relaunches."""
        return confirms_of(self.trial)


@dataclass(frozen=True)
class Recorded:
    """A proposal recorded without a launch: a duplicate answered from an earlier trial, or a rule breaker or
    predicted non-fit told as penalized. What to tell the user about it."""

    message: str


@dataclass
class Counts:
    """The budget and the best so far, from storage."""

    launched: int = 0  # complete trials that cost a launch (the budget counts these)
    predicted: int = 0  # penalized by prediction, never launched
    penalized: int = 0
    confirmations: int = 0  # complete confirmation runs
    best_throughput: tuple[int, float] | None = None
    running: dict[int, bool] = field(default_factory=dict)  # RUNNING trials, any driver's: number -> search trial
    cost: StudyCost = field(default_factory=lambda: StudyCost(0, 0.0))  # slice time of finished launches


class Bookkeeper:
    def __init__(self, study: Study, optuna_study: optuna.Study) -> None:
        self.study = study
        self.spec = study.spec
        self.optuna_study = optuna_study
        self.fit_context = model_context(study) if self.spec.prescreen else None
        self.goals = study.spec.goals()
        self.artifact_store = self._open_artifact_store()
        self.quality = QualityGuard(study, optuna_study, prompt_vocab_size(study) if self.spec.quality.enabled else None)

    # -- asking ---------------------------------------------------------------------------------------------
    def propose(self) -> Proposal | Recorded:
        """The next config to launch, or what happened instead (a duplicate, or a rule breaker / predicted non-fit,
        recorded here as penalized without a launch)."""
        trial = self.optuna_study.ask()
        params = self.study.space.sample(trial)
        relaunch = confirms_of(trial) is not None or rerecords_reference(trial)
        earlier = None if relaunch else self._same_params(params, trial)
        if earlier is not None:
            return self._answer_duplicate(trial, earlier)
        config = build_server_config(self.spec, self.study.space, params)
        proposal = Proposal(trial, params, config)
        verdict = pre_launch(self.study, params, config, self.fit_context)
        if verdict.launch and self.spec.predict_from_failures:
            verdict = self._learned_verdict(config) or verdict
        if verdict.launch:
            return proposal
        result = TrialResult(argv=[], env={}, failure_class=verdict.failure_class, failure_detail=verdict.detail)
        self.tell(proposal, result, attempts=0, prediction=verdict)
        return Recorded(f"trial {trial.number} done: penalized: {result.failure_class} (predicted, not launched)")

    # -- telling --------------------------------------------------------------------------------------------
    def tell(self, proposal: Proposal, result: TrialResult, attempts: int,
             prediction: Prescreen | None = None) -> Score:
        """A trial that ran (or was judged before launch): record it, score it, tell Optuna."""
        version_note = self.quality.version_changed(result)
        if version_note and self.quality.is_reference(proposal.params):
            version_note = ""  # the reference itself: its answers are the new reference, recorded just below
        elif version_note:  # judged against nothing rather than against another version's answers
            self.optuna_study.enqueue_trial(self.quality.reference_params or {}, user_attrs=reference_rerun_attrs())
        self.quality.record_if_reference(proposal.params, proposal.trial.number, result)
        score = score_run(result, self.goals, None if version_note else self.quality.check())
        if version_note:
            score = score.model_copy(update={"flags": [*score.flags, f"quality not judged: {version_note}"]})
        self._record(proposal, result, attempts, score, prediction)
        # Optuna's constraint-aware samplers (TPE, NSGA-II, GP) and Study.best_trials read these: > 0 is infeasible.
        for name, value in score.constraints.items():
            proposal.trial.set_constraint(name, value)
        self.optuna_study.tell(proposal.trial, score.ordered_values(self.goals))
        return score

    def fail(self, proposal: Proposal, result: TrialResult, attempts: int, requeue: bool) -> None:
        """A trial that was not measured (infra gave up, a tuner error): FAIL, never counted in the budget."""
        self._record(proposal, result, attempts, None, None)
        self.optuna_study.tell(proposal.trial, state=TrialState.FAIL)
        if requeue:
            self.optuna_study.enqueue_trial(proposal.params, user_attrs=requeue_attrs(proposal.trial))

    def abandon(self, proposal: Proposal) -> None:
        """Stopped while running (Ctrl-C, another trial's bug): FAIL, parameters queued for the next run."""
        set_attrs(proposal.trial, failure_attrs(FailureClass.INFRA, "interrupted; re-queued for the next run"))
        self.optuna_study.tell(proposal.trial, state=TrialState.FAIL)
        self.optuna_study.enqueue_trial(proposal.params, user_attrs=requeue_attrs(proposal.trial))

    def keep_artifacts(self, proposal: Proposal, attempt: int, outcome: TrialOutcome) -> None:
        """Server log, raw per-request records and any traceback of every attempt, linked from the trial."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in outcome.artifacts().items():
                if not text:
                    continue
                path = Path(tmp) / f"trial-{proposal.trial.number}-attempt-{attempt}-{name}"
                path.write_text(text)
                mimetype = "application/jsonl" if name.endswith(".jsonl") else "text/plain"
                optuna.artifacts.upload_artifact(artifact_store=self.artifact_store, file_path=str(path),
                                                 study_or_trial=proposal.trial, mimetype=mimetype, encoding="utf-8")

    # -- reading --------------------------------------------------------------------------------------------
    def counts(self) -> Counts:
        trials = self.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                                      TrialState.FAIL))
        ended = [TrialRecord.of(t) for t in trials if t.state != TrialState.RUNNING]
        finished = TrialCounts.of([r for r in ended if r.complete])
        counts = Counts(running={t.number: confirms_of(t) is None
                                 for t in trials if t.state == TrialState.RUNNING},
                        cost=study_cost(ended, self.spec.price_per_slice_hour))
        # The budget counts launched search trials: a config penalized without a launch cost no accelerator time,
        # and confirmation runs are the confirmation's own budget (confirm.repeats x confirm.candidates).
        counts.launched = len(finished.launched)
        counts.predicted = len(finished.search) - counts.launched
        counts.confirmations = len(finished.confirmations)
        counts.penalized = len(finished.penalized)
        if finished.feasible:
            best = max(finished.feasible, key=lambda r: r.throughput or 0.0)
            counts.best_throughput = (best.number, best.throughput or 0.0)
        return counts

    def trials_since_front_improved(self) -> int:
        """Launched search trials, in order, since the last one that improved the study's front (the front the user
        sees before confirmation, tuner.scoring.confirmation.search_front: a new trade-off beyond the machine's
        noise), counted from the first feasible one: before it there is no front to improve."""
        recs = sorted(records(self.optuna_study, states=(TrialState.COMPLETE,)), key=lambda r: r.number)
        noise = machine_noise(recs, self.goals)
        launched = [r for r in recs if r.search_launch and r.launched]
        stale = 0
        for i, record in enumerate(launched):
            front = search_front(launched[:i], self.goals, noise)
            if improves_front(summarize([record], self.goals, noise, repeats=0), front, self.goals, noise):
                stale = 0
            elif front:
                stale += 1
        return stale

    # -- confirming -----------------------------------------------------------------------------------------
    def plan_confirmations(self) -> int:
        """Queue the relaunches the front's candidates still need (idempotent: queued, running and done ones count).
        Returns how many confirmation runs are waiting to be launched."""
        repeats = self.spec.confirm.repeats
        if not repeats:
            return 0
        trials = self.optuna_study.get_trials(deepcopy=False)
        recs = [TrialRecord.of(t) for t in trials]
        live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
        have: dict[int, int] = {}
        for t in trials:
            target = confirms_of(t)
            if target is not None and t.state in live:
                have[target] = have.get(target, 0) + 1
        for candidate in candidates(recs, self.goals, self.spec.confirm.candidates):
            for _ in range(repeats - have.get(candidate.trial, 0)):
                self.optuna_study.enqueue_trial(candidate.params, user_attrs=enqueue_attrs(confirms=candidate.trial),
                                                skip_if_exists=False)
        return sum(1 for t in self.optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                   if confirms_of(t) is not None)

    def soak_point(self, search_trial: int) -> tuple[int | None, float | None]:
        """The operating point a confirmation run soaks at: (concurrency, arrival rate or None)."""
        record = TrialRecord.of(self.optuna_study.trials[search_trial])
        return record.operating_concurrency, record.operating_rate

    def write_confirmed(self) -> list[int]:
        """Store each confirmed config's combined numbers and the front as study attributes (a finished trial cannot
        be changed; optuna-dashboard shows study attributes beside the trials); returns the front's trial numbers."""
        front = study_front(self.optuna_study)
        recs = [TrialRecord.of(t) for t in self.optuna_study.get_trials(deepcopy=False)]
        relaunched = [s for s in summaries(recs, self.goals, self.spec.confirm.repeats) if len(s.runs) > 1]
        numbers = [s.trial for s in front.configs] if front.confirmed else []
        write_confirmed(self.optuna_study, relaunched, numbers)
        return numbers

    # -- helpers --------------------------------------------------------------------------------------------
    def _record(self, proposal: Proposal, result: TrialResult, attempts: int, score: Score | None,
                prediction: Prescreen | None) -> None:
        """The trial's record, written through TrialRecord. `prediction`: a config judged before launch, never
        launched: its failure class is predicted, not measured."""
        config = proposal.config
        record = TrialRecord.of_result(
            result, argv=result.argv or config.argv(self.spec.server.host, 0), env=result.env or config.redacted_env(),
            server_flags=config.flags, attempts=attempts, rerecords_reference=rerecords_reference(proposal.trial),
            score=score, peak_concurrency=score.operating_concurrency if score else None,
            confirms=proposal.confirms, enqueued=was_enqueued(proposal.trial), requeued_from=requeued_from(proposal.trial),
            launched=prediction is None, predicted=prediction is not None,
            prediction=prediction.detail if prediction else "", memory_estimate=prediction.estimate if prediction else {})
        record.write(proposal.trial)

    def _learned_verdict(self, config: ServerConfig) -> Prescreen | None:
        """A config that a measured kv_capacity failure already rules out (tuner.capacity.failure_rules): not launched."""
        failures = [KnownFailure(r.number, r.server_flags, r.env)
                    for r in (TrialRecord.of(t) for t in self.optuna_study.get_trials(
                        deepcopy=False, states=(TrialState.COMPLETE,)))
                    if r.launched and r.failure_class == FailureClass.KV_CAPACITY]
        predicted = predict_kv_capacity(config.flags, config.redacted_env(), failures)
        if predicted is None:
            return None
        return Prescreen(launch=False, failure_class=predicted.failure_class, detail=predicted.detail,
                         estimate={"learned_from": predicted.learned_from})

    def _same_params(self, params: dict[str, Any], trial: optuna.Trial) -> FrozenTrial | None:
        """An earlier search trial with these parameters that ran or is running (never an answered duplicate, nor
        another study's trial added by warm start: that config has not been measured on this study's hardware).

        A running one counts only if it was claimed before this one (tuner.study._lease.claimed_before): two drivers
        proposing one config at the same moment then agree on which of them launches it. One claimed before this
        one whose parameters are still being written (another driver is proposing it right now) is waited for."""
        deadline = time.monotonic() + PROPOSING_WAIT_S
        while True:
            undecided = False
            for t in self.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if t.number == trial.number or not measures_its_params(t):
                    continue
                if t.state == TrialState.RUNNING and not claimed_before(t, trial):
                    continue
                if t.params == params:
                    return t
                if t.state == TrialState.RUNNING and _may_become(t.params, params):
                    undecided = True
            if not undecided or time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def _answer_duplicate(self, trial: optuna.Trial, earlier: FrozenTrial) -> Recorded:
        """A proposal identical to an earlier trial is not launched. A finished one answers it: same values and
        constraints, so the sampler learns nothing false (a PRUNED or penalized answer would push it away from a
        good config). One still running cannot answer yet: FAIL, which samplers ignore."""
        set_attrs(trial, duplicate_attrs(earlier))
        if earlier.state == TrialState.RUNNING:
            self.optuna_study.tell(trial, state=TrialState.FAIL)
            return Recorded(f"trial {trial.number}: same parameters as trial {earlier.number} (running), not launched")
        for name, value in earlier.constraints.items():
            trial.set_constraint(name, value)
        self.optuna_study.tell(trial, earlier.values)
        return Recorded(f"trial {trial.number}: same parameters as trial {earlier.number}, answered from it without a"
                        " launch")

    def _open_artifact_store(self) -> optuna.artifacts.FileSystemArtifactStore:
        path = artifact_dir(self.spec.runs_dir)
        path.mkdir(parents=True, exist_ok=True)
        return optuna.artifacts.FileSystemArtifactStore(str(path))
