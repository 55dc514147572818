"""Search-space validation, sampling order and conditions."""
from __future__ import annotations

import optuna
import pytest

from tuner.errors import InputError
from tuner.inputs.search_space import SearchSpace, load_search_space


def space_file(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("parameters: {a: {type: int, low: 8, high: 4, flag: --a}}", "parameters.a", "empty range"),
        ("parameters: {a: {type: int, low: 1, high: 4}}", "parameters.a", "exactly one target"),
        ("parameters: {a: {type: int, low: 1, high: 4, flag: --a, env: A}}", "parameters.a", "exactly one target"),
        ("parameters: {a: {type: int, low: 1, high: 4, flag: --Max_Seqs}}", "parameters.a.flag", "--lowercase-with-dashes"),
        ("parameters: {a: {type: int, low: 1, high: 4, flag: max-seqs}}", "parameters.a.flag", "--lowercase-with-dashes"),
        ("parameters: {a: {type: int, low: 1, high: 4, env: lower}}", "parameters.a.env", "[A-Z_][A-Z0-9_]*"),
        ("parameters: {a: {type: categorical, choices: [], flag: --a}}", "parameters.a", "non-empty"),
        ("parameters: {a: {type: int, low: 1.5, high: 4, flag: --a}}", "parameters.a", "whole number"),
        ("parameters: {a: {type: float, low: 0, high: 1, log: true, flag: --a}}", "parameters.a", "low > 0"),
        ("parameters: {a: {type: int, low: 1, high: 4, flag: --a, typo: 1}}", "parameters.a.typo", "unknown key"),
        ("parameters: {a: {type: integer, low: 1, high: 4, flag: --a}}", "parameters.a.type", "Input should be"),
        ("parameters: {a: {type: int, low: 1, high: 4, flag: --a, condition: {b: 1}}}", "parameters.a.condition",
         "unknown parameter 'b'"),
        ("parameters: {a: {type: bool, flag: --a, condition: {b: true}}, b: {type: bool, flag: --b, condition: {a: true}}}",
         "parameters", "cycle"),
        ("parameters: {}", "parameters", "at least one"),
        ("parameters: {a: {type: int, low: 1, high: 4, key: k, env: A}}", "parameters.a", "'key' needs a JSON-valued"),
    ],
)
def test_bad_space(tmp_path, text, key, expected):
    path = space_file(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_search_space(path)
    assert info.value.source == str(path)
    assert info.value.key.startswith(key)
    assert expected in info.value.expected


def test_conditions_sample_in_dependency_order(tmp_path):
    space = load_search_space(space_file(tmp_path, """
parameters:
  tokens: {type: int, low: 1, high: 5, flag: --speculative-config, key: num_speculative_tokens, condition: {method: ngram}}
  method: {type: categorical, choices: [null, ngram], flag: --speculative-config, key: method}
"""))
    assert space.sampling_order() == ["method", "tokens"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(20):
        params = space.sample(study.ask())
        seen.add(params["method"])
        assert ("tokens" in params) == (params["method"] == "ngram")
    assert seen == {None, "ngram"}


def test_active_drops_unmet_conditions(tmp_path):
    space = load_search_space(space_file(tmp_path, """
parameters:
  tokens: {type: int, low: 1, high: 5, flag: --speculative-config, key: num_speculative_tokens, condition: {method: [ngram]}}
  method: {type: categorical, choices: [null, ngram], flag: --speculative-config, key: method}
"""))
    assert space.active({"method": None, "tokens": 3}) == {"method": None}
    assert space.active({"method": "ngram", "tokens": 3}) == {"method": "ngram", "tokens": 3}


def test_check_values_against_ranges(tmp_path):
    space = load_search_space(space_file(tmp_path, "parameters: {a: {type: int, low: 1, high: 4, step: 1, flag: --a}}"))
    space.check_values({"a": 3}, "enqueue.0")
    with pytest.raises(ValueError, match="outside"):
        space.check_values({"a": 9}, "enqueue.0")


@pytest.mark.parametrize("spec, value, admitted", [
    ({"type": "int", "low": 4, "high": 64, "step": 4}, 16, True),
    ({"type": "int", "low": 4, "high": 64, "step": 4}, 18, False),
    ({"type": "int", "low": 4, "high": 64}, 65, False),
    ({"type": "int", "low": 4, "high": 64}, 4.5, False),
    ({"type": "float", "low": 0.5, "high": 0.95}, 0.9, True),
    ({"type": "categorical", "choices": [None, 0, 64]}, None, True),
    ({"type": "categorical", "choices": [0, 1]}, True, False),  # a bool is not the integer 1 here
    ({"type": "categorical", "choices": [2048]}, 2048.0, True),
    ({"type": "bool"}, False, True),
    ({"type": "bool"}, 0, False),
])
def test_fixed_values_admitted_by_range_step_and_choices(spec, value, admitted):
    space = SearchSpace.model_validate({"parameters": {"p": {**spec, "flag": "--p"}}})
    assert space.parameters["p"].admits(value) is admitted
