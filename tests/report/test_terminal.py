"""Report tables: the Pareto front and the measurement checks shown beside it."""
from __future__ import annotations

import optuna
from tests.builders import add_trial, level

from tuner.report import measurement_checks
from tuner.study.front import study_front


def test_front_excludes_infeasible_and_dominated():
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 0}})
    for values, constraint in [([100, 0.9], -1), ([200, 0.5], -1), ([300, 1.0], 1), ([90, 0.4], -1)]:
        add_trial(study, values, constraint, {})
    assert [s.trial for s in study_front(study).configs] == [1, 0]


def test_pareto_table_marks_flagged_measurements():
    assert measurement_checks([level(warnings=[], reliable=True)]) == "ok"
    assert measurement_checks([level(warnings=["token_mismatch: ..."]), level()]) == "1 level(s) flagged"
    assert measurement_checks([level(reliable=False)]) == "1 level(s) flagged"
