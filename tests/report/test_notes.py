"""What optuna-dashboard shows of a study: a readable note on every trial and the study, and tuner's plots."""
from __future__ import annotations

import optuna
import optuna_dashboard

from tuner.report import publish_to_dashboard


def note_of(study, number: int) -> str:
    return optuna_dashboard.get_note(optuna.Trial(study, study.trials[number]._trial_id))


def test_every_trial_has_a_note_written_by_study_start(reviewed):
    study = reviewed.load()
    feasible, failed = note_of(study, 1), note_of(study, 2)
    assert feasible.startswith("## Trial 1 (search trial)") and "Feasible:" in feasible
    assert "--max-num-seqs 4" in feasible and "| sweep | 4 |" in feasible
    assert "(Ray node `" in feasible  # where it ran: node_id, recorded by the worker
    assert "| ceilings |" in feasible and "compute " in feasible and "· bandwidth " in feasible
    assert "Ceilings of cpu: compute: measured on this host" in feasible
    assert "Penalized: kv_capacity" in failed and "KV cache" in failed
    assert "Trade-off" in optuna_dashboard.get_note(study)


def test_publishing_again_rewrites_nothing_and_keeps_one_copy_of_each_plot(reviewed):
    study = reviewed.load()
    assert publish_to_dashboard(study) == 0
    from optuna_dashboard._custom_plot_data import list_graph_object_ids  # what the dashboard itself lists

    ids = list_graph_object_ids(study._storage.get_study_system_attrs(study._study_id))
    assert {"tuner-front", "tuner-failures", "tuner-progress", "tuner-curves-1"} <= set(ids)
    assert len(ids) == len(set(ids))
