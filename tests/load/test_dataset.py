"""Dataset files as the user's traffic: each format, sampling with limit and seed, and one clear error per bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.errors import InputError
from tuner.load.dataset import load_dataset
from tuner.load.workload import Sample

DATA = Path(__file__).resolve().parent.parent / "fixtures" / "datasets"


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def jsonl(tmp_path: Path, *objects, name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))
    return path


def test_lengths_jsonl():
    assert load_dataset(DATA / "lengths.jsonl") == (
        Sample(input_len=512, output_len=128), Sample(input_len=64, output_len=256, weight=3.0),
        Sample(input_len=2048, output_len=32, weight=0.5))


def test_prompts_jsonl_with_and_without_a_tokenizer():
    counted = load_dataset(DATA / "prompts.jsonl", count_tokens=words)
    assert [s.output_len for s in counted] == [64, 7, 24]  # the completion's 7 words counted
    assert [s.input_len for s in counted] == [10, 9, 8]
    assert counted[0].prompt.startswith("Summarise") and counted[2].weight == 2.0
    with pytest.raises(InputError) as err:  # the completion cannot be counted without a tokenizer
        load_dataset(DATA / "prompts.jsonl")
    assert err.value.key == "line 2" and "tokenizer" in str(err.value)


def test_prompts_without_a_tokenizer_keep_their_length_unknown(tmp_path):
    path = jsonl(tmp_path, {"prompt": "a b c", "output_len": 5}, {"prompt": "d e", "output_len": 6, "input_len": 2})
    assert load_dataset(path) == (Sample(output_len=5, prompt="a b c"), Sample(output_len=6, prompt="d e", input_len=2))


def test_sharegpt_json_array_like_vllm_bench_serve():
    samples = load_dataset(DATA / "sharegpt.json", count_tokens=words)
    # a2 (one turn) and a6 (none) skipped, a3 (prompt "Hi") and a5 (reply "Ok.") shorter than 4 tokens skipped;
    # a4's system turn is not the prompt
    assert [s.prompt for s in samples] == ["What is the capital of France and why is it famous?",
                                           "Explain recursion to a five year old in simple words"]
    assert [(s.input_len, s.output_len) for s in samples] == [(11, 17), (10, 15)]  # first reply only


def test_sharegpt_needs_a_tokenizer_or_explicit_output_len(tmp_path):
    with pytest.raises(InputError) as err:
        load_dataset(DATA / "sharegpt.json")
    assert err.value.key == "entry 1" and "tokenizer" in err.value.expected
    turns = [{"from": "human", "value": "one two three four five"}, {"from": "gpt", "value": "six"}]
    path = jsonl(tmp_path, {"conversations": turns, "output_len": 50})
    assert load_dataset(path) == (Sample(output_len=50, prompt="one two three four five"),)


def test_messages_with_roles_as_jsonl():
    samples = load_dataset(DATA / "messages.jsonl", count_tokens=words)
    assert [(s.input_len, s.output_len, s.weight) for s in samples] == [(8, 7, 1.0), (9, 7, 2.0)]
    assert samples[0].prompt == "List three prime numbers bigger than ten please"


def test_long_conversations_are_kept(tmp_path):
    turns = [{"from": "human", "value": "x " * 3000}, {"from": "gpt", "value": "y " * 1500}]
    assert [(s.input_len, s.output_len) for s in load_dataset(jsonl(tmp_path, {"conversations": turns}),
                                                             count_tokens=words)] == [(3000, 1500)]


def test_a_mix_of_formats_in_one_file(tmp_path):
    path = jsonl(tmp_path, {"input_len": 4, "output_len": 2}, "", {"prompt": "hello", "output_len": 3})
    assert load_dataset(path) == (Sample(input_len=4, output_len=2), Sample(output_len=3, prompt="hello"))


def numbered(tmp_path: Path, n: int) -> Path:
    return jsonl(tmp_path, *({"input_len": i, "output_len": 1} for i in range(1, n + 1)))


def test_limit_and_seed_give_a_reproducible_sample_in_file_order(tmp_path):
    path = numbered(tmp_path, 100)
    a = load_dataset(path, limit=10, seed=7)
    assert a == load_dataset(path, limit=10, seed=7) and len(a) == 10
    lens = [s.input_len for s in a]
    assert lens == sorted(lens) and lens != list(range(1, 11))
    assert a != load_dataset(path, limit=10, seed=8)
    assert len(load_dataset(path, limit=1000)) == 100 and len(load_dataset(path)) == 100


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), limit=st.integers(1, 50), seed=st.integers(0, 10**6))
def test_limit_property(tmp_path_factory, n, limit, seed):
    path = numbered(tmp_path_factory.mktemp("d"), n)
    got = [s.input_len for s in load_dataset(path, limit=limit, seed=seed)]
    assert len(got) == min(n, limit) and got == sorted(set(got)) and set(got) <= set(range(1, n + 1))
    assert got == [s.input_len for s in load_dataset(path, limit=limit, seed=seed)]


def test_limit_counts_only_as_many_conversations_as_it_needs(tmp_path):
    turns = [{"from": "human", "value": "a b c d e"}, {"from": "gpt", "value": "f g h i j"}]
    path = jsonl(tmp_path, *({"conversations": turns} for _ in range(200)))
    calls = []

    def counting(text: str) -> int:
        calls.append(text)
        return words(text)

    assert len(load_dataset(path, limit=5, count_tokens=counting)) == 5 and len(calls) == 10
    assert load_dataset(path, limit=5, seed=3, count_tokens=words) == load_dataset(path, limit=5, seed=3,
                                                                                   count_tokens=words)


def test_skipped_conversations_do_not_count_toward_the_limit(tmp_path):
    short = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a b c d"}]}
    good = {"conversations": [{"from": "human", "value": "a b c d"}, {"from": "gpt", "value": "a b c d"}]}
    path = jsonl(tmp_path, *([short] * 20 + [good] * 3))
    assert len(load_dataset(path, limit=3, seed=1, count_tokens=words)) == 3


@pytest.mark.parametrize("lines,key,expected", [
    (['{"input_len": 4, "output_len": 2}', '{"input_len": 4, "output_len": '], "line 2", "not valid JSON"),
    (['{"input_len": 4, "output_len": 2}', "", '{"text": "hi"}'], "line 3", '{"input_len": N, "output_len": N}'),
    (['{"input_len": 0, "output_len": 2}'], "line 1", "positive"),
    (['{"input_len": 5, "output_len": -1}'], "line 1", "positive"),
    (['{"input_len": 5, "output_len": 2.5}'], "line 1", "positive"),
    (['{"input_len": 5}'], "line 1", '"output_len"'),
    (['{"input_len": 5, "output_len": 3, "weight": 0}'], "line 1", "weight"),
    (['{"prompt": "", "output_len": 3}'], "line 1", "non-empty"),
    (['{"prompt": "hi"}'], "line 1", "output_len"),
    (['[1, 2]'], "entry 1", "a JSON object"),
    (['"just text"'], "line 1", "a JSON object"),
    (['{"conversations": "hello"}'], "line 1", "list of turns"),
    (['{"conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]}'], "line 1", '"value"'),
])
def test_bad_lines_name_the_line(tmp_path, lines, key, expected):
    with pytest.raises(InputError) as err:
        load_dataset(jsonl(tmp_path, *lines))
    assert err.value.source == str(tmp_path / "d.jsonl") and err.value.key == key
    assert expected in err.value.expected and "\n" not in str(err.value)


def test_file_level_errors(tmp_path):
    for path, expected in [(tmp_path / "missing.jsonl", "no such dataset file"),
                           (tmp_path, "not a directory"),
                           (jsonl(tmp_path, name="empty.jsonl"), "no entries")]:
        with pytest.raises(InputError) as err:
            load_dataset(path)
        assert err.value.key == "" and expected in err.value.expected
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="UTF-8"):
        load_dataset(binary)
    broken = tmp_path / "a.json"
    broken.write_text('[\n {"input_len": 4, "output_len": 2},\n {"input_len": 4,\n]')
    with pytest.raises(InputError) as err:
        load_dataset(broken)
    assert err.value.key == "line 4"
    with pytest.raises(InputError) as err:
        load_dataset(numbered(tmp_path, 3), limit=0)
    assert "limit" in err.value.expected


def test_no_usable_entries(tmp_path):
    path = jsonl(tmp_path, {"conversations": [{"from": "human", "value": "only one turn"}]},
                 {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a b c d"}]})
    with pytest.raises(InputError) as err:
        load_dataset(path, count_tokens=words)
    assert err.value.key == "" and "no usable entries" in err.value.expected


def test_a_completion_counted_as_zero_tokens_is_an_error(tmp_path):
    with pytest.raises(InputError) as err:
        load_dataset(jsonl(tmp_path, {"prompt": "a", "completion": "  "}), count_tokens=words)
    assert err.value.key == "line 1"


def test_samples_drive_a_workload():
    from tuner.load.workload import PromptFactory, Workload
    samples = load_dataset(DATA / "sharegpt.json", count_tokens=words)
    w = Workload(model="m", input_len=1, output_len=1, samples=samples, label="sharegpt.json", cycle=True)
    f = PromptFactory(w)
    sent = [json.loads(f.body()) for _ in range(2)]
    assert [(b["prompt"], b["max_tokens"]) for b in sent] == [(s.prompt, s.output_len) for s in samples]
    assert w.describe() == "dataset sharegpt.json: 2 samples, seed 0, in order, mean 10→16 tokens"


def test_a_request_log_carries_its_own_sampling(tmp_path):
    from tuner.contracts.sampling import Sampling

    path = tmp_path / "log.jsonl"
    path.write_text('{"input_len": 8, "output_len": 4, "temperature": 0.2, "top_p": 0.5}\n'
                    '{"input_len": 8, "output_len": 4}\n')
    first, second = load_dataset(path)
    assert first.sampling == Sampling(temperature=0.2, top_p=0.5) and second.sampling is None


def test_a_bad_sampling_value_names_the_line_and_key(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"input_len": 8, "output_len": 4}\n{"input_len": 8, "output_len": 4, "temperature": -1}\n')
    with pytest.raises(InputError, match=r'line 2: "temperature": input should be greater than or equal to 0'):
        load_dataset(path)
