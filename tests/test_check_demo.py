"""scripts/check_demo.py, what CI runs after `make demo`: it must fail on an unmeasured trial or a missing table."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna

_spec = importlib.util.spec_from_file_location("check_demo", Path(__file__).parents[1] / "scripts" / "check_demo.py")
check_demo = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(check_demo)  # type: ignore[union-attr]


def make_storage(tmp_path: Path, with_infra_failure: bool) -> str:
    storage = f"sqlite:///{tmp_path / 'demo.db'}"
    study = optuna.create_study(study_name="quickstart-cpu", storage=storage, directions=["maximize", "maximize"])
    good = study.ask()
    good.set_constraint("config_failure", -1.0)
    study.tell(good, [1000.0, 0.9])
    if with_infra_failure:
        bad = study.ask()
        bad.set_user_attr("failure_class", "infra")
        study.tell(bad, state=optuna.trial.TrialState.FAIL)
    return storage


def test_a_good_demo_passes(tmp_path):
    (tmp_path / "best.yaml").write_text("model: m\n")
    assert check_demo.problems("Pareto front of quickstart-cpu", make_storage(tmp_path, False), "quickstart-cpu",
                               tmp_path / "best.yaml") == []


def test_unmeasured_trials_and_missing_outputs_are_problems(tmp_path):
    found = check_demo.problems("no table here", make_storage(tmp_path, True), "quickstart-cpu", tmp_path / "best.yaml")
    assert any("Pareto" in p for p in found) and any("best.yaml" in p for p in found)
    assert any("trial 1 was not measured: infra" in p for p in found)
