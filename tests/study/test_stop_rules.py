"""The stop rules: each fires on its own condition with a message that says why, and the search records it for
`tuner study status`, whichever rule stopped it (budget: tests/study/test_cost.py; patience: test_replay.py;
infra streak: test_faults.py)."""
from __future__ import annotations

import io

import pytest
from rich.console import Console
from tests.builders import SPACE, write_surface

from tuner.study._stop_rules import (
    Budget,
    Duplicates,
    InfraStreak,
    Patience,
    SearchState,
    StopReason,
    TrialCount,
    first_stop,
)


def state(**changes) -> SearchState:
    base = dict(trials=10, launched=3, running_s=(), spent_s=0.0, expected_launch_s=60.0, not_launched_in_a_row=0,
                infra_give_ups_in_a_row=0, trials_since_front_improved=lambda: 0)
    return SearchState(**{**base, **changes})


def test_trial_count_fires_once_the_trials_are_launched():
    assert TrialCount().check(state(launched=9)) is None
    stop = TrialCount().check(state(launched=10))
    assert stop is not None and stop.reason == StopReason.TRIALS and stop.message == "the search used its 10 trials"


def test_duplicates_fire_at_the_limit_of_proposals_in_a_row_that_cost_no_launch():
    assert Duplicates(limit=5).check(state(not_launched_in_a_row=4)) is None
    stop = Duplicates(limit=5).check(state(not_launched_in_a_row=5))
    assert stop is not None and stop.reason == StopReason.DUPLICATES and "last 5 proposals" in stop.message


def test_budget_counts_what_is_spent_running_and_still_to_confirm():
    # 1 slice-hour: 40 min spent, a 10-min launch running for 2 min (counted at 10), 1 confirmation (10) to come.
    rule = Budget(slice_hours=1.0, confirm_launches=1)
    assert rule.check(state(spent_s=2400.0, running_s=(120.0,), expected_launch_s=300.0)) is None  # 40+5+5+5 <= 60
    stop = rule.check(state(spent_s=2400.0, running_s=(120.0,), expected_launch_s=600.0))  # 40+10+10+10 > 60
    assert stop is not None and stop.reason == StopReason.BUDGET and "0.67 of 1 slice-hours spent" in stop.message


def test_patience_reads_storage_only_after_another_trial_finished():
    reads = []

    def stale() -> int:
        reads.append(1)
        return 2

    rule = Patience(3)
    assert rule.check(state(launched=4, trials_since_front_improved=stale)) is None
    assert rule.check(state(launched=4, trials_since_front_improved=stale)) is None
    assert len(reads) == 1
    stop = rule.check(state(launched=5, trials_since_front_improved=lambda: 3))
    assert stop is not None and stop.reason == StopReason.PATIENCE and "(patience 3); 5 of 10 trials used" in stop.message


def test_an_infra_streak_is_fatal_and_checked_first():
    rules = [InfraStreak(limit=3), TrialCount()]
    stop = first_stop(rules, state(launched=10, infra_give_ups_in_a_row=3))
    assert stop is not None and stop.reason == StopReason.INFRA_STREAK and stop.fatal
    assert first_stop(rules, state(launched=10, infra_give_ups_in_a_row=2)).reason == StopReason.TRIALS


def _status(optuna_study) -> str:
    from tuner.report import status_table

    out = io.StringIO()
    Console(file=out, width=400).print(status_table(optuna_study))
    return " ".join(out.getvalue().split())


@pytest.mark.parametrize(("trials", "enqueue", "expected"), [
    # Three configs in the space, three trials: the trials are used.
    (3, "[{seqs: 4}, {seqs: 8}, {seqs: 16}]", "search stopped │ the search used its 3 trials"),
    # Three configs, twenty trials: after the three, every proposal repeats one; the space is exhausted.
    (20, "[{seqs: 4}, {seqs: 8}, {seqs: 16}]", "search stopped │ stopping: the last 50 proposals were all measured"),
])
def test_status_says_which_rule_stopped_the_search(tmp_path, trials, enqueue, expected):
    from tuner.inputs.spec import load_study
    from tuner.study import StudyRunner, create_or_load
    from tuner.study.storage import open_storage

    write_surface(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "study.yaml").write_text(
        "name: s\nmodel: m\nsearch_space: space.yaml\nslo: {ttft_p99_ms: 500}\nslo_margin: 0\n"
        f"trials: {trials}\nstorage: sqlite:///{tmp_path / 's.db'}\nruns_dir: {tmp_path / 'runs'}\n"
        f"confirm: {{repeats: 0}}\nload: {{concurrency: [2, 8], repeats: 1}}\nenqueue: {enqueue}\n"
        "replay: {surface: surface.json, seed: 1}\nsampler: {name: random, seed: 0}\n")
    study = load_study(tmp_path / "study.yaml")
    optuna_study = create_or_load(study, open_storage(study.spec.storage), "s")
    StudyRunner(study, optuna_study, study.spec.trials).run()
    assert expected in _status(optuna_study)
