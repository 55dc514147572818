"""The memory-fit estimate: vLLM's block arithmetic on uniform models, Gemma's sliding/global layers, MoE, TPU HBM."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.capacity.memory_fit import (
    Knobs,
    estimate,
    knobs_from_flags,
    load_model_shape,
    max_fitting_model_len,
    shape_from_config,
)
from tuner.contracts.hardware import SLICES, GiB, parse_hardware
from tuner.errors import InputError, ModelConfigError

ROOT = Path(__file__).resolve().parents[2]
GEMMA = ROOT / "models" / "gemma-4-26b-a4b" / "config.json"
TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 64, "num_hidden_layers": 2, "vocab_size": 2048, "intermediate_size": 512, "dtype": "float32",
        "max_position_embeddings": 65536, "tie_word_embeddings": False}
CPU = SLICES["cpu"]
V6E4 = SLICES["tpu-v6e-4"]


@pytest.fixture
def tiny():
    return shape_from_config(TINY, "tiny")


@pytest.fixture(scope="module")
def gemma():
    return load_model_shape(GEMMA)


def test_tiny_kv_per_token_is_1_kib_in_bf16(tiny):
    # float32 checkpoint served in bfloat16: 2 layers x 2 KV heads x 64 x (K+V) x 2 bytes.
    est = estimate(tiny, CPU, Knobs(max_model_len=4096, kv_cache_memory_bytes=8 * 1024**2))
    assert est.kv_bytes_per_token == {"bfloat16": 1024, "fp8": 512}
    assert est.kv_capacity_tokens == 8192  # what real vLLM logs for --kv-cache-memory-bytes 8388608


@pytest.mark.parametrize("memory, mml, tokens", [
    (5_000_000, 4736, 4864),  # 38 blocks of 128; logged as int(38 / 37 x 4736)
    (5_000_000, 1000, 4750),  # max-model-len not a multiple of the block: int(38 / 8 x 1000)
    (3_000_000, 1000, 2750),
])
def test_capacity_follows_vllms_logged_formula(tiny, memory, mml, tokens):
    assert estimate(tiny, CPU, Knobs(max_model_len=mml, kv_cache_memory_bytes=memory)).kv_capacity_tokens == tokens


def test_fit_boundary_reserves_the_null_block(tiny):
    # 38 blocks, one held back: 37 blocks = 4736 tokens is the longest sequence that fits.
    fits = estimate(tiny, CPU, Knobs(max_model_len=4736, kv_cache_memory_bytes=5_000_000))
    too_long = estimate(tiny, CPU, Knobs(max_model_len=4737, kv_cache_memory_bytes=5_000_000))
    assert fits.fits and fits.predicted_failure is None
    assert not too_long.fits and too_long.predicted_failure == "kv_capacity"
    assert max_fitting_model_len(tiny, CPU, Knobs(max_model_len=4096, kv_cache_memory_bytes=5_000_000)) == 4736


def test_cpu_without_explicit_kv_space_is_an_input_error(tiny):
    with pytest.raises(InputError, match="kv-cache-memory-bytes"):
        estimate(tiny, CPU, Knobs(max_model_len=1024))


def test_vllm_cpu_kvcache_space_env_is_gib(tiny):
    knobs = knobs_from_flags({"--max-model-len": 1024}, {"VLLM_CPU_KVCACHE_SPACE": "1"}, tiny)
    assert knobs.kv_cache_memory_bytes == GiB


def test_gemma_shape_from_the_published_numbers(gemma):
    kinds = {k.name: k for k in gemma.layer_kinds}
    assert (kinds["sliding"].layers, kinds["sliding"].kv_heads, kinds["sliding"].head_dim, kinds["sliding"].window) \
        == (25, 8, 256, 1024)
    # K shared with V in the checkpoint (one projection), both stored in vLLM's KV cache.
    assert (kinds["global"].layers, kinds["global"].kv_heads, kinds["global"].head_dim, kinds["global"].kv_tensors,
            kinds["global"].k_eq_v) == (5, 2, 512, 2, True)
    assert gemma.is_moe and gemma.num_experts == 128 and gemma.experts_per_token == 8
    # Counted from config.json: ~25.2 B total and ~3.8 B active, as published.
    assert gemma.total_params == pytest.approx(25.2e9, rel=0.02)
    assert gemma.active_params == pytest.approx(3.8e9, rel=0.02)


def test_gemma_kv_per_token_is_220_kib_bf16_and_half_in_fp8(gemma):
    est = estimate(gemma, V6E4, Knobs(max_model_len=16384, tensor_parallel_size=4, dtype="bfloat16"))
    # 25 sliding layers x 8 x 256 x (K, V) x 2 bytes + 5 global x 2 x 512 x (K, V) x 2: vLLM stores V beside K
    # even where the checkpoint shares them (vllm/v1/kv_cache_interface.py page size: head_size + head_size_v).
    assert est.kv_bytes_per_token["bfloat16"] == 220 * 1024
    assert est.kv_bytes_per_token["fp8"] == 110 * 1024
    # Past the 1024-token window only the 5 global layers grow: 5 x 2 x 512 x 2 x 2 bytes.
    assert est.kv_bytes_per_token_beyond_window["bfloat16"] == 20 * 1024


def test_gemma_weights_are_about_50_gb_in_bf16(gemma):
    est = estimate(gemma, V6E4, Knobs(max_model_len=16384, tensor_parallel_size=4))
    assert est.weights_bytes == pytest.approx(50.4e9, rel=0.02)
    assert est.weights_per_device == pytest.approx(est.weights_bytes / 4)


def test_fp8_doubles_the_capacity_and_sliding_layers_stop_growing(gemma):
    base = dict(max_model_len=16384, tensor_parallel_size=4, max_num_batched_tokens=4096)
    bf16 = estimate(gemma, V6E4, Knobs(**base))
    fp8 = estimate(gemma, V6E4, Knobs(**base, kv_cache_dtype="fp8"))
    assert fp8.kv_capacity_tokens == pytest.approx(2 * bf16.kv_capacity_tokens, rel=0.01)
    # A 16K sequence costs far less than 16K x 210 KiB: sliding layers hold ~window + batch tokens only.
    assert bf16.per_request_bytes * 4 < 16384 * 210 * 1024 * 0.5


def test_gemma_on_one_v6e_chip_does_not_fit(gemma):
    est = estimate(gemma, SLICES["tpu-v6e-1"], Knobs(max_model_len=4096))
    assert not est.fits and est.predicted_failure == "oom"
    assert "weights" in est.reason


def test_utilization_too_low_for_any_kv_is_oom(gemma):
    est = estimate(gemma, V6E4, Knobs(max_model_len=4096, tensor_parallel_size=4, gpu_memory_utilization=0.42))
    assert not est.fits and est.predicted_failure == "oom"


def test_seed_gold_standard_fits_on_v6e_4(gemma):
    knobs = knobs_from_flags({"--tensor-parallel-size": 4, "--dtype": "bfloat16", "--max-model-len": 16384,
                              "--max-num-seqs": 256, "--max-num-batched-tokens": 4096, "--kv-cache-dtype": "fp8"},
                             {}, gemma)
    est = estimate(gemma, V6E4, knobs)
    assert est.fits and est.max_concurrency > 16


def test_missing_config_key_names_it(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(InputError, match="num_hidden_layers"):
        load_model_shape(bad)


def test_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model_shape(tmp_path / "nope.json")


# -- Gemma 4, both config layouts, against vLLM 0.32 CPU's own numbers -----------------------------------------------
GEMMA4_FIXTURES = Path(__file__).parents[1] / "fixtures" / "gemma4"
CPU = parse_hardware("cpu")
# What vLLM 0.32 CPU logged for the tiny Gemma 4 MoE (5 sliding layers of 2 x 64, one global of 1 x 128 with K shared
# with V, window 128, 8 experts top-2) at --kv-cache-memory-bytes 8388608: its "KV cache size: N tokens" when it
# served, its "estimated maximum model length" when it refused.
GEMMA4_VLLM = [
    ({"--max-num-seqs": 16, "--max-model-len": 4096}, 4297, None),
    ({"--max-num-seqs": 16, "--max-model-len": 8192}, None, 4736),
    ({"--max-num-seqs": 64, "--max-num-batched-tokens": 8192, "--max-model-len": 4096}, None, 2560),
    ({"--max-num-seqs": 16, "--max-model-len": 4096, "--kv-cache-dtype": "fp8"}, 8594, None),
]


@pytest.mark.parametrize("layout", ["transformers5-layout.json", "published-layout.json"])
@pytest.mark.parametrize(("flags", "tokens", "estimated_max"), GEMMA4_VLLM)
def test_gemma4_fit_equals_vllms_numbers_from_either_config_layout(layout, flags, tokens, estimated_max):
    from tuner.capacity.memory_fit import vllm_estimated_max_model_len

    shape = load_model_shape(GEMMA4_FIXTURES / layout)
    knobs = knobs_from_flags({**flags, "--kv-cache-memory-bytes": 8388608}, {}, shape, CPU)
    est = estimate(shape, CPU, knobs)
    assert est.fits == (tokens is not None)
    if tokens is not None:
        assert est.kv_capacity_tokens == tokens
    else:
        assert vllm_estimated_max_model_len(shape, CPU, knobs) == estimated_max
    assert "6 KV cache groups" in " ".join(est.notes)  # vLLM logged "kv cache group sizes (128, x6)"


def test_both_gemma4_layouts_read_as_the_same_layers():
    a, b = (load_model_shape(GEMMA4_FIXTURES / name) for name in ("transformers5-layout.json", "published-layout.json"))
    assert a.layer_kinds == b.layer_kinds
    assert [(k.name, k.layers, k.kv_heads, k.head_dim, k.window, k.k_eq_v) for k in a.layer_kinds] == [
        ("sliding", 5, 2, 64, 128, False), ("global", 1, 1, 128, None, True)]
    assert a.experts_per_token == 2 and a.num_experts == 8


def test_a_per_layer_setting_the_fit_does_not_understand_is_an_error_naming_the_key(tmp_path):
    raw = json.loads((GEMMA4_FIXTURES / "transformers5-layout.json").read_text())
    raw["per_layer_config"]["5"]["sliding_window"] = 64
    with pytest.raises(ModelConfigError, match=r"per_layer_config\.5\.sliding_window"):
        shape_from_config(raw, "config.json")
    raw["per_layer_config"] = {"9": {"head_dim": 128}}
    with pytest.raises(ModelConfigError, match=r"per_layer_config\.9: a layer index below 6"):
        shape_from_config(raw, "config.json")


def test_layers_that_share_another_layers_kv_hold_none():
    raw = json.loads((GEMMA4_FIXTURES / "transformers5-layout.json").read_text())
    raw["num_kv_shared_layers"] = 2  # the last two layers reuse earlier ones' KV
    kinds = {k.name: k.layers for k in shape_from_config(raw, "config.json").layer_kinds}
    assert kinds == {"sliding": 4}


def test_the_published_layout_without_global_head_dim_takes_transformers_default():
    raw = json.loads((GEMMA4_FIXTURES / "published-layout.json").read_text())
    del raw["global_head_dim"]
    raw["attention_k_eq_v"] = False  # then num_global_key_value_heads is not applied either
    glob = next(k for k in shape_from_config(raw, "config.json").layer_kinds if k.window is None)
    assert (glob.kv_heads, glob.head_dim, glob.k_eq_v) == (2, 512, False)


def test_cpu_defaults_are_the_api_servers_and_follow_the_model_length():
    shape = load_model_shape(GEMMA4_FIXTURES / "published-layout.json")
    knobs = knobs_from_flags({"--max-model-len": 4096}, {}, shape, CPU)
    assert (knobs.max_num_seqs, knobs.max_num_batched_tokens) == (128, 2048)
    assert knobs_from_flags({"--max-model-len": 8, "--max-num-seqs": 2}, {}, shape, CPU).max_num_batched_tokens == 16
    assert knobs.at_model_len(4).max_num_batched_tokens == 512  # min(128 x 4, 2048)
