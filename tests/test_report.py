"""Report tables: the Pareto front and the measurement checks shown beside it."""
from __future__ import annotations

import optuna

from tuner.report import measurement_checks
from tuner.results import LevelResult
from tuner.trial_record import pareto_front


def test_pareto_front_excludes_infeasible_and_dominated():
    study = optuna.create_study(directions=["maximize", "maximize"])
    for values, constraint in [([100, 0.9], -1), ([200, 0.5], -1), ([300, 1.0], 1), ([90, 0.4], -1)]:
        t = study.ask()
        t.set_constraint("config_failure", constraint)
        study.tell(t, values)
    assert [t.number for t in pareto_front(study)] == [1, 0]


def level(**fields) -> LevelResult:
    return LevelResult(concurrency=1, requests=1, completed=1, failed=0, duration_s=1.0, **fields)


def test_pareto_table_marks_flagged_measurements():
    assert measurement_checks([level(warnings=[], reliable=True)]) == "ok"
    assert measurement_checks([level(warnings=["token_mismatch: ..."]), level()]) == "1 level(s) flagged"
    assert measurement_checks([level(reliable=False)]) == "1 level(s) flagged"
