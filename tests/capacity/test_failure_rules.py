"""Monotone rules from measured failures: which configs a kv_capacity failure rules out, and which it does not."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tuner.capacity.failure_rules import KnownFailure, cannot_fit_either, predict_kv_capacity

FAILED = KnownFailure(7, {"--max-model-len": 8192, "--gpu-memory-utilization": 0.9, "--max-num-seqs": 64,
                          "--enforce-eager": True}, {"VLLM_TPU_BUCKET_PADDING_GAP": "64"})


def flags(**changes):
    out = dict(FAILED.flags)
    for key, value in changes.items():
        out["--" + key.replace("_", "-")] = value
    return out


def test_longer_context_same_memory_cannot_fit():
    assert cannot_fit_either(flags(max_model_len=16384), FAILED.env, FAILED)
    assert cannot_fit_either(flags(), FAILED.env, FAILED)  # the same config


def test_less_kv_memory_or_a_larger_profiling_run_cannot_fit_either():
    assert cannot_fit_either(flags(gpu_memory_utilization=0.8), FAILED.env, FAILED)
    assert cannot_fit_either(flags(max_num_seqs=128), FAILED.env, FAILED)


def test_what_might_fit_is_launched():
    assert not cannot_fit_either(flags(max_model_len=4096), FAILED.env, FAILED)  # shorter context
    assert not cannot_fit_either(flags(gpu_memory_utilization=0.95), FAILED.env, FAILED)  # more memory
    assert not cannot_fit_either(flags(max_num_seqs=32), FAILED.env, FAILED)  # smaller profiling run
    assert not cannot_fit_either(flags(), {"VLLM_TPU_BUCKET_PADDING_GAP": "0"}, FAILED)  # another env
    assert not cannot_fit_either(flags(kv_cache_dtype="fp8"), FAILED.env, FAILED)  # a flag only one side sets
    no_length = {k: v for k, v in flags().items() if k != "--max-model-len"}
    assert not cannot_fit_either(no_length, FAILED.env, FAILED)  # the model's default length: unknown


def test_prediction_names_the_trial_it_was_learned_from():
    predicted = predict_kv_capacity(flags(max_model_len=16384), FAILED.env, [FAILED])
    assert predicted is not None and predicted.learned_from == 7 and predicted.failure_class == "kv_capacity"
    assert "trial 7" in predicted.detail and "16384" in predicted.detail
    assert predict_kv_capacity(flags(max_model_len=4096), FAILED.env, [FAILED]) is None


@given(st.integers(1, 1 << 20), st.integers(1, 1 << 20), st.floats(0.1, 1.0), st.floats(0.1, 1.0))
def test_rule_is_monotone_in_length_and_memory(length_a, length_b, memory_a, memory_b):
    failed = KnownFailure(0, {"--max-model-len": length_a, "--gpu-memory-utilization": memory_a}, {})
    ruled_out = cannot_fit_either({"--max-model-len": length_b, "--gpu-memory-utilization": memory_b}, {}, failed)
    assert ruled_out == (length_b >= length_a and memory_b <= memory_a)
