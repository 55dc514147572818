"""The two ceilings with exact arithmetic on known shapes (dense, MoE, sliding window, fp8 KV), the expert-coverage
formula against a simulation, speculation parsed from a captured CPU vLLM /metrics with n-gram drafts, and the
seed's own headline figures judged."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from tuner.capacity.memory_fit import load_model_shape, shape_from_config
from tuner.capacity.roofline import Roofline, ServingKnobs, SliceLimits, expected_experts, roofline_for, slice_limits
from tuner.contracts.hardware import parse_hardware
from tuner.contracts.results import LevelResult, ServerCounters
from tuner.load.server_counters import counters_between, parse_prometheus

ROOT = Path(__file__).resolve().parents[2]
GEMMA = ROOT / "models/gemma-4-26b-a4b/config.json"
LLAMA_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 14336, "vocab_size": 128256, "torch_dtype": "bfloat16"}
H100 = SliceLimits("h100 x1", 989e12, "catalog", 3350e9, "catalog")


def level(tok_s: float, concurrency: int, input_len: int = 1000, output_len: int = 100, duration: float = 10.0,
          server: ServerCounters | None = None) -> LevelResult:
    return LevelResult(concurrency=concurrency, requests=10, completed=10, failed=0, duration_s=duration,
                       input_tokens=10 * input_len, output_tokens=int(tok_s * duration), output_throughput=tok_s,
                       input_len=input_len, output_len=output_len, server=server)


def test_dense_decode_ceiling_is_bandwidth_over_weights_plus_kv():
    shape = shape_from_config(LLAMA_8B, "llama")
    roof = Roofline(shape, H100, ServingKnobs(max_num_seqs=64))
    kv_per_seq = 32 * 8 * 128 * 2 * 2 * 1000  # layers x KV heads x head_dim x (K, V) x bf16 x 1,000 tokens
    assert roof.kv_bytes_per_sequence(1000) == kv_per_seq
    decode = roof.decode(concurrency=100, context=1000)  # 100 users, but at most 64 sequences decode at once
    steps = 3350e9 / (shape.active_params * 2 + 64 * kv_per_seq)
    assert decode.batch == 64 and decode.experts_read is None
    assert decode.steps_per_s == pytest.approx(steps) and decode.ceiling_tok_s == pytest.approx(64 * steps)
    assert decode.tokens_per_step_source == "no speculation"


def test_dense_compute_ceiling_counts_attention_and_leaves_out_prefix_cache_hits():
    shape = shape_from_config(LLAMA_8B, "llama")
    roof = Roofline(shape, H100, ServingKnobs())
    attention_per_token = 32 * 4 * 32 * 128  # layers x (QK^T + AV, 2 FLOP per MAC) x query heads x head_dim
    assert roof.flop_per_prompt_token(1000) == pytest.approx(2 * shape.active_params + attention_per_token * 500)
    hits = ServerCounters(prefix_cache_hits=4000.0)
    compute = roof.compute(level(100.0, 8, input_len=1000, output_len=100, server=hits))
    assert compute.computed_prompt_tokens == 10 * 1000 - 4000
    expected = (6000 * roof.flop_per_prompt_token(1000) + 1000 * roof.flop_per_output_token(1050)) / 10.0 / 989e12
    assert compute.share == pytest.approx(expected)


def test_sliding_window_layers_read_their_window_and_fp8_halves_the_kv():
    shape = load_model_shape(GEMMA, 25.2e9, 3.8e9)
    fp8 = Roofline(shape, H100, ServingKnobs(kv_cache_dtype="fp8"))
    sliding = 25 * 8 * 256 * 2 * 1 * 1024  # 25 sliding layers, 8 KV heads x 256, K and V, 1 byte, window 1,024
    global_ = 5 * 2 * 512 * 2 * 1 * 4096  # 5 global layers, 2 KV heads x 512, K and V (both stored), 4,096 tokens
    assert fp8.kv_bytes_per_sequence(4096) == sliding + global_
    auto = Roofline(shape, H100, ServingKnobs(kv_cache_dtype="auto"))
    assert auto.kv_bytes_per_sequence(4096) == 2 * fp8.kv_bytes_per_sequence(4096)


def test_expected_experts_matches_a_simulation_of_top_k_routing():
    rng = random.Random(0)
    for experts, top_k, tokens in ((128, 8, 4), (128, 8, 16), (8, 2, 3), (64, 6, 40)):
        runs = [len({e for _ in range(tokens) for e in rng.sample(range(experts), top_k)}) for _ in range(3000)]
        assert expected_experts(experts, top_k, tokens) == pytest.approx(sum(runs) / len(runs), rel=0.01)
    assert expected_experts(128, 8, 1) == 8 and expected_experts(128, 8, 1024) == pytest.approx(128)


def test_the_seeds_model_on_a_v6e_4_reads_about_50_gb_a_step_at_1024_users():
    shape = load_model_shape(GEMMA, 25.2e9, 3.8e9)
    v6e = slice_limits(parse_hardware("tpu-v6e-4"))
    assert v6e.bandwidth_bytes_s == 4 * 1640e9 and "catalog" in v6e.bandwidth_source
    plain = Roofline(shape, v6e, ServingKnobs(max_num_seqs=1024)).decode(1024, context=1)
    assert plain.weight_bytes_per_step == pytest.approx(50.4e9, rel=0.01) and plain.experts_read == pytest.approx(128)
    assert plain.steps_per_s == pytest.approx(130, rel=0.02) and plain.ceiling_tok_s == pytest.approx(133e3, rel=0.01)
    drafts = Roofline(shape, v6e, ServingKnobs(max_num_seqs=1024, draft_tokens=3)).decode(1024, context=1)
    assert drafts.ceiling_tok_s == pytest.approx(4 * plain.ceiling_tok_s, rel=1e-6)  # all three accepted, at most
    assert "assumed" in drafts.tokens_per_step_source


def test_the_seeds_headline_is_flagged_with_what_would_have_to_be_true():
    shape = load_model_shape(GEMMA, 25.2e9, 3.8e9)
    v6e = slice_limits(parse_hardware("tpu-v6e-4"))
    gold = Roofline(shape, v6e, ServingKnobs(max_num_seqs=256, kv_cache_dtype="fp8", draft_tokens=3))
    check = gold.check(level(468_736.0, 1024, input_len=1024, output_len=512))
    assert not check.valid and "of the decode ceiling" in check.reason and "with 3 drafts at most 4" in check.reason
    assert check.compute_share == pytest.approx(0.97, abs=0.01)  # the old, compute-only check passed it
    measured = ServerCounters(spec_drafts=1000.0, spec_draft_tokens=3000.0, spec_accepted_tokens=360.0)
    lv = level(30_000.0, 1024, input_len=1024, output_len=512, server=measured)
    lv.speculation = measured.speculation()
    slow = gold.check(lv)
    assert slow.decode.tokens_per_step == pytest.approx(1.36) and slow.decode.tokens_per_step_source == "measured"
    assert not slow.valid and "needs" in slow.reason and "drafts accepted; measured 12%" in slow.reason


def test_a_level_within_both_ceilings_is_valid_and_says_which_figures_it_used():
    shape = load_model_shape(GEMMA, 25.2e9, 3.8e9)
    gold = Roofline(shape, slice_limits(parse_hardware("tpu-v6e-4")), ServingKnobs(max_num_seqs=256))
    check = gold.check(level(5_000.0, 64))
    assert check.valid and 0 < check.decode.share < 1 and 0 < check.compute.share < 1 and not check.off
    assert check.shares().startswith("compute ") and "bandwidth" in check.shares()


def test_an_unknown_figure_turns_that_ceiling_off_and_says_so():
    shape = shape_from_config(LLAMA_8B, "llama")
    no_bandwidth = Roofline(shape, SliceLimits("x", 1e15, "catalog", None, ""), ServingKnobs())
    check = no_bandwidth.check(level(1e9, 8))
    assert check.decode is None and any("decode ceiling off" in o for o in check.off)
    assert not check.valid and "compute ceiling" in check.reason  # the one still known still decides
    assert "bandwidth off" in check.shares()


def test_a_cpu_host_measures_its_own_limits():
    cpu = slice_limits(parse_hardware("cpu"))
    assert cpu.peak_flops > 1e8 and cpu.bandwidth_bytes_s > 1e8
    assert "measured on this host" in cpu.flops_source and "measured on this host" in cpu.bandwidth_source


def test_active_params_alone_give_a_decode_ceiling_without_kv_and_say_so():
    roof = roofline_for(parse_hardware("h100"), None, 8e9)
    assert roof.weight_bytes_per_step(64) == (16e9, None) and roof.kv_bytes_per_sequence(1000) == 0
    assert "no config.json" in roof.check(level(10.0, 1)).off[0]


def test_speculation_from_a_captured_cpu_vllm_metrics_with_ngram_drafts():
    before = parse_prometheus((ROOT / "tests/fixtures/vllm_metrics/ngram_before.txt").read_text())
    after = parse_prometheus((ROOT / "tests/fixtures/vllm_metrics/ngram_after.txt").read_text())
    counters = counters_between(before, after)
    spec = counters.speculation()
    assert spec is not None and spec.drafts > 0 and spec.draft_tokens == pytest.approx(3 * spec.drafts)
    assert 0 < spec.acceptance_rate <= 1 and len(spec.per_position) == 3
    assert sum(spec.per_position) == pytest.approx(spec.accepted_per_draft)  # the positions add up to the total
    assert spec.per_position[0] >= spec.per_position[1] >= spec.per_position[2]  # a later draft needs the earlier


def test_dtype_auto_counts_the_bytes_vllm_serves_a_32_bit_checkpoint_in():
    shape = shape_from_config({**LLAMA_8B, "torch_dtype": "float32"}, "llama")
    auto = ServingKnobs.from_flags({}, shape)
    assert auto.weight_dtype == "bfloat16"  # vLLM's --dtype auto: fp32 checkpoints are served in 16 bits
    assert ServingKnobs.from_flags({"--dtype": "float32"}, shape).weight_dtype == "float32"
    roof = Roofline(shape, H100, auto)
    assert roof.weight_bytes_per_step(1)[0] == shape.active_params * 2 and roof.kv_bytes_per_sequence(1) == 32 * 8 * 128 * 2 * 2
