"""Search-space rules: a config breaking one is reported before launch (and enqueued ones are refused at load)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import InputError
from tuner.inputs.search_space import SearchSpace
from tuner.inputs.spec import load_study

ROOT = Path(__file__).resolve().parents[2]
GEMMA_STUDY = ROOT / "studies" / "gemma4-26b-v6e-4.yaml"

SPACE = {
    "parameters": {
        "mnbt": {"type": "int", "low": 128, "high": 8192, "flag": "--max-num-batched-tokens"},
        "seqs": {"type": "categorical", "choices": [64, 256, 2048], "flag": "--max-num-seqs"},
        "method": {"type": "categorical", "choices": [None, "ngram"], "flag": "--speculative-config", "key": "method"},
        "k": {"type": "int", "low": 1, "high": 5, "flag": "--speculative-config", "key": "num_speculative_tokens",
              "condition": {"method": "ngram"}},
        "lmin": {"type": "int", "low": 1, "high": 8, "flag": "--speculative-config", "key": "prompt_lookup_min",
                 "condition": {"method": "ngram"}},
        "lmax": {"type": "int", "low": 1, "high": 8, "flag": "--speculative-config", "key": "prompt_lookup_max",
                 "condition": {"method": "ngram"}},
        "gap": {"type": "int", "low": 0, "high": 1024, "env": "VLLM_TPU_BUCKET_PADDING_GAP"},
    },
    "rules": [
        {"name": "aligned", "multiple_of": {"name": "--max-num-batched-tokens", "of": 128}},
        {"name": "no-async-ngram", "why": "ngram runs on the host",
         "forbid": {"--speculative-config.method": "ngram", "--async-scheduling": True}},
        {"name": "seqs-in-batch", "less_equal": ["--max-num-seqs", "--max-num-batched-tokens"]},
        {"name": "lookup", "less_equal": ["lmin", "lmax"]},
        {"name": "gap64", "multiple_of": {"name": "VLLM_TPU_BUCKET_PADDING_GAP", "of": 64}},
    ],
}


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.model_validate(SPACE)


def test_good_config_has_no_violations(space):
    assert space.violations({"mnbt": 4096, "seqs": 256, "method": "ngram", "k": 3, "lmin": 2, "lmax": 4, "gap": 256}) == []


def test_unaligned_batched_tokens(space):
    [v] = space.violations({"mnbt": 4000, "seqs": 64})
    assert v.startswith("aligned: --max-num-batched-tokens=4000 is not a multiple of 128")


def test_async_with_ngram_from_a_fixed_study_flag(space):
    # --async-scheduling is not a parameter here: the study fixes it. The rule still sees it.
    params = {"mnbt": 4096, "seqs": 64, "method": "ngram", "k": 3}
    assert space.violations(params) == []
    [v] = space.violations(params, flags={"--async-scheduling": True})
    assert "no-async-ngram" in v and "(ngram runs on the host)" in v
    assert space.violations({**params, "method": None}, flags={"--async-scheduling": True}) == []


def test_less_equal_across_parameters(space):
    assert any(v.startswith("seqs-in-batch") for v in space.violations({"mnbt": 1024, "seqs": 2048}))
    assert any(v.startswith("lookup") for v in space.violations({"mnbt": 1024, "seqs": 64, "method": "ngram",
                                                                 "lmin": 5, "lmax": 3}))


def test_inactive_parameters_do_not_trigger_rules(space):
    # lmin/lmax only exist with ngram; without it their stale values must not count.
    assert space.violations({"mnbt": 1024, "seqs": 64, "method": None, "lmin": 5, "lmax": 3}) == []


def test_zero_gap_is_allowed_and_env_strings_are_numbers(space):
    assert space.violations({"mnbt": 1024, "seqs": 64, "gap": 0}) == []
    [v] = space.violations({"mnbt": 1024, "seqs": 64}, env={"VLLM_TPU_BUCKET_PADDING_GAP": "100"})
    assert v.startswith("gap64")


def test_rule_needs_exactly_one_kind():
    bad = {**SPACE, "rules": [{"name": "x", "multiple_of": {"name": "mnbt", "of": 2}, "less_equal": ["a", "b"]}]}
    with pytest.raises(ValueError, match="exactly one"):
        SearchSpace.model_validate(bad)


def test_rule_naming_nothing_known_is_refused():
    bad = {**SPACE, "rules": [{"name": "x", "less_equal": ["seqs", "not a name"]}]}
    with pytest.raises(ValueError, match="neither a parameter"):
        SearchSpace.model_validate(bad)


def test_enqueued_config_breaking_a_rule_is_refused_at_load(space):
    with pytest.raises(ValueError, match="breaks rule aligned"):
        space.check_values({"mnbt": 1000}, "enqueue.0")


def test_enqueued_rule_break_is_a_one_line_input_error(tmp_study):
    space_yaml = ("parameters:\n  mnbt: {type: int, low: 128, high: 8192, flag: --max-num-batched-tokens}\n"
                  "rules:\n  - {name: aligned, multiple_of: {name: mnbt, of: 128}}\n")
    study = tmp_study("name: s\nmodel: m\nsearch_space: space.yaml\nenqueue:\n  - {mnbt: 1000}\n", space_yaml)
    with pytest.raises(InputError) as info:
        load_study(study)
    assert "enqueue.0" in str(info.value) and "aligned" in str(info.value)


def test_gemma_study_seed_configs_break_no_rule():
    study = load_study(GEMMA_STUDY)
    for params in study.spec.enqueue:
        assert study.space.violations(params, study.spec.server.flags, study.spec.server.env) == []
    assert len(study.space.rules) >= 4


def test_gemma_space_ranges():
    space = load_study(GEMMA_STUDY).space
    p = space.parameters
    assert min(p["max_num_seqs"].choices) == 64 and max(p["max_num_seqs"].choices) == 2048
    assert min(p["max_model_len"].choices) == 4096 and max(p["max_model_len"].choices) == 65536
    assert p["max_num_batched_tokens"].step == 128 and p["max_num_batched_tokens"].low % 128 == 0
    assert (p["num_speculative_tokens"].low, p["num_speculative_tokens"].high) == (1, 5)
    for name in ("num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max"):
        assert p[name].condition == {"spec_method": "ngram"}
    assert set(p["kv_cache_dtype"].choices) == {"auto", "fp8"}
    assert all(g % 64 == 0 for g in p["padding_gap"].choices) and 0 in p["padding_gap"].choices
    assert p["padding_gap"].env == "VLLM_TPU_BUCKET_PADDING_GAP"
