"""The study loop: propose configs, run them on the executor, record what came back, until a stop rule ends the search
(tuner.study._stop_rules: trial count, duplicates, budget, patience, infra streak), then confirm the front.

The trial count counts launched COMPLETE trials (penalized ones included). Infra failures are not the config's
fault: the same parameters run again, and a run of them stops the study. A tuner error stops the study at once.

Several drivers may run one study (one storage, e.g. PostgreSQL). Each holds a lease on the trials it runs
(tuner.study._lease) and counts every driver's running search trials against the budget, read from storage before
each launch. Two drivers that read the last free place at the same moment both launch: the budget can be exceeded
by at most one launch per extra driver. A driver with nothing left to launch stays while trials of others run, so
that one of theirs whose driver dies is re-queued (once its lease expires) and run here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from tuner.contracts.outcomes import Disposition, disposition_of
from tuner.contracts.results import LevelRole, TrialResult
from tuner.errors import InfrastructureError, SetupError, TunerBug
from tuner.inputs.spec import Study
from tuner.planning.launch_time import estimated_launch_s
from tuner.planning.prelaunch import prompt_vocab_size
from tuner.planning.traffic import Traffic, resolve_traffic, sweep_plan
from tuner.scoring.score import Score
from tuner.server.failures import FailureClass
from tuner.study._bookkeeping import Bookkeeper, Proposal, Recorded, recover_interrupted
from tuner.study._executor import Executor, RayExecutor, Task
from tuner.study._lease import Lease
from tuner.study._stop_rules import SearchState, Stop, StopReason, first_stop, rules_for
from tuner.study.records import StudyRecord, write_search_stopped
from tuner.study.replay import ReplayExecutor, Surface
from tuner.trial import launch
from tuner.trial.sweep_plan import LaunchRequest, SweepPlan, TrialOutcome

# A server killed by one of these before it served a request hit a sharp edge of its first shapes (a kernel picked or
# compiled at first use; vLLM 0.32 CPU's SIGILL on a one-token first prompt), not yet the config's fault: relaunched
# once. SIGKILL is not among them: the kernel's OOM killer sends it, a memory cause.
FIRST_SHAPE_SIGNALS = frozenset({"SIGILL", "SIGSEGV", "SIGBUS", "SIGABRT"})
SIGNAL_GIVE_UP_LIMIT = 2  # configs in a row whose both launches a signal killed before serving: the environment
WAIT_S = 0.5
POLL_S = 2.0  # how often storage is read for other drivers' trials: theirs running, and expired leases


@dataclass
class Attempt:
    proposal: Proposal
    number: int  # 1 for the first launch, +1 for each infra retry or relaunch
    started: float = field(default_factory=time.monotonic)
    relaunch_of: TrialResult | None = None  # the first launch, which a signal killed before it served


    @property
    def trial_number(self) -> int:
        return self.proposal.trial.number


@dataclass
class Snapshot:
    """What the progress display shows."""

    total: int
    complete: int = 0
    penalized: int = 0
    predicted: int = 0  # penalized by prediction (rules, memory fit), never launched, not counted in the budget
    infra_retries: int = 0
    confirmations: int = 0  # confirmation runs done
    confirming: bool = False  # the search is done; the front's configs are being relaunched
    running: dict[int, float] = field(default_factory=dict)  # trial number -> seconds running
    phases: dict[int, str] = field(default_factory=dict)  # trial number -> the phase it is in, as its worker said
    best_throughput: tuple[int, float] | None = None
    last_event: str = ""
    slice_s: float = 0.0  # slice time of the finished launches (tuner.study.cost)
    price_per_slice_hour: float | None = None
    launch_s: float | None = None  # the mean measured launch
    left_s: float | None = None  # expected slice time to finish: the launches still planned at the mean launch

    def describe_cost(self) -> str:
        """"0.21 slice-h, ~0.35 h to go" (and the price where the study sets one)."""
        text = f"{self.slice_s / 3600:.2f} slice-h"
        if self.price_per_slice_hour is not None:
            text += f" ({self.slice_s / 3600 * self.price_per_slice_hour:,.2f})"
        if self.left_s is not None:
            text += f", ~{self.left_s / 3600:.2f} h to go"
        return text


class StudyRunner:
    def __init__(self, study: Study, optuna_study: optuna.Study, total_trials: int,
                 on_progress: Callable[[Snapshot], None] = lambda s: None, ray_address: str | None = None,
                 traffic: Traffic | None = None, surface: Surface | None = None,
                 task: Task = launch, executor: Executor[Attempt] | None = None) -> None:
        self.study = study
        self.task = task  # what runs one attempt on a worker: launch, or a test's wrapper of it
        self._given_executor = executor  # None: Ray (or the replay surface); a test or library user may hand one in
        self.spec = study.spec
        self.optuna_study = optuna_study
        self.total = total_trials  # search trials this run will have launched: shrinks when a stop rule fires
        self.trials_given = total_trials
        self.rules = rules_for(self.spec)
        self.stopped: Stop | None = None  # the rule that ended the search
        self.not_launched_in_a_row = 0  # proposals that cost no launch: duplicates, rule breakers, predicted non-fits
        self._last_infra_detail = ""
        self.on_progress = on_progress
        self.ray_address = ray_address
        self.books = Bookkeeper(study, optuna_study)
        self.snapshot = Snapshot(total=total_trials)
        self.infra_give_ups_in_a_row = 0
        self.signal_deaths_in_a_row = 0
        self.runs_dir = Path(self.spec.runs_dir) / optuna_study.study_name
        self.vocab_size = prompt_vocab_size(study)
        # Resolved once: the traffic file, SLO limits and hardware do not change between trials.
        self.plan = sweep_plan(study, traffic or resolve_traffic(study))
        self._executor: Executor[Attempt] | None = None
        self._lease: Lease | None = None
        self._elsewhere: dict[int, bool] = {}  # other drivers' RUNNING trials: number -> search trial
        self._polled = 0.0
        self.surface = surface or (Surface.load(self.spec.replay.surface) if self.spec.replay else None)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> Snapshot:
        self._refresh_counts()
        executor = self._make_executor()
        with executor, Lease(self.optuna_study, self.spec.lease) as lease:
            self._executor, self._lease = executor, lease
            try:
                self._recover()
                if self._apply_stop_rules() and StudyRecord.of(self.optuna_study).search_stopped:
                    write_search_stopped(self.optuna_study, "")  # a stored reason from an earlier run no longer holds
                while True:
                    self._poll_storage()
                    self._launch_up_to_limit()
                    if not executor.running and self._search_done():
                        self._launch_confirmations()
                    if not executor.running:
                        if not self._others_running():
                            break
                        time.sleep(POLL_S)  # theirs may yet fail or expire and be re-queued for us
                    for attempt, outcome in executor.wait(WAIT_S):
                        self._finish(attempt, outcome)
                    self._show_phases(executor)
                    self._publish()
            except BaseException:
                self._abandon_running()
                raise
        return self.snapshot

    def _recover(self) -> None:
        """Re-queue trials whose driver is gone (their lease expired)."""
        recovered = recover_interrupted(self.optuna_study, self._lease)
        if recovered:
            self._event(f"re-queued trials whose driver stopped (lease expired): {recovered}")
            self._refresh_counts()

    def _poll_storage(self, force: bool = False) -> None:
        """Every POLL_S: expired leases, and what other drivers are running."""
        if not force and time.monotonic() - self._polled < POLL_S:
            return
        self._polled = time.monotonic()
        self._recover()
        self._refresh_counts()

    def _others_running(self) -> bool:
        """Trials of other drivers (or of a killed one, lease not yet expired) are running: this driver stays, so
        that one whose driver is gone is re-queued here and run."""
        self._poll_storage()
        if self._elsewhere and not self.snapshot.last_event.startswith("waiting for"):
            self._event(f"waiting for trials other drivers run: {sorted(self._elsewhere)}")
        return bool(self._elsewhere)

    def _make_executor(self) -> Executor[Attempt]:
        if self._given_executor is not None:
            return self._given_executor
        if self.surface is not None and self.spec.replay is not None:
            return ReplayExecutor[Attempt](self.surface, self.spec.replay.seed,
                                           lambda attempt: dict(attempt.proposal.trial.params))
        return RayExecutor[Attempt](self.task, self.spec.resources, self.spec.accelerator_type, self.ray_address)

    def _launch_up_to_limit(self) -> None:
        self._apply_stop_rules()  # records why, even when there is no room to launch (the trials are used)
        while self._room_to_launch() and self._apply_stop_rules():
            proposed = self.books.propose()
            if isinstance(proposed, Recorded):
                self.not_launched_in_a_row += 1
                self._refresh_counts()
                self._event(proposed.message)
                continue
            self.not_launched_in_a_row = 0
            self._submit(Attempt(proposed, number=1))

    # -- stop rules -----------------------------------------------------------------------------------------
    def _apply_stop_rules(self) -> bool:
        """True while the search may launch. The one place a stop rule ends the search: running launches finish,
        the reason is recorded for `tuner study status`, and a fatal rule (an infra streak) stops the study; the
        fatal rules hold during the confirmation runs too."""
        rules = [r for r in self.rules if self.stopped is None or r.fatal]
        stop = first_stop(rules, self._search_state())
        if stop is not None:
            self._stop_search(stop)
        return self.stopped is None

    def _search_state(self) -> SearchState:
        return SearchState(trials=self.trials_given, launched=self.snapshot.complete,
                           running_s=tuple(self.snapshot.running.values()), spent_s=self.snapshot.slice_s,
                           expected_launch_s=self._expected_launch_s(),
                           not_launched_in_a_row=self.not_launched_in_a_row,
                           infra_give_ups_in_a_row=self.infra_give_ups_in_a_row,
                           trials_since_front_improved=self.books.trials_since_front_improved)

    def _stop_search(self, stop: Stop) -> None:
        self.stopped = stop
        self.total = min(self.total, self.snapshot.complete + len(self._running()))
        self.snapshot.total = self.total
        write_search_stopped(self.optuna_study, stop.message)
        if stop.reason != StopReason.TRIALS:  # the plain end of the search needs no event of its own
            self._event(stop.message)
        if stop.fatal:
            raise InfrastructureError(f"{stop.message}, the last with: {self._last_infra_detail[:200]} (see `tuner"
                                      " study status`); fix the cluster and run the same command")

    def _room_to_launch(self) -> bool:
        """A free place here and in the budget, counting every driver's running search trials (read again from
        storage when there seems to be room, so another driver's launch a moment ago is counted)."""
        def room() -> bool:
            in_flight = len(self._running()) + sum(self._elsewhere.values())
            # Until the quality reference has answered, one launch at a time: the others are judged against it.
            parallel = 1 if self.books.quality.waiting_for_reference() else self.spec.parallel
            return len(self._running()) < parallel and self.snapshot.complete + in_flight < self.total

        if not room():
            return False
        self._refresh_counts()
        return room()

    def _expected_launch_s(self) -> float:
        return self.snapshot.launch_s if self.snapshot.launch_s is not None else estimated_launch_s(self.spec)[0]

    def _search_done(self) -> bool:
        return self.snapshot.complete >= self.total

    def _launch_confirmations(self) -> None:
        """After the search: relaunch the configs on and near the front (tuner.scoring.confirmation). Runs once the search
        trials are all done, so candidates come from the whole search; queued runs survive a restart."""
        waiting = self.books.plan_confirmations()
        if not waiting:
            if self.snapshot.confirming or self.snapshot.confirmations:
                front = self.books.write_confirmed()
                self._event(f"confirmed front: trials {front}" if front else "no config was confirmed")
            return
        if not self.snapshot.confirming:
            self.snapshot.confirming = True
            self._event(f"search done; confirming the front: {waiting} relaunch(es)")
        while len(self._running()) < self.spec.parallel and waiting:
            proposed = self.books.propose()
            waiting -= 1
            if isinstance(proposed, Recorded):
                self._event(proposed.message)
                continue
            self._submit(Attempt(proposed, number=1))

    def _plan_for(self, proposal: Proposal) -> SweepPlan:
        plan = self.plan.with_quality(self.books.quality.plan_for(proposal.params, proposal.config))
        if proposal.confirms is None:
            return plan
        return plan.with_soak(*self.books.soak_point(proposal.confirms))

    def _submit(self, attempt: Attempt) -> None:
        assert self._executor is not None
        log_path = self._attempt_path(attempt, ".log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._lease is not None:
            self._lease.hold(attempt.proposal.trial)  # held across infra retries, until the trial is told
        self._executor.submit(attempt, LaunchRequest(
            config=attempt.proposal.config, plan=self._plan_for(attempt.proposal), timeouts=self.spec.timeouts,
            log_path=str(log_path.absolute()), host=self.spec.server.host, vocab_size=self.vocab_size))
        kind = f"confirming trial {attempt.proposal.confirms}, " if attempt.proposal.confirms is not None else ""
        self._event(f"trial {attempt.trial_number} started ({kind}attempt {attempt.number})")

    def _finish(self, attempt: Attempt, outcome: TrialOutcome) -> None:
        try:
            self._record(attempt, outcome)
        except UpdateFinishedTrialError:
            # This driver stalled past its lease (grace_s without a heartbeat) and another driver re-queued the
            # trial: what came back is not recorded here; the re-queued trial measures the config again.
            self._release(attempt)
            self._refresh_counts()
            self._event(f"trial {attempt.trial_number}: its lease expired while it ran and another driver re-queued"
                        " it; this result is not recorded")

    def _record(self, attempt: Attempt, outcome: TrialOutcome) -> None:
        self.books.keep_artifacts(attempt.proposal, attempt.number, outcome)
        result = outcome.result
        if killed_before_serving(result) and attempt.relaunch_of is None:
            self._relaunch_after_signal(attempt, result)
            return
        if attempt.relaunch_of is not None:
            result = self._judge_relaunch(attempt, result)
        {Disposition.TELL: self._tell, Disposition.RETRY: self._retry_or_give_up,
         Disposition.STOP_SETUP: self._stop_on_setup, Disposition.STOP_BUG: self._stop_on_bug,
         }[disposition_of(result.failure_class)](attempt, result)

    def _tell(self, attempt: Attempt, result: TrialResult) -> None:
        """Measured, or the config's own failure: scored, told to Optuna, penalized where it failed."""
        self.infra_give_ups_in_a_row = 0
        score = self.books.tell(attempt.proposal, result, attempts=attempt.number)
        self._release(attempt)
        self._refresh_counts()
        verdict = _verdict(score) + _drafts(result)
        held = f" [{result.wall_s / 60:.1f} min of slice time]" if result.wall_s else ""
        self._event(f"trial {attempt.trial_number} done: {verdict}{held}")

    def _release(self, attempt: Attempt) -> None:
        if self._lease is not None:
            self._lease.release(attempt.trial_number)

    def _retry_or_give_up(self, attempt: Attempt, result: TrialResult) -> None:
        if attempt.number <= self.spec.max_infra_retries:
            self.snapshot.infra_retries += 1
            self._event(f"trial {attempt.trial_number}: infra failure ({result.failure_detail[:80]}); retrying")
            self._submit(Attempt(attempt.proposal, attempt.number + 1))
            return
        self.books.fail(attempt.proposal, result, attempts=attempt.number, requeue=False)
        self._release(attempt)
        self._event(f"trial {attempt.trial_number}: infra failure after {attempt.number} attempts; not counted")
        self.infra_give_ups_in_a_row += 1
        self._last_infra_detail = result.failure_detail
        self._apply_stop_rules()

    def _relaunch_after_signal(self, attempt: Attempt, result: TrialResult) -> None:
        """A signal killed the server before it served a request: the same parameters once more, unpenalized."""
        self.snapshot.infra_retries += 1
        self._event(f"trial {attempt.trial_number}: {result.killed_by} killed the server before it served a request"
                    f" ({result.failure_detail[:100]}); not yet the config's fault: relaunching it once")
        self._submit(Attempt(attempt.proposal, attempt.number + 1, relaunch_of=result))

    def _judge_relaunch(self, attempt: Attempt, result: TrialResult) -> TrialResult:
        """The relaunch's result with the first launch as evidence: a second death the same way is the config's
        (`crash`, both details); a relaunch that served carries the first death against its survival. Either way
        both launches' slice time is counted. The same death on configs in a row stops the study."""
        first = attempt.relaunch_of
        assert first is not None
        update: dict[str, object] = {"wall_s": result.wall_s + first.wall_s, "relaunched_after": first.failure_detail}
        if killed_before_serving(result) and result.killed_by == first.killed_by:
            update["failure_detail"] = (f"{result.failure_detail}; twice: its first launch died the same way"
                                        f" ({first.failure_detail[:200]})")
            self.signal_deaths_in_a_row += 1
            if self.signal_deaths_in_a_row >= SIGNAL_GIVE_UP_LIMIT:
                self.books.tell(attempt.proposal, result.model_copy(update=update), attempts=attempt.number)
                self._release(attempt)
                raise SetupError(str(self.study.path), "server.command",
                                 f"a server that can serve here: {result.killed_by} killed it before it served a"
                                 f" request on {self.signal_deaths_in_a_row} configs in a row, twice each; that is the"
                                 " environment, not a config (a build for another CPU or accelerator, a broken"
                                 f" install?). Last: {result.failure_detail[:200]}")
        elif result.failure_class is None or result.levels:
            self.signal_deaths_in_a_row = 0
        return result.model_copy(update=update)

    def _stop_on_bug(self, attempt: Attempt, result: TrialResult) -> None:
        """tuner's own code failed: record it, keep the config for the next run, and stop the study (run()'s error
        path stops the other trials and tears their servers down). Never retried as infra, never penalized."""
        self.books.fail(attempt.proposal, result, attempts=attempt.number, requeue=True)
        self._release(attempt)
        trace_path = None
        if result.traceback:
            trace_path = self._attempt_path(attempt, ".traceback.txt")
            trace_path.write_text(result.traceback)
        self._event(f"trial {attempt.trial_number}: tuner error: {result.failure_detail[:160]}")
        raise TunerBug(attempt.trial_number, result.failure_detail, result.traceback, trace_path)

    def _stop_on_setup(self, attempt: Attempt, result: TrialResult) -> None:
        """The server cannot serve what the study asks (e.g. no /tokenize for exact-length text prompts): the
        user's setup. Stop with one line saying how to fix it; the config is kept for the next run, unpenalized."""
        self.books.fail(attempt.proposal, result, attempts=attempt.number, requeue=True)
        self._release(attempt)
        self._event(f"trial {attempt.trial_number}: setup error: {result.failure_detail[:160]}")
        raise SetupError(str(self.study.path), "model_info.config_json",
                         f"a local model folder as `model`, or the model's config.json here: {result.failure_detail}")

    def _abandon_running(self) -> None:
        """On Ctrl-C or an error: stop running trials (their servers die with their workers) and re-queue them."""
        if self._executor is None:
            return
        for attempt in self._executor.cancel_all():
            try:
                self.books.abandon(attempt.proposal)
            except UpdateFinishedTrialError:
                pass  # another driver re-queued it already (this one had stalled past its lease)
            self._release(attempt)

    # -- progress -------------------------------------------------------------------------------------------
    def _running(self) -> list[Attempt]:
        return self._executor.running if self._executor else []

    def _attempt_path(self, attempt: Attempt, suffix: str) -> Path:
        return self.runs_dir / f"trial-{attempt.trial_number:04d}-attempt-{attempt.number}{suffix}"

    def _refresh_counts(self) -> None:
        counts = self.books.counts()
        self.snapshot.complete = counts.launched
        self.snapshot.predicted = counts.predicted
        self.snapshot.penalized = counts.penalized
        self.snapshot.best_throughput = counts.best_throughput
        self.snapshot.confirmations = counts.confirmations
        own = {a.trial_number for a in self._running()}
        self._elsewhere = {n: search for n, search in counts.running.items() if n not in own}
        cost = counts.cost
        self.snapshot.slice_s, self.snapshot.launch_s = cost.slice_s, cost.mean_launch_s
        self.snapshot.price_per_slice_hour = self.spec.price_per_slice_hour
        if cost.mean_launch_s is not None:
            search_left = max(0, self.total - self.snapshot.complete)
            confirm_left = self.spec.confirm.repeats * self.spec.confirm.candidates - self.snapshot.confirmations
            self.snapshot.left_s = (search_left + max(0, confirm_left)) * cost.mean_launch_s

    def _show_phases(self, executor: Executor[Attempt]) -> None:
        """Each running trial's phase as its worker reports it: one event per phase change, so a log without a
        terminal shows "loading", "compiling", each level, instead of nothing for the length of a launch."""
        for attempt, report in executor.phase_reports():
            if attempt not in self._running():
                continue  # it finished while its report was on the way
            described = report.describe()
            self.snapshot.phases[attempt.trial_number] = described
            if report.live:
                self._publish()  # a terminal's panel shows it; a log gets one line per phase, not per update
            else:
                self._event(f"trial {attempt.trial_number}: {described}")

    def _event(self, message: str) -> None:
        self.snapshot.last_event = message
        self._publish()

    def _publish(self) -> None:
        now = time.monotonic()
        self.snapshot.running = {a.trial_number: now - a.started for a in self._running()}
        self.snapshot.phases = {n: p for n, p in self.snapshot.phases.items() if n in self.snapshot.running}
        self.on_progress(self.snapshot)


def _verdict(score: Score) -> str:
    figures = ", ".join(f"{name} {_figure(value)}" for name, value in score.values.items())
    where = f" at {score.operating_point}" if score.operating_point else ""
    # The quality figure is shown whenever the guard judged the launch, objective or not.
    quality = (f", quality {score.quality.figure:.3f}" if score.quality is not None
               and "quality" not in score.values else "")
    if score.feasible:
        return f"{figures}{where}{quality}" + (f" (then {score.outcome})" if score.outcome != "measured" else "")
    if score.outcome == "slo_miss":
        return f"slo_miss: {score.detail}"
    if score.quality is not None and score.outcome == "wrong_output":
        return f"penalized: wrong_output (quality {score.quality.figure:.3f}: {score.quality.describe()})"
    return f"penalized: {score.outcome}"


def killed_before_serving(result: TrialResult) -> bool:
    """A signal of a first shape's sharp edge ended the server before any request was answered, and its log showed
    no memory or capacity cause (those classify as oom / kv_capacity, not crash)."""
    return (result.failure_class == FailureClass.CRASH and result.killed_by in FIRST_SHAPE_SIGNALS
            and not result.levels and not result.probes)


def _drafts(result: TrialResult) -> str:
    """How speculation fared at the launch's top measured level, under the study's sampling: the figure that says
    whether the drafts paid."""
    level = next((lv for lv in reversed(result.levels) if lv.phase == LevelRole.SWEEP and lv.speculation is not None), None)
    if level is None or level.speculation is None:
        return ""
    return f"; drafts at c={level.concurrency}: {level.speculation.describe()}"


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
