"""The typed view of a config's serving flags."""
from __future__ import annotations

from tuner.contracts.serving import ServingFlags


def test_flags_read_as_typed_knobs_and_absent_ones_as_none():
    knobs = ServingFlags.of({"--max-num-seqs": 16, "--max-model-len": "4096", "--kv-cache-dtype": "fp8",
                             "--speculative-config": {"method": "ngram", "num_speculative_tokens": 3}})
    assert (knobs.max_num_seqs, knobs.max_model_len, knobs.max_num_batched_tokens) == (16, 4096, None)
    assert knobs.kv_cache_dtype == "fp8" and knobs.draft_tokens == 3
    defaults = ServingFlags.of({"--max-num-seqs": None, "--enforce-eager": True})
    assert defaults == ServingFlags() and defaults.draft_tokens == 0
    assert ServingFlags.of({"--max-num-seqs": True}).max_num_seqs is None  # a boolean is not a count
