"""The traffic's sampling: what is sent, what the server fills in, how it is described, and how it is read."""
from __future__ import annotations

import json

import pytest

from tuner.contracts.sampling import (
    GREEDY_BEFORE,
    Sampling,
    SamplingInForce,
    ServerDefaults,
    describe_sampling,
    parse_sampling,
    server_defaults,
)
from tuner.load.workload import PromptFactory, Sample, Workload


def body(workload: Workload) -> dict:
    return json.loads(PromptFactory(workload).body())


def test_by_default_a_request_sends_no_sampling_field():
    sent = body(Workload(model="m", input_len=8, output_len=4, vocab_size=100))
    assert not {"temperature", "top_p", "top_k", "min_p", "seed"} & set(sent)
    assert sent["max_tokens"] == 4 and sent["ignore_eos"] is True


def test_the_study_sampling_is_sent_and_a_request_log_entry_overrides_it():
    study = Sampling(temperature=0.7, top_p=0.9, seed=3)
    sent = body(Workload(model="m", input_len=8, output_len=4, vocab_size=100, sampling=study))
    assert (sent["temperature"], sent["top_p"], sent["seed"]) == (0.7, 0.9, 3)
    own = Sample(output_len=4, input_len=8, sampling=Sampling(temperature=0.0))
    sent = body(Workload(model="m", input_len=8, output_len=4, vocab_size=100, sampling=study, samples=(own,)))
    assert (sent["temperature"], sent["top_p"]) == (0.0, 0.9)


def test_greedy_is_a_temperature_of_zero():
    assert Sampling(temperature=0).greedy and not Sampling().greedy and Sampling().server_defaults
    assert SamplingInForce(sent=Sampling(temperature=0)).greedy
    assert not SamplingInForce(sent=Sampling(temperature=0), per_request=3).greedy  # a log's own may sample


def test_defaults_are_read_from_the_model_folder_as_vllm_reads_them(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"temperature": 0.8, "top_p": 0.95, "do_sample": True, "bos_token_id": 0, "max_new_tokens": 10}))
    read = server_defaults(str(tmp_path))
    assert read.source == "generation_config"
    assert read.values == {"temperature": 0.8, "top_p": 0.95, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
    assert server_defaults(str(tmp_path), {"--generation-config": "vllm"}).values["temperature"] == 1.0
    override = server_defaults(str(tmp_path), {"--override-generation-config": '{"temperature": 0.5}'})
    assert override.values["temperature"] == 0.5
    other = tmp_path / "other"
    other.mkdir()
    assert server_defaults(str(other)).source == "vllm"  # no generation config: vLLM's own
    assert server_defaults("google/gemma-4-26B-A4B-it").source == "unknown"  # a hub name, not readable here


def test_descriptions_say_who_chose_the_sampling():
    model = ServerDefaults(values={"temperature": 0.8, "top_p": 0.95}, source="generation_config")
    assert SamplingInForce(defaults=model).describe() == "temperature 0.8, top_p 0.95: the model's defaults"
    assert SamplingInForce(sent=Sampling(temperature=0), defaults=model).describe() == \
        "temperature 0 (greedy): set by the study"
    mixed = SamplingInForce(sent=Sampling(temperature=0.7), defaults=model, per_request=5).describe()
    assert mixed.startswith("temperature 0.7: set by the study; top_p 0.95: the model's defaults; 5 traffic")
    assert "not readable" in SamplingInForce().describe()
    assert describe_sampling(None) == GREEDY_BEFORE  # levels stored before sampling was recorded were greedy


@pytest.mark.parametrize(("text", "expected"), [
    ("defaults", Sampling()), ("greedy", Sampling(temperature=0.0)),
    ("temperature=0.7, top-p=0.95,seed=1", Sampling(temperature=0.7, top_p=0.95, seed=1)),
])
def test_a_command_line_sampling(text, expected):
    assert parse_sampling(text) == expected


@pytest.mark.parametrize(("text", "said"), [("hot", "'hot' is not one of"), ("temperature=-1", "temperature:"),
                                            ("top_p=2", "top_p:"), ("", "defaults")])
def test_a_bad_command_line_sampling_says_what_was_expected(text, said):
    with pytest.raises(ValueError, match=said):
        parse_sampling(text)
