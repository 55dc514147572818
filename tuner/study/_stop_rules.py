"""When the search stops launching: small rules, each reading the search's state and returning why it should stop,
applied in one place (StudyRunner._apply_stop_rules), which also records the reason for `tuner study status`.

    TrialCount    the search used the trials it was given
    Duplicates    the last proposals were all measured before or not launchable: the space is exhausted
    Budget        one more launch would overrun the study's slice-hour budget
    Patience      the front has not improved for `patience` launched trials
    InfraStreak   trials in a row exhausted their infrastructure retries: the cluster, not a config (fatal)

A rule that fires ends the search: running launches finish and are told, confirmation runs follow. A fatal one stops
the study with an error after recording why.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tuner.inputs.spec import StudySpec

DUPLICATE_LIMIT = 50  # consecutive proposals that cost no launch before the space counts as exhausted
INFRA_GIVE_UP_LIMIT = 3  # trials in a row that exhausted their infra retries: the cluster, not a config, is broken


class StopReason(StrEnum):
    TRIALS = "trials"
    DUPLICATES = "duplicates"
    BUDGET = "budget"
    PATIENCE = "patience"
    INFRA_STREAK = "infra_streak"


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    message: str  # for the user: what stopped the search, with the numbers
    fatal: bool = False  # the study stops with an error (after the reason is recorded)


@dataclass(frozen=True)
class SearchState:
    """What the rules read, built by the runner before each decision to launch."""

    trials: int  # the search trials this run may use
    launched: int  # search trials finished, launched or predicted-penalized excluded (every driver's)
    running_s: Sequence[float]  # how long each of this driver's running launches has run
    spent_s: float  # slice time of the finished launches (tuner.study.cost)
    expected_launch_s: float  # the mean measured launch, or the catalogue's estimate before one
    not_launched_in_a_row: int  # proposals in a row that cost no launch: duplicates, rule breakers, non-fits
    infra_give_ups_in_a_row: int
    trials_since_front_improved: Callable[[], int]  # reads storage: called only by the rule that needs it


class StopRule(Protocol):
    fatal: bool  # checked during the confirmation runs too, after the search has stopped

    def check(self, state: SearchState) -> Stop | None: ...


class TrialCount:
    fatal = False

    def check(self, state: SearchState) -> Stop | None:
        if state.launched < state.trials:
            return None
        return Stop(StopReason.TRIALS, f"the search used its {state.trials} trials")


class Duplicates:
    fatal = False

    def __init__(self, limit: int = DUPLICATE_LIMIT) -> None:
        self.limit = limit

    def check(self, state: SearchState) -> Stop | None:
        if state.not_launched_in_a_row < self.limit:
            return None
        return Stop(StopReason.DUPLICATES, f"stopping: the last {self.limit} proposals were all measured before or not"
                                           f" launchable; {state.launched} search trials launched")


class Budget:
    """Launch only if what is spent, what running launches will still take, the next launch and the confirmation runs
    still to come all fit (each at the expected launch)."""

    fatal = False

    def __init__(self, slice_hours: float, confirm_launches: int) -> None:
        self.slice_hours = slice_hours
        self.confirm_launches = confirm_launches

    def check(self, state: SearchState) -> Stop | None:
        expected = state.expected_launch_s
        running = sum(max(seconds, expected) for seconds in state.running_s)
        confirming = self.confirm_launches * expected
        if state.spent_s + running + confirming + expected <= self.slice_hours * 3600:
            return None
        return Stop(StopReason.BUDGET,
                    f"stopping the search on the budget: {state.spent_s / 3600:.2f} of {self.slice_hours:g}"
                    f" slice-hours spent, {(running + confirming) / 3600:.2f} committed to running launches and the"
                    f" confirmation runs; one more launch (~{expected / 60:.1f} min) would overrun it;"
                    f" {state.launched} search trials launched")


class Patience:
    """The front has not improved for `patience` launched trials. Storage is read again only after another trial
    finished."""

    fatal = False

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self._read_at = -1  # launched trials when storage was last read

    def check(self, state: SearchState) -> Stop | None:
        if state.launched == self._read_at:
            return None
        self._read_at = state.launched
        stale = state.trials_since_front_improved()
        if stale < self.patience:
            return None
        return Stop(StopReason.PATIENCE,
                    f"stopping the search: the front has not improved in the last {stale} launched trials"
                    f" (patience {self.patience}); {state.launched} of {state.trials} trials used")


class InfraStreak:
    fatal = True

    def __init__(self, limit: int = INFRA_GIVE_UP_LIMIT) -> None:
        self.limit = limit

    def check(self, state: SearchState) -> Stop | None:
        if state.infra_give_ups_in_a_row < self.limit:
            return None
        return Stop(StopReason.INFRA_STREAK,
                    f"{state.infra_give_ups_in_a_row} trials in a row failed for infrastructure reasons",
                    fatal=True)


def rules_for(spec: StudySpec) -> list[StopRule]:
    """The study's rules, in the order they are checked: a fatal streak first, then the trials given."""
    rules: list[StopRule] = [InfraStreak(), TrialCount(), Duplicates()]
    if spec.budget is not None:
        rules.append(Budget(spec.budget.slice_hours, spec.confirm.repeats * spec.confirm.candidates))
    if spec.patience:
        rules.append(Patience(spec.patience))
    return rules


def first_stop(rules: Sequence[StopRule], state: SearchState) -> Stop | None:
    return next((stop for rule in rules if (stop := rule.check(state)) is not None), None)
