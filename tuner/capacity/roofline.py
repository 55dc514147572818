"""Is a measured level physically possible? Two ceilings per level: compute (prefill) and memory bandwidth (decode).

    compute  every token the server computed costs FLOP: a prompt token 2 x active parameters plus attention over
             the tokens before it (4 x query heads x head_dim per attended token and layer, sliding windows capped);
             an output token the same over its context. (prompt tokens - prefix-cache hits) x prompt FLOP + output
             tokens x output FLOP, over the level's duration, as a share of the slice's peak FLOP/s.
    decode   a decode step reads every weight it touches - the dense part, and of a MoE layer the distinct experts
             the step's tokens route to, E x (1 - (1 - k/E)^tokens) expected under uniform top-k routing - plus the
             KV cache of every running sequence, and yields per sequence one token plus its accepted drafts:
             bandwidth / bytes per step x batch x tokens per step bounds output tokens per second.

Both are generous on purpose: perfect utilisation, prefill free during decode, KV read at the level's mean prompt
length (a decode step reads at least that), the largest batch the level allows (its concurrency capped by
--max-num-seqs), and, where the server did not report its drafts, every draft accepted. A level above either is a
measurement bug (prompt tokens counted as output, prefix-cache hits, failures dropped from the duration), not a
fast server. A figure the catalog does not know turns that ceiling off, and the level says so (`Plausibility.off`).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.capacity.memory_fit import (
    DEFAULT_MAX_NUM_SEQS,
    DTYPE_BYTES,
    ModelShape,
    knobs_from_flags,
    load_model_shape,
    serving_dtype,
)
from tuner.contracts.hardware import Hardware
from tuner.contracts.results import ComputeCeiling, DecodeCeiling, LevelResult, Plausibility, Speculation
from tuner.contracts.serving import ServingFlags
from tuner.errors import ModelConfigError


# -- the slice's limits ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SliceLimits:
    """Peak FLOP/s and memory bandwidth of a whole slice, each with where the figure came from (None: unknown)."""

    name: str
    peak_flops: float | None
    flops_source: str
    bandwidth_bytes_s: float | None
    bandwidth_source: str


def slice_limits(hardware: Hardware) -> SliceLimits:
    """The catalog's vendor figures; a CPU host has none, so its own are measured (once per process)."""
    chip = hardware.chip
    if chip.kind == "cpu":
        flops, bandwidth = measure_host()
        return SliceLimits(hardware.name, flops, "measured on this host (numpy float32 2048x2048 matmul, best "
                           "of 5; a sustained rate, not a vendor peak)", bandwidth,
                           "measured on this host (numpy copy of 256 MiB, best of 5)")
    n = hardware.count
    return SliceLimits(hardware.name,
                       None if chip.bf16_flops is None else chip.bf16_flops * n,
                       f"catalog: {n} x {chip.name} peak dense bf16",
                       None if chip.hbm_bytes_s is None else chip.hbm_bytes_s * n,
                       f"catalog: {n} x {chip.name} HBM bandwidth")


@functools.cache
def measure_host() -> tuple[float, float]:
    """(FLOP/s, bytes/s) this host sustains: a float32 matmul and a copy larger than any cache, best of five."""
    import numpy as np

    n = 2048  # 17 GFLOP a product: long enough that the best of five is the host's sustained rate
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    flops = 2.0 * n**3 / _best_time(lambda: a @ a)
    src = np.ones(256 * 2**20 // 8)
    dst = np.empty_like(src)
    bandwidth = 2.0 * src.nbytes / _best_time(lambda: np.copyto(dst, src))  # each byte read once, written once
    return flops, bandwidth


def _best_time(fn: Any, tries: int = 5) -> float:
    best = float("inf")
    for _ in range(tries):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return max(best, 1e-9)


# -- what one configuration of one model reads and computes -------------------------------------------------------
@dataclass(frozen=True)
class ServingKnobs:
    """The flags the ceilings depend on."""

    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    kv_cache_dtype: str = "auto"
    weight_dtype: str = "bfloat16"
    draft_tokens: int = 0  # --speculative-config num_speculative_tokens; 0: no speculation

    @classmethod
    def from_flags(cls, flags: dict[str, Any], shape: ModelShape, hardware: Hardware | None = None) -> ServingKnobs:
        drafts = ServingFlags.of(flags).draft_tokens
        knobs = knobs_from_flags(flags, {}, shape, hardware)  # the memory fit's reading of the same flags and defaults
        return cls(max_num_seqs=knobs.max_num_seqs, kv_cache_dtype=knobs.kv_cache_dtype,
                   weight_dtype=serving_dtype(shape, knobs), draft_tokens=drafts)


def expected_experts(experts: int, top_k: int, tokens: float) -> float:
    """Distinct experts one MoE layer reads in a step of `tokens` tokens, each routed to top_k of `experts`
    uniformly: an expert is missed by one token with probability 1 - k/E, by all of them with (1 - k/E)^tokens."""
    if experts <= 0 or top_k <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


@dataclass(frozen=True)
class Roofline:
    """The two ceilings of one model under one configuration on one slice."""

    shape: ModelShape
    limits: SliceLimits
    knobs: ServingKnobs
    notes: tuple[str, ...] = ()  # what the ceilings could not take into account (kept with every level)

    # bytes
    def weight_bytes_per_step(self, tokens: float) -> tuple[float, float | None]:
        """(bytes, distinct experts per layer) a step of `tokens` tokens reads: the dense part and the lm_head
        always (the input embedding is a lookup), of each MoE layer only the experts those tokens touch."""
        s = self.shape
        per_param = DTYPE_BYTES.get(self.knobs.weight_dtype, 2.0)
        if not s.is_moe:
            return s.active_params * per_param, None
        dense = s.active_params - s.num_layers * s.experts_per_token * s.expert_params
        experts = expected_experts(s.num_experts, s.experts_per_token, tokens)
        return (dense + s.num_layers * experts * s.expert_params) * per_param, experts

    def kv_bytes_per_sequence(self, context: int) -> float:
        """KV one decode step reads for one sequence of `context` tokens (a sliding layer reads its window)."""
        dtype = self.knobs.kv_cache_dtype
        per_value = DTYPE_BYTES.get(self.knobs.weight_dtype if dtype == "auto" else dtype, 2.0)  # auto: as served
        return sum(k.bytes_per_token(per_value) * min(context, k.window or context) for k in self.shape.layer_kinds)

    # FLOP
    def attention_flop(self, attended: float) -> float:
        """Attention FLOP of one token attending to `attended` earlier tokens: QK^T and AV, 2 FLOP per MAC each."""
        return sum(k.layers * 4.0 * self.shape.attention_heads * k.head_dim * min(attended, k.window or attended)
                   for k in self.shape.layer_kinds)

    def flop_per_prompt_token(self, prompt_len: int) -> float:
        return 2.0 * self.shape.active_params + self.attention_flop(prompt_len / 2.0)  # causal: half, on average

    def flop_per_output_token(self, context: int) -> float:
        return 2.0 * self.shape.active_params + self.attention_flop(context)

    # ceilings
    def decode(self, concurrency: int, context: int, output_tok_s: float = 0.0,
               speculation: Speculation | None = None) -> DecodeCeiling | None:
        bandwidth = self.limits.bandwidth_bytes_s
        if bandwidth is None:
            return None
        batch = max(1, min(concurrency, self.knobs.max_num_seqs))
        per_seq, source, drafted = self._tokens_per_step(speculation)
        weights, experts = self.weight_bytes_per_step(batch * (1 + drafted))  # drafts are verified in the step
        kv = batch * self.kv_bytes_per_sequence(context)
        if weights + kv <= 0:
            return None  # nothing known to read: no ceiling, rather than an infinite one
        steps = bandwidth / (weights + kv)
        ceiling = steps * batch * per_seq
        return DecodeCeiling(batch=batch, context_len=context, kv_cache_dtype=self.knobs.kv_cache_dtype,
                             weight_bytes_per_step=weights, experts_read=experts,
                             experts_total=self.shape.num_experts or None, kv_bytes_per_step=kv,
                             bandwidth_bytes_s=bandwidth, bandwidth_source=self.limits.bandwidth_source,
                             steps_per_s=steps, tokens_per_step=per_seq, tokens_per_step_source=source,
                             draft_tokens=self.knobs.draft_tokens, ceiling_tok_s=ceiling,
                             share=output_tok_s / ceiling)

    def _tokens_per_step(self, speculation: Speculation | None) -> tuple[float, str, float]:
        """(tokens per step per sequence, where that came from, draft tokens verified per step)."""
        k = self.knobs.draft_tokens
        if speculation is not None:
            return 1.0 + speculation.accepted_per_draft, "measured", speculation.draft_tokens / speculation.drafts
        if k:
            return 1.0 + k, f"assumed: all {k} drafts accepted (the server reported no drafts)", float(k)
        return 1.0, "no speculation", 0.0

    def compute(self, level: LevelResult) -> ComputeCeiling | None:
        peak = self.limits.peak_flops
        if peak is None or level.duration_s <= 0:
            return None
        prompt_len, context = _lengths(level)
        hits = (level.server.prefix_cache_hits or 0.0) if level.server else 0.0
        computed = max(level.input_tokens - hits, 0.0)
        per_prompt = self.flop_per_prompt_token(prompt_len)
        per_output = self.flop_per_output_token(context)
        share = (computed * per_prompt + level.output_tokens * per_output) / level.duration_s / peak
        return ComputeCeiling(peak_flops=peak, peak_source=self.limits.flops_source, flop_per_prompt_token=per_prompt,
                              flop_per_output_token=per_output, computed_prompt_tokens=computed,
                              prompt_tok_s=computed / level.duration_s, ceiling_prompt_tok_s=peak / per_prompt,
                              share=share)

    def check(self, level: LevelResult) -> Plausibility:
        """The level's share of both ceilings; above either, it is marked invalid with what would have to be true."""
        prompt_len, _ = _lengths(level)
        speculation = level.speculation  # the runner reads it from the server's counters before this check
        compute = self.compute(level)
        decode = self.decode(level.concurrency, prompt_len, level.output_throughput, speculation)
        peak = self.limits.peak_flops
        result = Plausibility(hardware=self.limits.name, active_params=self.shape.active_params,
                              compute=compute, decode=decode, off=self._off())
        if peak is not None:
            result.ceiling_tok_s = peak / (2.0 * self.shape.active_params)
            result.compute_share = level.output_throughput / result.ceiling_tok_s
            result.total_compute_share = compute.share if compute else None
        reasons = []
        if compute is not None and compute.share > 1.0:
            reasons.append(self._compute_reason(level, compute))
        if decode is not None and decode.share > 1.0:
            reasons.append(self._decode_reason(level, decode, speculation))
        if reasons:
            result.valid = False
            result.reason = "; ".join(reasons)
        return result

    def _off(self) -> list[str]:
        off = list(self.notes)
        if self.limits.peak_flops is None:
            off.append(f"compute ceiling off: no known FLOP/s for {self.limits.name}")
        if self.limits.bandwidth_bytes_s is None:
            off.append(f"decode ceiling off: no known memory bandwidth for {self.limits.name}")
        return off

    def _compute_reason(self, level: LevelResult, compute: ComputeCeiling) -> str:
        return (f"{compute.share:.0%} of the compute ceiling of {self.limits.name} ({compute.prompt_tok_s:,.0f} computed"
                f" prompt + {level.output_throughput:,.0f} output tok/s at {compute.flop_per_output_token / 1e9:.1f}"
                f" GFLOP per token vs {compute.peak_flops / 1e12:,.0f} TFLOP/s): prefix-cache hits not reported,"
                " tokens counted that were not computed, or failures dropped from the duration?")

    def _decode_reason(self, level: LevelResult, decode: DecodeCeiling, speculation: Speculation | None) -> str:
        tok_s = level.output_throughput
        return (f"{tok_s:,.0f} output tok/s is {decode.share:.0%} of the decode ceiling ({decode.ceiling_tok_s:,.0f}"
                f" tok/s: {decode.steps_per_s:,.1f} steps/s x batch {decode.batch} x {decode.tokens_per_step:.2f}"
                f" tokens per step): {self.what_it_needs(tok_s, decode, speculation)}")

    def what_it_needs(self, output_tok_s: float, decode: DecodeCeiling, speculation: Speculation | None = None) -> str:
        """What would have to be true for `output_tok_s` to be output tokens at the decode ceiling's batch."""
        needed = output_tok_s / (decode.steps_per_s * decode.batch)  # tokens per step per sequence
        k = self.knobs.draft_tokens
        if k and needed - 1.0 <= k:
            measured = f"measured {speculation.acceptance_rate:.0%}" if speculation else "not reported by the server"
            return f"needs {(needed - 1.0) / k:.0%} of {k} drafts accepted; {measured}"
        most = f" ({(needed - 1.0) / k:.0%} of {k} drafts accepted), with {k} drafts at most {1 + k}" if k else \
            ", without speculation 1"
        return (f"needs {needed:.1f} tokens per step per sequence{most}: prompt tokens counted as output? prefix-cache"
                " hits?")


def _lengths(level: LevelResult) -> tuple[int, int]:
    """(mean prompt length, mean context of a decode step) of the level's requests."""
    prompt = level.input_len or (round(level.input_tokens / level.completed) if level.completed else 0)
    output = level.output_len or (round(level.output_tokens / level.completed) if level.completed else 0)
    return max(prompt, 1), max(prompt + output // 2, 1)


def roofline_for(hardware: Hardware, model_dir: Path | None, active_params: float | None,
                 knobs: ServingKnobs | None = None) -> Roofline | None:
    """The roofline of a running server's model (`tuner bench --hardware`): from its folder's config.json, else from
    the active parameter count alone (then no KV or expert coverage in the decode ceiling, and it says so)."""
    shape: ModelShape | None = None
    notes: tuple[str, ...] = ()
    if model_dir is not None:
        try:
            shape = load_model_shape(Path(model_dir) / "config.json", active_params=active_params)
        except ModelConfigError:
            shape = None
    if shape is None:
        if active_params is None:
            return None
        shape = ModelShape(source="--active-params", hidden_size=0, vocab_size=0, num_layers=0, layer_kinds=(),
                           dtype="bfloat16", max_position_embeddings=None, total_params=active_params,
                           active_params=active_params)
        notes = ("no config.json: the decode ceiling reads the active parameters only (no KV cache, no expert "
                 "coverage), the compute ceiling counts no attention",)
    return Roofline(shape, slice_limits(hardware), knobs or ServingKnobs(max_num_seqs=2**31 - 1), notes)
