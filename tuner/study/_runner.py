"""The study loop: propose configs, run them on the executor, record what came back, until a stop rule ends the search
(tuner.study._stop_rules: trial count, duplicates, budget, patience, infra streak), then confirm the front.

What comes back is handled by its failure class's disposition (tuner.study._dispositions: tell, retry, stop as a
setup error, stop as a bug; a server a signal killed before it served is relaunched once first). The trial count
counts launched COMPLETE trials (penalized ones included).

Several drivers may run one study (one storage, e.g. PostgreSQL). Each holds a lease on the trials it runs
(tuner.study._lease) and counts every driver's running search trials against the trial count, read from storage
before each launch (tuner.study._drivers). Two drivers that read the last free place at the same moment both launch:
the count can be exceeded by at most one launch per extra driver. A driver with nothing left to launch stays while
trials of others run, so that one of theirs whose driver dies is re-queued (once its lease expires) and run here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from tuner.errors import InfrastructureError
from tuner.inputs.spec import Study, StudySpec
from tuner.planning.launch_time import estimated_launch_s
from tuner.planning.prelaunch import prompt_vocab_size
from tuner.planning.traffic import Traffic, resolve_traffic, sweep_plan
from tuner.study._bookkeeping import Bookkeeper, Recorded
from tuner.study._dispositions import Attempt, Dispositions
from tuner.study._drivers import POLL_S, OtherDrivers
from tuner.study._executor import Executor, RayExecutor, Task
from tuner.study._lease import Lease
from tuner.study._progress import Progress, Snapshot
from tuner.study._stop_rules import SearchState, Stop, StopReason, first_stop, rules_for
from tuner.study.front import front_bars
from tuner.study.records import StudyRecord, records, write_search_stopped
from tuner.study.replay import ReplayExecutor, Surface
from tuner.trial import launch
from tuner.trial.sweep_plan import LaunchRequest

WAIT_S = 0.5

__all__ = ["Attempt", "Snapshot", "StudyRunner"]


def default_executor(spec: StudySpec, surface: Surface | None, task: Task,
                     ray_address: str | None) -> Executor[Attempt]:
    """Ray workers, one per slice; or the recorded surface when the study replays one."""
    if surface is not None and spec.replay is not None:
        return ReplayExecutor[Attempt](surface, spec.replay.seed, lambda attempt: dict(attempt.proposal.trial.params))
    return RayExecutor[Attempt](task, spec.resources, spec.accelerator_type, ray_address)


class StudyRunner:
    def __init__(self, study: Study, optuna_study: optuna.Study, total_trials: int,
                 on_progress: Callable[[Snapshot], None] = lambda s: None, ray_address: str | None = None,
                 traffic: Traffic | None = None, surface: Surface | None = None,
                 task: Task = launch, executor: Executor[Attempt] | None = None) -> None:
        self.study, self.spec, self.optuna_study = study, study.spec, optuna_study
        self.task = task  # what runs one attempt on a worker: launch, or a test's wrapper of it
        self.executor = executor  # None until run(): Ray (or the replay surface), unless a test or library hands one in
        self.ray_address = ray_address
        self.surface = surface or (Surface.load(self.spec.replay.surface) if self.spec.replay else None)
        self.books = Bookkeeper(study, optuna_study)
        # Resolved once: the traffic file, SLO limits and hardware do not change between trials.
        self.plan = sweep_plan(study, traffic or resolve_traffic(study))
        self.vocab_size = prompt_vocab_size(study)
        self.runs_dir = Path(self.spec.runs_dir) / optuna_study.study_name
        self.total = total_trials  # search trials this run will have launched: shrinks when a stop rule fires
        self.trials_given = total_trials
        self.rules = rules_for(self.spec)
        self.stopped: Stop | None = None  # the rule that ended the search
        self.not_launched_in_a_row = 0  # proposals that cost no launch: duplicates, rule breakers, predicted non-fits
        self.progress = Progress(self.spec, total_trials, on_progress, self._running)
        self.dispositions = Dispositions(study, self.books, self.progress, self.runs_dir,
                                         launch_again=self._submit, settled=self._settled)
        self.others = OtherDrivers(optuna_study, self.progress.event)
        self.lease: Lease | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self.progress.snapshot

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> Snapshot:
        self._count()
        executor = self.executor = self.executor or default_executor(self.spec, self.surface, self.task,
                                                                     self.ray_address)
        with executor, Lease(self.optuna_study, self.spec.lease) as self.lease:
            try:
                self._poll_storage(force=True)  # re-queue trials whose driver is gone
                if self._apply_stop_rules() and StudyRecord.of(self.optuna_study).search_stopped:
                    write_search_stopped(self.optuna_study, "")  # a stored reason from an earlier run no longer holds
                while True:
                    self._poll_storage()
                    self._launch_search()
                    if not executor.running and self.snapshot.complete >= self.total:
                        self._launch_confirmations()
                    if not executor.running:
                        if not self._others_running():
                            break
                        time.sleep(POLL_S)  # theirs may yet fail or expire and be re-queued for us
                    for attempt, outcome in executor.wait(WAIT_S):
                        self.dispositions.finish(attempt, outcome)
                    self.progress.phases((a.trial_number, report) for a, report in executor.phase_reports())
                    self.progress.publish()
            except BaseException:
                self._abandon_running()
                raise
        return self.snapshot

    def _launch_search(self) -> None:
        self._apply_stop_rules()  # records why, even when there is no room to launch (the trials are used)
        while self._room_to_launch() and self._apply_stop_rules():
            proposed = self.books.propose()
            if isinstance(proposed, Recorded):
                self.not_launched_in_a_row += 1
                self._count()
                self.progress.event(proposed.message)
                continue
            self.not_launched_in_a_row = 0
            self._submit(Attempt(proposed, number=1))

    def _room_to_launch(self) -> bool:
        """A free place here and in the trial count, counting every driver's running search trials (read again from
        storage when there seems to be room, so another driver's launch a moment ago is counted)."""
        def room() -> bool:
            in_flight = len(self._running()) + self.others.search_trials_running
            # Until the quality reference has answered, one launch at a time: the others are judged against it.
            parallel = 1 if self.books.quality.waiting_for_reference() else self.spec.parallel
            return len(self._running()) < parallel and self.snapshot.complete + in_flight < self.total

        if not room():
            return False
        self._count()
        return room()

    def _launch_confirmations(self) -> None:
        """After the search: relaunch the configs on and near the front (tuner.scoring.confirmation). Runs once the
        search trials are all done, so candidates come from the whole search; queued runs survive a restart."""
        waiting = self.books.plan_confirmations()
        if not waiting:
            if self.snapshot.confirming or self.snapshot.confirmations:
                front = self.books.write_confirmed()
                self.progress.event(f"confirmed front: trials {front}" if front else "no config was confirmed")
            return
        if not self.snapshot.confirming:
            self.snapshot.confirming = True
            self.progress.event(f"search done; confirming the front: {waiting} relaunch(es)")
        while len(self._running()) < self.spec.parallel and waiting:
            proposed = self.books.propose()
            waiting -= 1
            if isinstance(proposed, Recorded):
                self.progress.event(proposed.message)
                continue
            self._submit(Attempt(proposed, number=1))

    def _submit(self, attempt: Attempt) -> None:
        assert self.executor is not None and self.lease is not None
        proposal = attempt.proposal
        log_path = self.runs_dir / f"trial-{attempt.trial_number:04d}-attempt-{attempt.number}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.lease.hold(proposal.trial)  # held across infra retries, until the trial is told
        plan = self.plan.with_quality(self.books.quality.plan_for(proposal.params, proposal.config))
        if proposal.confirms is not None:
            plan = plan.with_soak(*self.books.soak_point(proposal.confirms))
        elif self.spec.load.stop_dominated:  # a search launch stops once it cannot reach the front
            plan = plan.with_front(front_bars(records(self.optuna_study), self.books.goals))
        self.executor.submit(attempt, LaunchRequest(
            config=proposal.config, plan=plan, timeouts=self.spec.timeouts, log_path=str(log_path.absolute()),
            host=self.spec.server.host, vocab_size=self.vocab_size))
        kind = f"confirming trial {proposal.confirms}, " if proposal.confirms is not None else ""
        self.progress.event(f"trial {attempt.trial_number} started ({kind}attempt {attempt.number})")

    # -- stop rules -----------------------------------------------------------------------------------------
    def _apply_stop_rules(self) -> bool:
        """True while the search may launch. The one place a stop rule ends the search: running launches finish,
        the reason is recorded for `tuner study status`, and a fatal rule (an infra streak) stops the study; the
        fatal rules hold during the confirmation runs too."""
        s = self.snapshot
        state = SearchState(
            trials=self.trials_given, launched=s.complete, running_s=tuple(s.running.values()), spent_s=s.slice_s,
            expected_launch_s=s.launch_s if s.launch_s is not None else estimated_launch_s(self.spec)[0],
            not_launched_in_a_row=self.not_launched_in_a_row,
            infra_give_ups_in_a_row=self.dispositions.infra_give_ups_in_a_row,
            trials_since_front_improved=self.books.trials_since_front_improved)
        stop = first_stop([r for r in self.rules if self.stopped is None or r.fatal], state)
        if stop is None:
            return self.stopped is None
        self.stopped = stop
        self.total = self.snapshot.total = min(self.total, self.snapshot.complete + len(self._running()))
        write_search_stopped(self.optuna_study, stop.message)
        if stop.reason != StopReason.TRIALS:  # the plain end of the search needs no event of its own
            self.progress.event(stop.message)
        if stop.fatal:
            raise InfrastructureError(f"{stop.message}, the last with: {self.dispositions.last_infra_detail[:200]}"
                                      " (see `tuner study status`); fix the cluster and run the same command")
        return False

    def _abandon_running(self) -> None:
        """On Ctrl-C or an error: stop running trials (their servers die with their workers) and re-queue them."""
        if self.executor is None:
            return
        for attempt in self.executor.cancel_all():
            try:
                self.books.abandon(attempt.proposal)
            except UpdateFinishedTrialError:
                pass  # another driver re-queued it already (this one had stalled past its lease)
            self._settled(attempt)

    # -- storage and other drivers --------------------------------------------------------------------------
    def _running(self) -> dict[int, float]:
        """This driver's running attempts: trial number -> when it started."""
        return {a.trial_number: a.started for a in self.executor.running} if self.executor else {}

    def _settled(self, attempt: Attempt) -> None:
        """A trial recorded for good (or given back): its lease released, the counts read again."""
        if self.lease is not None:
            self.lease.release(attempt.trial_number)
        self._count()

    def _count(self) -> None:
        counts = self.books.counts()
        self.progress.count(counts)
        self.others.count(counts, own=set(self._running()))

    def _poll_storage(self, force: bool = False) -> None:
        """Every POLL_S: expired leases re-queued, and what other drivers are running."""
        if not (self.others.due() or force):
            return
        if self.lease is not None:
            self.others.recover(self.lease)
        self._count()

    def _others_running(self) -> bool:
        """Trials of other drivers (or of a killed one, lease not yet expired) are running: this driver stays, so
        that one whose driver is gone is re-queued here and run."""
        self._poll_storage()
        if self.others.running and not self.snapshot.last_event.startswith("waiting for"):
            self.progress.event(f"waiting for trials other drivers run: {sorted(self.others.running)}")
        return bool(self.others.running)
