"""Warm start: another study's finished trials seed the sampler, are marked as such, and are never launches, duplicate
answers or front configs of the new study."""
from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from tests.builders import SPACE, write_surface

from tuner.errors import InputError
from tuner.inputs.spec import load_study
from tuner.study import StudyRunner, create_or_load
from tuner.study.records import TrialRecord
from tuner.study.storage import open_storage
from tuner.study.warm_start import warm_trials

STUDY = ("name: {name}\nmodel: m\nsearch_space: space.yaml\nslo: {{ttft_p99_ms: 500}}\nslo_margin: 0\n"
         "trials: {trials}\nstorage: sqlite:///{db}\nruns_dir: {runs}\nconfirm: {{repeats: 0}}\n"
         "load: {{concurrency: [2, 8], repeats: 1}}\nreplay: {{surface: surface.json, seed: 1}}\n")


def run(tmp_path, name: str, trials: int, extra: str = "") -> optuna.Study:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, trials=trials, db=tmp_path / "t.db", runs=tmp_path / "runs") + extra)
    study = load_study(path)
    optuna_study = create_or_load(study, open_storage(study.spec.storage), name,
                                  warm_trials(study, study.spec.storage))
    StudyRunner(study, optuna_study, trials).run()
    return optuna_study


@pytest.fixture
def surface(tmp_path):
    return write_surface(tmp_path)


@pytest.fixture
def first_study(surface, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    return run(tmp_path, "v6e4", 3, "enqueue: [{seqs: 4}, {seqs: 8}, {seqs: 16}]\n")


def test_the_other_studys_trials_seed_the_sampler_marked_and_off_the_budget(first_study, tmp_path):
    seeded = run(tmp_path, "v6e8", 2, "warm_start: {study: v6e4}\nsampler: {name: tpe, seed: 0}\n"
                                      "enqueue: [{seqs: 8}]\n")
    records = [TrialRecord.of(t) for t in seeded.trials]
    warm = [r for r in records if r.warm_start_from]
    assert [r.warm_start_from for r in warm] == ["v6e4#0", "v6e4#1", "v6e4#2"]
    assert all(not r.launched and not r.search_launch for r in warm)
    source = first_study.trials
    assert [r.values for r in warm] == [t.values for t in source]
    assert [r.feasible for r in warm] == [TrialRecord.of(t).feasible for t in source]  # the sampler sees 16 fail
    # The budget counts this study's launches; seqs 8 was measured here although the source had measured it, and
    # later proposals of it are answered from this study's own launch, never from the source's.
    launched = [r for r in records if r.launched]
    assert len(launched) == 2 and all(r.search_launch and not r.warm_start_from for r in launched)
    assert launched[0].params == {"seqs": 8}
    assert {r.duplicate_of for r in records if r.answered} <= {launched[0].number, launched[1].number}
    assert seeded.user_attrs["sampler"] == "tpe"


def test_the_front_and_export_hold_only_this_studys_measurements(first_study, tmp_path):
    from tuner.study.front import study_front

    seeded = run(tmp_path, "v6e8", 1, "warm_start: {study: v6e4}\nenqueue: [{seqs: 4}]\n")
    front = study_front(seeded)
    assert [c.params for c in front.configs] == [{"seqs": 4}]  # seqs 8 is better, but measured on v6e4 only
    assert all(not seeded.trials[c.trial].user_attrs.get("warm_start_from") for c in front.configs)


def test_a_resumed_study_is_not_seeded_twice(first_study, tmp_path):
    run(tmp_path, "v6e8", 1, "warm_start: {study: v6e4}\n")
    again = run(tmp_path, "v6e8", 2, "warm_start: {study: v6e4}\n")
    assert sum(1 for t in again.trials if t.user_attrs.get("warm_start_from")) == 3


def test_only_configs_of_this_space_are_carried(first_study, tmp_path):
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [4, 8],"
                                         " flag: --max-num-seqs}\n")
    path = tmp_path / "narrow.yaml"
    path.write_text(STUDY.format(name="narrow", trials=1, db=tmp_path / "t.db", runs=tmp_path / "runs")
                    + "warm_start: {study: v6e4}\n")
    study = load_study(path)
    assert [w.source for w in warm_trials(study, study.spec.storage)] == ["v6e4#0", "v6e4#1"]  # seqs 16 is not


def test_other_objectives_are_one_clear_input_error(first_study, tmp_path):
    path = tmp_path / "lat.yaml"
    path.write_text(STUDY.format(name="lat", trials=1, db=tmp_path / "t.db", runs=tmp_path / "runs")
                    + "warm_start: {study: v6e4}\nobjectives: [output_tok_s, ttft_p99_ms]\n")
    study = load_study(path)
    with pytest.raises(InputError, match=r"lat.yaml: warm_start.study: 'v6e4' optimizes \['output_tok_s', "
                                         r"'stability'\], this study \['output_tok_s', 'ttft_p99_ms'\]"):
        warm_trials(study, study.spec.storage)


def test_a_missing_source_study_stops_before_anything_is_written(surface, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "study.yaml").write_text(STUDY.format(name="new", trials=1, db=tmp_path / "t.db",
                                                      runs=tmp_path / "runs") + "warm_start: {study: nope}\n")
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path / 't.db'}")
    done = subprocess.run([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "study.yaml: warm_start.study: no study named 'nope'" in " ".join(done.stderr.split())
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 't.db'}")] == ["other"]



def test_a_warm_start_trial_is_not_exported_and_the_status_says_where_it_came_from(first_study, tmp_path):
    from rich.console import Console

    from tuner.errors import TrialNotFound
    from tuner.report import status_table
    from tuner.report.export import select_trial

    seeded = run(tmp_path, "v6e8", 1, "warm_start: {study: v6e4}\nenqueue: [{seqs: 4}]\n")
    with pytest.raises(TrialNotFound, match="trial 1 is trial 1 of study 'v6e4', added by warm start"):
        select_trial(seeded, "1")
    console = Console(record=True, width=200)
    console.print(status_table(seeded))
    assert "3 trials of v6e4 (seed the sampler; not launched here)" in console.export_text()
