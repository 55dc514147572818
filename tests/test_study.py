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
