"""The probe set aims at the config's edges: bucket lengths and one past, a full prefill step, the longest context."""
from __future__ import annotations

from tuner.trial.probes import bucket_lengths, plan_probes


def test_buckets_are_powers_of_two_up_to_the_gap_then_multiples_of_it():
    assert bucket_lengths(1100, 0) == [16, 32, 64, 128, 256, 512, 1024]
    assert bucket_lengths(800, 256) == [16, 32, 64, 128, 256, 512, 768]
    assert bucket_lengths(300, 64)[:6] == [16, 32, 64, 128, 192, 256]  # the documented gap=64 example


def test_the_seeds_config_is_probed_at_its_bucket_edges_its_full_step_and_its_context():
    flags = {"--max-model-len": 16384, "--max-num-batched-tokens": 4096}
    probes = plan_probes(flags, {"VLLM_TPU_BUCKET_PADDING_GAP": "256"}, output_len=16)
    lengths = {p.prompt_len for p in probes}
    buckets = [p.prompt_len for p in probes if p.name.startswith("bucket-")]
    assert buckets[0] == 16 and all(n + 1 in lengths for n in buckets)  # every bucket and one token past it
    assert all(n % 256 == 0 for n in buckets if n >= 256) and max(buckets) >= 16000
    assert 4096 in lengths and max(lengths) == 16384 - 16  # a full prefill step; the longest prompt that fits
    assert {1, 5, 9} <= lengths and len(probes) <= 24
    assert all(p.prompt_len + p.output_len <= 16384 for p in probes)


def test_a_small_context_keeps_every_probe_inside_it():
    probes = plan_probes({"--max-model-len": 64, "--max-num-batched-tokens": 512}, {}, output_len=16)
    assert all(p.prompt_len + p.output_len <= 64 for p in probes)
    assert not any(p.name.startswith("fills-batch") for p in probes)  # 512 tokens cannot be one prompt here
    assert len({p.prompt_len for p in probes}) == len(probes)
    assert plan_probes({"--max-model-len": 8}, {}, output_len=16) == []
