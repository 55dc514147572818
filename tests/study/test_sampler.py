"""Which sampler a study gets: the evidence-chosen default (auto), and each named sampler sized to the budget."""
from __future__ import annotations

import optuna
import pytest

from tuner.errors import InputError
from tuner.inputs.spec import load_study
from tuner.study import _sampler
from tuner.study._sampler import choose_sampler, make_sampler

SPACE = """
parameters:
  seqs: {type: int, low: 4, high: 64, flag: --max-num-seqs}
"""
GOOD = """
name: s1
model: m
search_space: space.yaml
"""


def test_auto_takes_gp_when_torch_and_scipy_are_installed_and_trials_run_one_at_a_time(tmp_study, monkeypatch):
    monkeypatch.setattr(_sampler, "gp_available", lambda: True)
    study = load_study(tmp_study(GOOD, SPACE))
    assert study.spec.sampler.name == "auto"
    assert choose_sampler(study).name == "gp" and "fewest launches" in choose_sampler(study).reason
    assert isinstance(make_sampler(study, 0), optuna.samplers.GPSampler)


def test_auto_falls_back_to_tpe_without_torch_and_says_how_to_get_gp(tmp_study, monkeypatch):
    monkeypatch.setattr(_sampler, "gp_available", lambda: False)
    choice = choose_sampler(load_study(tmp_study(GOOD, SPACE)))
    assert choice.name == "tpe" and "pip install 'tuner[gp]'" in choice.reason


def test_auto_takes_tpe_with_constant_liar_for_parallel_trials(tmp_study, monkeypatch):
    monkeypatch.setattr(_sampler, "gp_available", lambda: True)  # GPSampler has no constant liar
    study = load_study(tmp_study(GOOD + "parallel: 2\n", SPACE))
    assert choose_sampler(study).name == "tpe"
    assert make_sampler(study, 0)._constant_liar


def test_a_named_sampler_is_kept(tmp_study, monkeypatch):
    monkeypatch.setattr(_sampler, "gp_available", lambda: True)
    assert choose_sampler(load_study(tmp_study(GOOD + "sampler: {name: random}\n", SPACE))) == \
        _sampler.SamplerChoice("random", "")


def test_grid_sampler_needs_a_finite_grid(tmp_study):
    from tuner.study._sampler import make_sampler

    study = load_study(tmp_study(GOOD + "sampler: {name: grid, seed: 1}\n",
                                 "parameters:\n  seqs: {type: int, low: 4, high: 16, step: 4, flag: --max-num-seqs}\n"
                                 "  gap: {type: categorical, choices: [0, 128], env: VLLM_TPU_BUCKET_PADDING_GAP}\n"))
    assert study.space.grid() == {"seqs": [4, 8, 12, 16], "gap": [0, 128]}
    assert isinstance(make_sampler(study, 0), optuna.samplers.GridSampler)
    with pytest.raises(InputError, match=r"space.yaml: parameters.seqs: a log-scale int range has no grid"):
        load_study(tmp_study(GOOD + "sampler: {name: grid}\n",
                             "parameters:\n  seqs: {type: int, low: 4, high: 64, log: true, flag: --max-num-seqs}\n"))


def test_nsga2_population_is_sized_to_the_budget(tmp_study):
    from tuner.study._sampler import make_sampler

    study = load_study(tmp_study(GOOD + "trials: 24\nsampler: {name: nsga2}\n", SPACE))
    assert make_sampler(study, 0)._population_size == 6  # Optuna's 50 would make a 24-trial study random search
    study = load_study(tmp_study(GOOD + "trials: 24\nsampler: {name: nsga2, population_size: 10}\n", SPACE))
    assert make_sampler(study, 0)._population_size == 10


def test_tpe_knows_running_trials_when_trials_run_in_parallel(tmp_study):
    from tuner.study._sampler import make_sampler

    assert not make_sampler(load_study(tmp_study(GOOD + "sampler: {name: tpe}\n", SPACE)), 0)._constant_liar
    assert make_sampler(load_study(tmp_study(GOOD + "parallel: 4\nsampler: {name: tpe}\n", SPACE)), 0)._constant_liar
