"""Report tables: the Pareto front and the measurement checks shown beside it."""
from __future__ import annotations

import optuna

from tuner.report import measurement_checks, pareto_front


def test_pareto_front_excludes_infeasible_and_dominated():
    study = optuna.create_study(directions=["maximize", "maximize"])
    for values, constraint in [([100, 0.9], -1), ([200, 0.5], -1), ([300, 1.0], 1), ([90, 0.4], -1)]:
        t = study.ask()
        t.set_user_attr("constraint", constraint)
        study.tell(t, values)
    assert [t.number for t in pareto_front(study)] == [1, 0]


def test_pareto_table_marks_flagged_measurements():
    assert measurement_checks([{"warnings": [], "reliable": True}]) == "ok"
    assert measurement_checks([{"warnings": ["token_mismatch: ..."]}, {"warnings": []}]) == "1 level(s) flagged"
    assert measurement_checks([{"warnings": [], "reliable": False}]) == "1 level(s) flagged"
