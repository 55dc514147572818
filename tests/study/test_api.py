"""The library entry point: prepare checks everything before storage is touched, run takes the executor it is
handed (no Ray here: a LocalExecutor runs the attempts in threads), open_study reads the result back."""
from __future__ import annotations

import pytest
from tests.builders import write_study

from tuner import study as studies
from tuner.contracts.outcomes import Outcome
from tuner.errors import InputError, StudyNotFound
from tuner.study.records import StudyRecord, records
from tuner.trial import launch

pytestmark = pytest.mark.usefixtures("no_server_left_behind")


def test_run_with_a_local_executor_measures_every_trial_without_ray(tmp_path):
    prepared = studies.prepare(write_study(tmp_path))
    assert prepared.trials == 2 and prepared.sampler.name == "random" and prepared.name == "api"
    events = []
    optuna_study = studies.run(prepared, executor=studies.LocalExecutor(launch),
                               on_progress=lambda snap: events.append(snap.last_event))
    recs = records(optuna_study)
    assert sorted(r.params["seqs"] for r in recs) == [1, 4]
    assert all(r.outcome == Outcome.MEASURED and r.score is not None and r.node_id == "" for r in recs)
    assert any("trial 1 done" in e for e in events)
    stored = studies.open_study("api", prepared.storage_url)
    assert StudyRecord.of(stored).spec.model == "fake" and StudyRecord.of(stored).sampler == "random"


def test_prepare_fails_before_anything_is_written(tmp_path):
    path = write_study(tmp_path, load={"dataset": {"path": str(tmp_path / "missing.jsonl")}})
    with pytest.raises(InputError):
        studies.prepare(path)
    assert not (tmp_path / "db.sqlite").exists()


def test_open_study_names_what_is_stored(tmp_path):
    with pytest.raises(StudyNotFound):
        studies.open_study("nothing", f"sqlite:///{tmp_path / 'empty.db'}")


def test_a_grid_study_runs_past_the_end_of_its_grid(tmp_path):
    """Optuna's GridSampler stops the study from `tell` once its grid is exhausted, which raises outside
    Study.optimize: the study ends on its budget instead (the remaining proposals are answered duplicates)."""
    prepared = studies.prepare(write_study(tmp_path, sampler={"name": "grid"}, enqueue=[], trials=3))
    optuna_study = studies.run(prepared, executor=studies.LocalExecutor(launch))
    launched = [r for r in records(optuna_study) if r.search_launch and r.launched]
    assert sorted(r.params["seqs"] for r in launched) == [1, 4]
