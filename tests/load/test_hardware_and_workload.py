"""Hardware catalog (the ceilings themselves: tests/capacity/test_roofline.py); prompt construction (exact lengths, uniqueness, shared prefix)."""
from __future__ import annotations

import json

import pytest

from tuner.capacity.memory_fit import shape_from_config
from tuner.contracts.hardware import parse_hardware
from tuner.errors import InputError
from tuner.load.arrivals import arrival_offsets
from tuner.load.workload import PromptFactory, Workload


@pytest.mark.parametrize("text,name,count", [("v6e-4", "tpu-v6e", 4), ("tpu-v5p:8", "tpu-v5p", 8),
                                             ("v5e", "tpu-v5e", 1), ("h100x8", "h100", 8), ("A100", "a100", 1),
                                             ("h200-2", "h200", 2)])
def test_hardware_names(text, name, count):
    hw = parse_hardware(text)
    assert hw.chip.name == name and hw.count == count


def test_unknown_hardware_is_an_input_error():
    with pytest.raises(InputError):
        parse_hardware("b200x8")


def test_active_params_dense_and_moe():
    dense = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256}  # Llama-3-8B: ~7.5 B without the embedding lookup
    assert shape_from_config(dense, "config.json").active_params == pytest.approx(7.5e9, rel=0.03)
    moe = {**dense, "num_local_experts": 8, "num_experts_per_tok": 2}  # Mixtral-like: 2 of 8 experts active
    assert shape_from_config(moe, "config.json").active_params == pytest.approx(13.0e9, rel=0.05)


def test_id_prompts_exact_unique_with_shared_prefix():
    f = PromptFactory(Workload(model="m", input_len=40, output_len=7, vocab_size=2048, prefix_len=24))
    bodies = [json.loads(f.body()) for _ in range(200)]
    prompts = [b["prompt"] for b in bodies]
    assert all(len(p) == 40 for p in prompts) and all(b["max_tokens"] == 7 and b["ignore_eos"] for b in bodies)
    assert len({tuple(p[:24]) for p in prompts}) == 1  # the shared prefix, on purpose
    assert len({tuple(p[24:40]) for p in prompts}) == 200  # each request's own part never repeats


def test_length_ranges_and_chat_words():
    f = PromptFactory(Workload(model="m", input_len=10, input_len_max=20, output_len=5, output_len_max=9,
                               vocab_size=2048))
    lengths = [(len(b["prompt"]), b["max_tokens"]) for b in (json.loads(f.body()) for _ in range(100))]
    assert {i for i, _ in lengths} <= set(range(10, 21)) and len({i for i, _ in lengths}) > 5
    assert {o for _, o in lengths} <= set(range(5, 10))
    chat = PromptFactory(Workload(model="m", input_len=12, output_len=3, endpoint="/v1/chat/completions"))
    body = json.loads(chat.body())
    assert len(body["messages"][0]["content"].split()) == 12 and chat.kind == "words"


def test_arrivals_have_the_requested_rate():
    for kind in ("poisson", "gamma"):
        offsets = arrival_offsets(4001, 50.0, kind, burstiness=0.5, seed=1)
        assert offsets[0] == 0.0 and 4000 / offsets[-1] == pytest.approx(50.0, rel=0.1)
