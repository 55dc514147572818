"""Export: a stored trial becomes YAML that `vllm serve --config` takes (keys without --, JSON flags as mappings)."""
from __future__ import annotations

import optuna
import pytest
import yaml

from tuner.errors import TrialNotFound
from tuner.export import render_config, render_env_file, select_trial, write_atomically


@pytest.fixture
def study():
    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("spec", {"model": "google/gemma-4-26B-A4B-it"})

    def add(values, constraint, flags, env=None):
        t = s.ask()
        t.suggest_int("seqs", 1, 4096)
        t.set_constraint("config_failure", constraint)
        for key, value in {"server_flags": flags, "env": env or {}, "levels": [],
                           "peak_concurrency": 64, "stability_components": {"success": 1.0}}.items():
            t.set_user_attr(key, value)
        s.tell(t, values)

    add([100.0, 0.99], -1.0, {"--max-num-seqs": 256, "--enable-prefix-caching": True,
                              "--speculative-config": {"method": "ngram", "num_speculative_tokens": 3}},
        {"VLLM_TPU_BUCKET_PADDING_GAP": "256", "HF_TOKEN": "***"})
    add([200.0, 0.50], -1.0, {"--max-num-seqs": 2048})
    add([0.0, 0.0], 1.0, {"--max-num-seqs": 4096})
    add([90.0, 0.40], -1.0, {"--max-num-seqs": 8})  # dominated
    return s


def test_selectors(study):
    assert select_trial(study, "max-throughput").number == 1
    assert select_trial(study, "max-stability").number == 0
    assert select_trial(study, "3").number == 3


def test_infeasible_or_unknown_trials_refused(study):
    with pytest.raises(TrialNotFound, match="not a feasible"):
        select_trial(study, "2")
    with pytest.raises(TrialNotFound, match="no trial 99"):
        select_trial(study, "99")
    with pytest.raises(TrialNotFound, match="trial number"):
        select_trial(study, "fastest")


def test_config_yaml_is_what_vllm_config_expects(study):
    text = render_config(study, select_trial(study, "0"))
    data = yaml.safe_load(text)
    assert data == {
        "model": "google/gemma-4-26B-A4B-it",
        "max-num-seqs": 256,
        "enable-prefix-caching": True,
        "speculative-config": {"method": "ngram", "num_speculative_tokens": 3},
    }
    assert "#   VLLM_TPU_BUCKET_PADDING_GAP=256" in text
    assert "100.0 output tok/s" in text


def test_env_file_never_contains_secrets(study):
    text = render_env_file(select_trial(study, "0"))
    assert "export VLLM_TPU_BUCKET_PADDING_GAP=256" in text
    assert "HF_TOKEN is a secret" in text and "***" not in text


def test_write_atomically_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "best.yaml"
    write_atomically(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["best.yaml"]

