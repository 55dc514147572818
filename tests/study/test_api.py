"""The library entry point: prepare checks everything before storage is touched, run takes the executor it is
handed (no Ray here: a LocalExecutor runs the attempts in threads), open_study reads the result back."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tuner import study as studies
from tuner.contracts.outcomes import Outcome
from tuner.errors import InputError, StudyNotFound
from tuner.study.records import StudyRecord, records
from tuner.trial import run_trial

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")

pytestmark = pytest.mark.usefixtures("no_server_left_behind")


def write_study(tmp_path: Path, **overrides) -> Path:
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [1, 4], flag: --max-num-seqs}\n")
    spec = {
        "name": "api", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "FAKE_VLLM_TOKEN_MS": "1",
                                                                    "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1",
                                                                    "TUNER_TEST_TAG": str(tmp_path)}},
        "load": {"concurrency": [1, 4], "requests_per_level": 8, "warmup_rounds": 1, "input_len": 8, "output_len": 8,
                 "repeats": 1, "request_timeout_s": 20, "level_timeout_s": 60},
        "resources": {"CPU": 1}, "trials": 2, "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "runs_dir": str(tmp_path / "runs"), "timeouts": {"startup_s": 120, "shutdown_grace_s": 2},
        "sampler": {"name": "random", "seed": 0}, "enqueue": [{"seqs": 1}, {"seqs": 4}], "confirm": {"repeats": 0},
        **overrides,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_with_a_local_executor_measures_every_trial_without_ray(tmp_path):
    prepared = studies.prepare(write_study(tmp_path))
    assert prepared.trials == 2 and prepared.sampler.name == "random" and prepared.name == "api"
    events = []
    optuna_study = studies.run(prepared, executor=studies.LocalExecutor(run_trial),
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
    optuna_study = studies.run(prepared, executor=studies.LocalExecutor(run_trial))
    launched = [r for r in records(optuna_study) if r.search_launch and r.launched]
    assert sorted(r.params["seqs"] for r in launched) == [1, 4]
