"""Study-loop helpers that need no Ray: resource mapping and recovery of trials a killed driver left running."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tuner.study import WORKER_ENV, ray_options, recover_interrupted


def test_resources_map_to_ray_options():
    assert ray_options({"CPU": 2}) == {"num_cpus": 2, "max_retries": 0, "runtime_env": {"env_vars": WORKER_ENV}}
    options = ray_options({"TPU": 4, "v6e-4": 1}, accelerator_type="TPU-V6E")
    assert options["num_cpus"] == 0 and options["resources"] == {"TPU": 4, "v6e-4": 1}
    assert options["accelerator_type"] == "TPU-V6E"
    assert ray_options({"GPU": 1})["num_gpus"] == 1


def test_running_trials_are_failed_and_requeued():
    study = optuna.create_study(directions=["maximize", "maximize"])
    done = study.ask()
    done.suggest_int("seqs", 1, 10)
    study.tell(done, [1.0, 1.0])
    left = study.ask({"seqs": optuna.distributions.IntDistribution(1, 10)})
    assert recover_interrupted(study) == [left.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    failed, waiting = study.get_trials()[1:]
    assert failed.user_attrs["failure_class"] == "infra"
    assert waiting.system_attrs["fixed_params"] == failed.params and waiting.user_attrs["requeued_from"] == left.number


def test_only_a_lost_worker_or_node_is_infrastructure():
    import ray.exceptions as rex

    from tuner.study import outcome_of_ray_error

    for lost in (rex.WorkerCrashedError(), rex.NodeDiedError("node gone"), rex.LocalRayletDiedError(),
                 rex.OutOfMemoryError("ray killed the worker")):
        failure_class, detail, trace = outcome_of_ray_error(lost)
        assert failure_class == "infra" and detail.startswith("worker lost: ") and trace == ""

    try:
        raise AssertionError("tuner's own assertion")
    except AssertionError as cause:
        wrapped = rex.RayTaskError("run_trial", "\x1b[31mTraceback (most recent call last):\n  ...\x1b[0m", cause)
    failure_class, detail, trace = outcome_of_ray_error(wrapped.as_instanceof_cause())
    assert failure_class == "tuner_error"
    assert detail == "AssertionError: tuner's own assertion"
    assert "\x1b[" not in trace and "Traceback" in trace


def test_stored_spec_has_no_secret_values(tmp_path):
    from tuner.inputs.spec import load_study
    from tuner.study import stored_spec

    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 8, flag: --max-num-seqs}\n")
    (tmp_path / "study.yaml").write_text("name: s\nmodel: m\nsearch_space: space.yaml\n"
                                         "server: {env: {HF_TOKEN: hf_x1234, PLAIN: visible}}\n")
    spec = stored_spec(load_study(tmp_path / "study.yaml"))
    assert spec["server"]["env"] == {"HF_TOKEN": "***", "PLAIN": "visible"}


def _study_file(tmp_path, enqueue: str):
    from tuner.inputs.spec import load_study

    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: int, low: 1, high: 8, flag: --max-num-seqs}\n")
    (tmp_path / "study.yaml").write_text(f"name: s\nmodel: m\nsearch_space: space.yaml\nenqueue: {enqueue}\n")
    return load_study(tmp_path / "study.yaml")


def test_enqueue_entries_added_later_run_on_the_next_start_and_none_twice(tmp_path):
    from tuner.study import create_or_load

    storage = optuna.storages.InMemoryStorage()
    first = create_or_load(_study_file(tmp_path, "[{seqs: 2}]"), storage, "s")
    trial = first.ask()
    trial.suggest_int("seqs", 1, 8)
    first.tell(trial, [1.0, 1.0])  # the enqueued config ran
    again = create_or_load(_study_file(tmp_path, "[{seqs: 2}, {seqs: 4}]"), storage, "s")
    waiting = again.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"seqs": 4}]
    assert waiting[0].user_attrs["enqueued"] is True
    create_or_load(_study_file(tmp_path, "[{seqs: 2}, {seqs: 4}]"), storage, "s")
    assert len(again.get_trials(states=(TrialState.WAITING,))) == 1  # a third start queues nothing new
    listed_twice = create_or_load(_study_file(tmp_path, "[{seqs: 2}, {seqs: 4}, {seqs: 2}]"), storage, "s")
    assert [t.system_attrs["fixed_params"] for t in listed_twice.get_trials(states=(TrialState.WAITING,))] == [
        {"seqs": 4}, {"seqs": 2}]  # as often as the file lists it


def test_trials_since_the_front_improved(tmp_path):
    """Patience watches the front the user sees: a config within the noise of one already on it improves nothing."""
    from tests.builders import add_trial

    from tuner.study import create_or_load
    from tuner.study._bookkeeping import Bookkeeper

    study = _study_file(tmp_path, "[]")
    optuna_study = create_or_load(study, optuna.storages.InMemoryStorage(), "s")
    books = Bookkeeper(study, optuna_study)

    def add(values, feasible=True):
        add_trial(optuna_study, values, -1.0 if feasible else 1.0, {})

    add([0.0, 0.0], feasible=False)
    assert books.trials_since_front_improved() == 0  # no front yet: nothing to improve on
    add([100.0, 0.5])
    add([90.0, 0.4])  # beaten beyond the noise (stability 0.1 lower)
    add([101.0, 0.5])  # within the noise of the front's config: on the front the user sees, but no improvement
    add([0.0, 0.0], feasible=False)
    assert books.trials_since_front_improved() == 3
    add([80.0, 0.9])  # a new trade-off: on the front
    assert books.trials_since_front_improved() == 0
