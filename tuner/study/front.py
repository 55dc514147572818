"""The study's front: what `tuner study pareto`, `export`, the report and the confirmation phase read. Confirmed
medians when the study relaunched its candidates (tuner.scoring.confirmation combines the launches), else single
launches, each within the machine's noise of the others."""
from __future__ import annotations

from dataclasses import dataclass

import optuna

from tuner.contracts.goals import THROUGHPUT_LIKE, Goals, direction_of
from tuner.scoring.confirmation import (
    NOISE_MULTIPLE,
    ConfigSummary,
    confirmed_front,
    machine_noise,
    search_front,
)
from tuner.study.records import StudyRecord, TrialRecord, records
from tuner.trial.dominance import Bar


@dataclass
class StudyFront:
    """What `tuner study pareto` and `export` read: the front, and whether its numbers are confirmed."""

    goals: Goals
    configs: list[ConfigSummary]
    confirmed: bool  # False: the study asks for no confirmation, or it has not run yet (single-launch numbers)
    noise: float


def study_front(study: optuna.Study) -> StudyFront:
    spec = StudyRecord.of(study).spec
    goals, repeats = spec.goals(), spec.confirm.repeats
    recs = records(study)
    noise = machine_noise(recs, goals)
    confirmed = confirmed_front(recs, goals, repeats) if repeats else []
    if confirmed:
        return StudyFront(goals, confirmed, True, noise)
    return StudyFront(goals, search_front(recs, goals, noise), False, noise)


def front_bars(recs: list[TrialRecord], goals: Goals) -> tuple[Bar, ...]:
    """The search's front as a launch must beat it to be worth finishing (tuner.trial.dominance): each config's
    throughput at the low end of its interval (its own 95 % CI, at least twice the machine's noise), its other
    objectives as measured."""
    noise = machine_noise(recs, goals)
    bars = []
    for config in search_front(recs, goals, noise):
        margin = max(config.precision or 0.0, NOISE_MULTIPLE * noise)
        values = tuple((name, value * (1 - margin) if name in THROUGHPUT_LIKE else value)
                       for name, value in config.values.items())
        bars.append(Bar(trial=config.trial, values=values))
    return tuple(bars)


def best_of(front: StudyFront, objective: str) -> ConfigSummary:
    """The front's best config by one objective, ties broken by the rank objective."""
    sign = 1.0 if direction_of(objective) == "maximize" else -1.0
    rank = front.goals.rank_metric
    rsign = 1.0 if direction_of(rank) == "maximize" else -1.0
    return max(front.configs, key=lambda s: (sign * s.values[objective], rsign * s.values[rank]))
