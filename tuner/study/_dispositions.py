"""What came back from one attempt, handled by its failure class's disposition (tuner.contracts.outcomes):

    TELL        measured, or the config's own failure: scored, told to Optuna (penalized where it failed)
    RETRY       not the config's fault (the cluster, the slice): the same parameters again, up to
                max_infra_retries; then recorded as failed and not counted. A streak of those stops the study
                (the InfraStreak rule reads `infra_give_ups_in_a_row`)
    STOP_SETUP  the user's setup cannot serve this study: recorded for the next run, one line saying how to fix it
    STOP_BUG    tuner's own error: recorded for the next run, its traceback kept

Two relaunches come before the disposition: a server a signal killed before it served is launched once more and
judged with both launches (tuner.study._first_shapes), and the quality reference is launched once more when its
first launch did not answer (tuner.study._quality): no config can be judged without it.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from optuna.exceptions import UpdateFinishedTrialError

from tuner.contracts.outcomes import Disposition, disposition_of
from tuner.contracts.results import TrialResult
from tuner.errors import SetupError, TunerBug
from tuner.inputs.spec import Study
from tuner.study._bookkeeping import Bookkeeper, Proposal
from tuner.study._done_line import done_line
from tuner.study._first_shapes import FirstShapeDeaths, killed_before_serving
from tuner.study._progress import Progress
from tuner.trial.sweep_plan import TrialOutcome


@dataclass
class Attempt:
    proposal: Proposal
    number: int  # 1 for the first launch, +1 for each infra retry or relaunch
    started: float = field(default_factory=time.monotonic)
    relaunch_of: TrialResult | None = None  # the first launch, which a signal killed before it served

    @property
    def trial_number(self) -> int:
        return self.proposal.trial.number


class Dispositions:
    """`finish(attempt, outcome)` for every attempt that came back. `launch_again` submits an attempt (a retry or a
    relaunch); `settled` runs once a trial is recorded for good (its lease released, the counts read again)."""

    def __init__(self, study: Study, books: Bookkeeper, progress: Progress, runs_dir: Path,
                 launch_again: Callable[[Attempt], None], settled: Callable[[Attempt], None]) -> None:
        self.study, self.books, self.progress, self.runs_dir = study, books, progress, runs_dir
        self.launch_again, self.settled = launch_again, settled
        self.first_shapes = FirstShapeDeaths()
        self.infra_give_ups_in_a_row = 0
        self.last_infra_detail = ""

    def finish(self, attempt: Attempt, outcome: TrialOutcome) -> None:
        try:
            self.books.keep_artifacts(attempt.proposal, attempt.number, outcome)
            result = outcome.result
            if self._relaunched(attempt, result):
                return
            if attempt.relaunch_of is not None:
                result = self._judge_relaunch(attempt, result)
            {Disposition.TELL: self._tell, Disposition.RETRY: self._retry_or_give_up,
             Disposition.STOP_SETUP: self._stop, Disposition.STOP_BUG: self._stop,
             }[disposition_of(result.failure_class)](attempt, result)
        except UpdateFinishedTrialError:
            # This driver stalled past its lease (grace_s without a heartbeat) and another driver re-queued the
            # trial: what came back is not recorded here; the re-queued trial measures the config again.
            self.settled(attempt)
            self.progress.event(f"trial {attempt.trial_number}: its lease expired while it ran and another driver"
                                " re-queued it; this result is not recorded")

    def _relaunched(self, attempt: Attempt, result: TrialResult) -> bool:
        """Launched once more before any verdict: a server killed before it served, or the quality reference that
        did not answer."""
        if killed_before_serving(result) and attempt.relaunch_of is None:
            self.progress.snapshot.infra_retries += 1
            self.progress.event(f"trial {attempt.trial_number}: {result.killed_by} killed the server before it"
                                f" served a request ({result.failure_detail[:100]}); not yet the config's fault:"
                                " relaunching it once")
            self.launch_again(Attempt(attempt.proposal, attempt.number + 1, relaunch_of=result))
            return True
        if attempt.relaunch_of is None and self.books.quality.relaunch_reference(
                attempt.proposal.params, result, attempt.number):
            self.progress.event(f"trial {attempt.trial_number}: the quality reference did not answer"
                                f" ({result.failure_class}); launching it once more, since no config can be"
                                " judged without it")
            self.launch_again(Attempt(attempt.proposal, attempt.number + 1))
            return True
        return False

    def _tell(self, attempt: Attempt, result: TrialResult) -> None:
        self.infra_give_ups_in_a_row = 0
        score = self.books.tell(attempt.proposal, result, attempts=attempt.number)
        self.settled(attempt)
        self.progress.event(f"trial {attempt.trial_number} done: {done_line(score, result)}")

    def _retry_or_give_up(self, attempt: Attempt, result: TrialResult) -> None:
        if attempt.number <= self.study.spec.max_infra_retries:
            self.progress.snapshot.infra_retries += 1
            self.progress.event(f"trial {attempt.trial_number}: infra failure ({result.failure_detail[:80]}); retrying")
            self.launch_again(Attempt(attempt.proposal, attempt.number + 1))
            return
        self.books.fail(attempt.proposal, result, attempts=attempt.number, requeue=False)
        self.settled(attempt)
        self.progress.event(f"trial {attempt.trial_number}: infra failure after {attempt.number} attempts; not counted")
        self.infra_give_ups_in_a_row += 1
        self.last_infra_detail = result.failure_detail

    def _judge_relaunch(self, attempt: Attempt, result: TrialResult) -> TrialResult:
        """The relaunch judged with its first launch as evidence (tuner.study._first_shapes); the same death on
        configs in a row stops the study: the environment, not a config."""
        assert attempt.relaunch_of is not None
        judged = self.first_shapes.judge(attempt.relaunch_of, result)
        if self.first_shapes.environment_broken:
            self.books.tell(attempt.proposal, judged, attempts=attempt.number)
            self.settled(attempt)
            raise SetupError(str(self.study.path), "server.command",
                             f"a server that can serve here: {result.killed_by} killed it before it served a"
                             f" request on {self.first_shapes.in_a_row} configs in a row, twice each; that is the"
                             " environment, not a config (a build for another CPU or accelerator, a broken"
                             f" install?). Last: {result.failure_detail[:200]}")
        return judged

    def _stop(self, attempt: Attempt, result: TrialResult) -> None:
        """The config is kept for the next run, unpenalized, and the study stops (the loop's error path stops the
        other trials and tears their servers down). The user's setup (e.g. no /tokenize for exact-length text
        prompts) gets one line saying how to fix it; tuner's own bug its traceback."""
        self.books.fail(attempt.proposal, result, attempts=attempt.number, requeue=True)
        self.settled(attempt)
        if disposition_of(result.failure_class) == Disposition.STOP_SETUP:
            self.progress.event(f"trial {attempt.trial_number}: setup error: {result.failure_detail[:160]}")
            raise SetupError(str(self.study.path), "model_info.config_json", "a local model folder as `model`, or"
                             f" the model's config.json here: {result.failure_detail}")
        trace_path = None
        if result.traceback:
            trace_path = self.runs_dir / f"trial-{attempt.trial_number:04d}-attempt-{attempt.number}.traceback.txt"
            trace_path.write_text(result.traceback)
        self.progress.event(f"trial {attempt.trial_number}: tuner error: {result.failure_detail[:160]}")
        raise TunerBug(attempt.trial_number, result.failure_detail, result.traceback, trace_path)
