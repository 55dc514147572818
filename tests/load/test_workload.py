"""The user's traffic as a workload: weighted samples, cycle mode, text and exact-length samples, describe(), means."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.load.workload import PromptFactory, Sample, Workload

CHAT = "/v1/chat/completions"


class WordTokenizer:
    """One token per word: enough for text prompts of exact length without a real tokenizer."""

    def __init__(self) -> None:
        self.vocab = [f"w{i}" for i in range(4096)]

    def encode(self, text: str) -> list[int]:
        return [int(word[1:]) if word.startswith("w") and word[1:].isdigit() else 17 for word in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids)


def bodies(workload: Workload, n: int, tokenizer=None) -> list[dict]:
    factory = PromptFactory(workload, tokenizer)
    return [json.loads(factory.body()) for _ in range(n)]


MIX = (Sample(input_len=10, output_len=3, weight=6), Sample(input_len=20, output_len=5, weight=3),
       Sample(input_len=30, output_len=7, weight=1))


def mix(**kw) -> Workload:
    return Workload(model="m", input_len=1, output_len=1, vocab_size=2048, samples=MIX, **kw)


def shape(body: dict) -> tuple[int, int]:
    return len(body["prompt"]), body["max_tokens"]


def test_weighted_draws_match_the_weights():
    counts = Counter(shape(b) for b in bodies(mix(), 6000))
    assert set(counts) == {(10, 3), (20, 5), (30, 7)}
    assert counts[(10, 3)] / 6000 == pytest.approx(0.6, abs=0.03)
    assert counts[(20, 5)] / 6000 == pytest.approx(0.3, abs=0.03)
    assert counts[(30, 7)] / 6000 == pytest.approx(0.1, abs=0.02)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), weights=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=6))
def test_the_same_seed_gives_the_same_sample_for_each_request(seed, weights):
    samples = tuple(Sample(input_len=4 + i, output_len=1 + i, weight=w) for i, w in enumerate(weights))
    w = Workload(model="m", input_len=1, output_len=1, vocab_size=512, seed=seed, samples=samples)
    first, second = PromptFactory(w), PromptFactory(w)
    a = [first.next_sample() for _ in range(40)]
    assert a == [second.next_sample() for _ in range(40)]
    assert set(a) <= set(samples)
    # the sample of request i does not depend on the prompt kind (samples have their own rng)
    words = PromptFactory(replace(w, prompt_kind="words"))
    assert [shape_of_words(json.loads(words.body())) for _ in range(40)] == [(s.input_len, s.output_len) for s in a]


def shape_of_words(body: dict) -> tuple[int, int]:
    return len(body["prompt"].split()), body["max_tokens"]


def test_different_seeds_give_different_sequences():
    a = [shape(b) for b in bodies(mix(seed=1), 50)]
    b = [shape(b) for b in bodies(mix(seed=2), 50)]
    assert a != b


@given(n=st.integers(1, 8), extra=st.integers(0, 20))
def test_cycle_visits_every_sample_in_order(n, extra):
    samples = tuple(Sample(input_len=8 + i, output_len=1 + i, weight=1000.0 if i == 0 else 0.001) for i in range(n))
    f = PromptFactory(Workload(model="m", input_len=1, output_len=1, vocab_size=512, samples=samples, cycle=True))
    seen = [f.next_sample() for _ in range(n + extra)]
    assert seen == [samples[i % n] for i in range(n + extra)]


def test_text_samples_are_sent_as_is_on_completions_and_chat():
    text = "Explain KV cache paging like I am five. ✓ \"quoted\"\nnew line"
    samples = (Sample(output_len=42, prompt=text),)
    completion = bodies(Workload(model="m", input_len=1, output_len=1, samples=samples), 3)
    assert all(b["prompt"] == text and b["max_tokens"] == 42 for b in completion)
    chat = bodies(Workload(model="m", input_len=1, output_len=1, endpoint=CHAT, samples=samples), 3)
    assert all(b["messages"] == [{"role": "user", "content": text}] and b["max_tokens"] == 42 for b in chat)
    assert all("prompt" not in b for b in chat)


def test_text_samples_need_no_vocabulary_or_tokenizer_even_when_ids_are_asked_for():
    w = Workload(model="m", input_len=1, output_len=1, prompt_kind="ids", samples=(Sample(output_len=5, prompt="hi"),))
    assert bodies(w, 1)[0]["prompt"] == "hi"
    with pytest.raises(ValueError):  # an exact-length sample still needs the vocabulary for ids
        PromptFactory(replace(w, samples=(Sample(output_len=5, input_len=8),)))


def test_exact_length_id_prompts_per_sample_with_shared_prefix():
    w = mix(prefix_len=8)
    got = bodies(w, 300)
    assert {shape(b) for b in got} == {(10, 3), (20, 5), (30, 7)}
    assert len({tuple(b["prompt"][:8]) for b in got}) == 1  # the shared prefix
    assert len({tuple(b["prompt"][8:]) for b in got}) == 300  # unique own parts


def test_a_sample_shorter_than_the_prefix_is_clamped_to_it():
    w = Workload(model="m", input_len=1, output_len=1, vocab_size=512, prefix_len=12,
                 samples=(Sample(input_len=4, output_len=2),))
    assert shape(bodies(w, 1)[0]) == (12, 2)
    assert w.mean_input_len == 12


def test_exact_length_text_prompts_per_sample_on_chat():
    w = Workload(model="m", input_len=1, output_len=1, endpoint=CHAT, vocab_size=4096,
                 samples=(Sample(input_len=7, output_len=2), Sample(input_len=13, output_len=4)), cycle=True)
    tok = WordTokenizer()
    got = bodies(w, 4, tok)
    assert [len(tok.encode(b["messages"][0]["content"])) for b in got] == [7, 13, 7, 13]
    assert [b["max_tokens"] for b in got] == [2, 4, 2, 4]


def test_mixed_text_and_length_samples():
    text = "a prompt of the user's own"
    w = Workload(model="m", input_len=1, output_len=1, vocab_size=512, cycle=True,
                 samples=(Sample(output_len=9, prompt=text), Sample(input_len=6, output_len=3)))
    a, b = bodies(w, 2)
    assert a["prompt"] == text and a["max_tokens"] == 9
    assert isinstance(b["prompt"], list) and len(b["prompt"]) == 6 and b["max_tokens"] == 3


def test_without_samples_the_ranges_work_as_before():
    w = Workload(model="m", input_len=10, output_len=4, vocab_size=512)
    assert [shape(b) for b in bodies(w, 3)] == [(10, 4)] * 3
    assert PromptFactory(w).next_sample() is None


def test_mean_lengths():
    assert mix().mean_input_len == 15 and mix().mean_output_len == 4  # (60 + 60 + 30) / 10, (18 + 15 + 7) / 10
    assert mix(cycle=True).mean_input_len == 20 and mix(cycle=True).mean_output_len == 5  # every shape equally often
    text = Workload(model="m", input_len=1, output_len=1,
                    samples=(Sample(output_len=10, prompt="x" * 400), Sample(output_len=30, prompt="y", input_len=300)))
    assert text.mean_input_len == 200 and text.mean_output_len == 20  # 400 chars ~ 100 tokens; a counted 300
    ranged = Workload(model="m", input_len=64, input_len_max=512, output_len=128)
    assert ranged.mean_input_len == 288 and ranged.mean_output_len == 128


@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000), st.floats(0.001, 1000.0)), min_size=1,
                max_size=10))
def test_mean_lengths_lie_between_the_extremes(shapes):
    w = Workload(model="m", input_len=1, output_len=1,
                 samples=tuple(Sample(input_len=i, output_len=o, weight=wt) for i, o, wt in shapes))
    assert min(i for i, _, _ in shapes) <= w.mean_input_len <= max(i for i, _, _ in shapes)
    assert min(o for _, o, _ in shapes) <= w.mean_output_len <= max(o for _, o, _ in shapes)


def test_describe():
    assert Workload(model="m", input_len=128, output_len=256).describe() == "128→256 tokens"
    assert Workload(model="m", input_len=64, input_len_max=512, output_len=128).describe() == "64–512→128 tokens"
    assert Workload(model="m", input_len=64, input_len_max=512, output_len=8, output_len_max=16).describe() \
        == "64–512→8–16 tokens"
    assert Workload(model="m", input_len=128, output_len=2, prefix_len=32).describe() \
        == "128→2 tokens, 32-token shared prefix"
    assert mix().describe() == "mix of 3 shapes (weights 60% 10→3, 30% 20→5, 10% 30→7)"
    assert mix(cycle=True).describe() == "cycle of 3 shapes (10→3, 20→5, 30→7)"
    equal = replace(mix(), samples=tuple(replace(s, weight=1.0) for s in MIX))
    assert equal.describe() == "mix of 3 shapes (equal weights: 10→3, 20→5, 30→7)"
    many = replace(mix(), samples=tuple(Sample(input_len=100 + i, output_len=10) for i in range(9)))
    assert many.describe() == "mix of 9 shapes, mean 104→10 tokens"
    data = Workload(model="m", input_len=1, output_len=1, label="chats.jsonl",
                    samples=(Sample(output_len=100, prompt="p", input_len=400),
                             Sample(output_len=300, prompt="q", input_len=424)))
    assert data.describe() == "dataset chats.jsonl: 2 samples, seed 0, mean 412→200 tokens"
    uncounted = replace(data, samples=(Sample(output_len=8, prompt="z" * 40),), seed=3, cycle=True)
    assert uncounted.describe() == "dataset chats.jsonl: 1 sample, seed 3, in order, mean ~10→8 tokens"
    assert Workload(model="m", input_len=1, output_len=1, samples=(Sample(output_len=5, input_len=7),)).describe() \
        == "7→5 tokens"


def test_samples_given_as_a_list_keep_the_workload_hashable():
    w = Workload(model="m", input_len=1, output_len=1, samples=list(MIX))  # type: ignore[arg-type]
    assert w.samples == MIX and hash(w) == hash(replace(w))


@pytest.mark.parametrize("kw", [{"output_len": 0, "input_len": 4}, {"output_len": 4}, {"output_len": 4, "input_len": 0},
                                {"output_len": 4, "input_len": 4, "weight": 0}, {"output_len": 4, "prompt": 3},
                                {"output_len": 4, "input_len": 4, "weight": float("nan")}])
def test_invalid_samples_are_refused(kw):
    with pytest.raises(ValueError):
        Sample(**kw)
