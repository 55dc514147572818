"""The probe set of one launch, aimed at the edges its config implies (issue 20, first part: planned, not yet sent).

Wrong tokens from a faster config have come from shapes at and just past a padding bucket (tpu-inference #3466: a
full chunked-prefill step padded to the next power of two), from a prefill that exactly fills
--max-num-batched-tokens, and from long contexts. So the probes are prompts of exactly those lengths:
  - each bucket length and one token past it: powers of two up to the padding gap, then multiples of the gap
    (VLLM_TPU_BUCKET_PADDING_GAP; 0: powers of two only), at most MAX_BUCKET_PROBES of them, spread over the range;
  - one prompt that exactly fills --max-num-batched-tokens (a full prefill step) when that fits the context;
  - one near --max-model-len (its output still fits);
  - a few short ones.
Every length leaves room for the probe's output within --max-model-len.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.contracts.quality import Probe

PADDING_GAP_ENV = "VLLM_TPU_BUCKET_PADDING_GAP"
MIN_BUCKET = 16
MAX_BUCKET_PROBES = 8  # bucket lengths probed (each with its +1): the first, the last and evenly between
SHORT_LENGTHS = (1, 5, 9)
DEFAULT_OUTPUT_LEN = 16


def bucket_lengths(limit: int, padding_gap: int) -> list[int]:
    """The padded token counts up to `limit`: powers of two up to the gap, then multiples of it (gap 0: powers of
    two only), as tpu-inference pads a step's tokens."""
    buckets, size = [], MIN_BUCKET
    while size <= limit and (padding_gap <= 0 or size <= padding_gap):
        buckets.append(size)
        size *= 2
    if padding_gap > 0:
        step = padding_gap * (1 + (buckets[-1] // padding_gap if buckets else 0))
        while step <= limit:
            buckets.append(step)
            step += padding_gap
    return buckets


def _spread(values: list[int], most: int) -> list[int]:
    if len(values) <= most:
        return values
    picks = {values[round(i * (len(values) - 1) / (most - 1))] for i in range(most)}
    return sorted(picks)


def plan_probes(flags: Mapping[str, Any], env: Mapping[str, str], output_len: int = DEFAULT_OUTPUT_LEN,
                model_max_len: int | None = None) -> list[Probe]:
    """The probes for a config's flags and env; `model_max_len`: the model's context when the config sets none."""
    max_len = int(flags.get("--max-model-len") or model_max_len or 2048)
    room = max_len - output_len  # the longest prompt whose answer still fits
    if room < 1:
        return []
    gap = int(env.get(PADDING_GAP_ENV) or 0)
    probes = [Probe(name=f"short-{n}", prompt_len=n, output_len=output_len) for n in SHORT_LENGTHS if n <= room]
    for size in _spread(bucket_lengths(room - 1, gap), MAX_BUCKET_PROBES):
        probes.append(Probe(name=f"bucket-{size}", prompt_len=size, output_len=output_len))
        probes.append(Probe(name=f"past-bucket-{size + 1}", prompt_len=size + 1, output_len=output_len))
    batched = flags.get("--max-num-batched-tokens")
    if batched and int(batched) <= room:
        probes.append(Probe(name=f"fills-batch-{int(batched)}", prompt_len=int(batched), output_len=output_len))
    probes.append(Probe(name=f"near-max-len-{room}", prompt_len=room, output_len=output_len))
    unique: dict[int, Probe] = {}
    for probe in probes:
        unique.setdefault(probe.prompt_len, probe)  # one probe per length; the first name says why it is there
    return sorted(unique.values(), key=lambda p: p.prompt_len)
