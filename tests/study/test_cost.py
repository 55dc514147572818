"""What a study spends: each launch's slice time split by phase and stored, the phases shown live, the study's
cost in the status table, and a slice-hour budget that stops the search (keeping the confirmation) and says so."""
from __future__ import annotations

import pytest
import yaml
from tests.builders import write_study

from tuner import study as studies
from tuner.inputs.spec import BUDGET_ONLY_TRIALS, load_study
from tuner.planning.launch_time import estimated_launch_s
from tuner.report import status_table
from tuner.study import StudyRunner, create_or_load
from tuner.study.cost import study_cost
from tuner.study.records import StudyRecord, TrialRecord, records
from tuner.study.storage import open_storage
from tuner.trial import launch

pytestmark = pytest.mark.usefixtures("no_server_left_behind")


def test_every_launch_stores_its_phases_and_the_progress_shows_them_live(tmp_path):
    prepared = studies.prepare(write_study(tmp_path, price_per_slice_hour=3.0))
    events, costs = [], []

    def progress(snapshot):
        events.append(snapshot.last_event)
        costs.append(snapshot.describe_cost())

    optuna_study = studies.run(prepared, executor=studies.LocalExecutor(launch), on_progress=progress)
    recs = records(optuna_study)
    for r in recs:
        assert {"starting", "worst_case", "sweep", "teardown"} <= set(r.phases)
        assert sum(r.phases.values()) == pytest.approx(r.wall_s, abs=0.01)
    assert any(e.startswith("trial 0: starting") for e in events)
    assert any(e.startswith("trial 1: worst case: 4 requests at once, 8 prompt + 8 output tokens") for e in events)
    assert any(e.startswith("trial 1: sweep: c=4: 8 requests; last level ") for e in events)
    assert any("done:" in e and "min of slice time]" in e for e in events)
    assert costs[-1].endswith("h to go") and "slice-h (" in costs[-1]  # priced
    cost = study_cost(recs, 3.0)
    assert cost.launches == 2 and cost.slice_s == pytest.approx(sum(r.wall_s for r in recs))
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(status_table(optuna_study))
    text = console.export_text()
    assert "slice time" in text and "over 2 launches" in text and "by phase" in text and "2 configs" in text


def runner_for(tmp_path, **overrides) -> StudyRunner:
    path = write_study(tmp_path, **overrides)
    spec = yaml.safe_load(path.read_text())
    del spec["trials"]  # the budget alone
    path.write_text(yaml.safe_dump(spec))
    study = load_study(path)
    return StudyRunner(study, create_or_load(study, open_storage(study.spec.storage), study.spec.name), study.spec.trials)


def test_the_budget_admits_a_launch_only_if_it_and_the_confirmation_still_fit(tmp_path):
    runner = runner_for(tmp_path, budget={"slice_hours": 0.05}, confirm={"repeats": 1, "candidates": 2})
    assert runner.total == BUDGET_ONLY_TRIALS  # no `trials`: the budget alone ends the search
    runner.snapshot.launch_s = 30.0
    runner.snapshot.slice_s = 180 - 60 - 30 - 1.0  # spent + 2 confirmation runs + the next launch = 179 s of 180
    assert runner._apply_stop_rules()
    runner.snapshot.running = {7: 10.0}  # a running launch will take the mean launch at least
    assert not runner._apply_stop_rules()
    stopped = StudyRecord.of(runner.optuna_study).search_stopped
    assert stopped.startswith("stopping the search on the budget: 0.02 of 0.05 slice-hours spent, ")
    assert "committed to running launches and the confirmation runs; one more launch (~0.5 min) would overrun" in stopped
    assert runner.total == runner.snapshot.complete == 0  # what runs finishes (no executor here); nothing more


def test_before_any_launch_the_catalogue_estimate_decides(tmp_path):
    runner = runner_for(tmp_path, budget={"slice_hours": 0.01})
    estimate, how = estimated_launch_s(runner.spec)
    assert estimate == 60 + 3 * 60 and how.startswith("estimate: startup 1 min (cpu, catalogue) + sweep at most 3 min")
    assert not runner._apply_stop_rules()  # 36 s of budget cannot hold a launch estimated at 4 min


def test_launches_that_held_no_slice_cost_nothing():
    launched = TrialRecord(number=0, wall_s=100.0, phases={"starting": 40.0, "sweep": 60.0})
    infra = TrialRecord(number=1, state="FAIL", wall_s=20.0)
    predicted = TrialRecord(number=2, wall_s=0.0, launched=False, predicted=True)
    answered = TrialRecord(number=3, wall_s=100.0, duplicate_of=0)
    cost = study_cost([launched, infra, predicted, answered], price_per_slice_hour=36.0, grid_configs=10)
    assert (cost.launches, cost.slice_s) == (2, 120.0)
    assert cost.phases == {"starting": 40.0, "sweep": 60.0, "other": 20.0}
    assert cost.describe() == "0.03 slice-hours over 2 launches (1.0 min each), 1.20 at 36/slice-hour"
    assert cost.describe_grid() == "10 configs, about 0.2 slice-hours at the mean launch (6)"
