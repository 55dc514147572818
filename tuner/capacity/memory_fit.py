"""Memory-fit estimate: will a configuration's weights and one max-model-len sequence fit, and how many KV tokens?

A dry run that costs no accelerator time. From the model's config.json (grouped-query attention, Gemma-style
sliding-window and global layers, MoE) and the slice's memory it estimates, per device:

    weights      total parameters x weight dtype / tensor-parallel size
    KV memory    memory x gpu-memory-utilization - weights - workspace     (or --kv-cache-memory-bytes exactly)
    KV capacity  in tokens, computed the way vLLM 0.32 computes the "KV cache size: N tokens" it logs
    fit          one request of max-model-len fits in the KV memory minus the block pool's null block

The block arithmetic mirrors vllm/v1/core/kv_cache_utils.py (get_kv_cache_config_from_groups,
check_enough_kv_cache_memory, get_kv_cache_capacity): num_blocks = memory // bytes_per_block; a full-attention
layer needs cdiv(max_model_len, block) blocks per request, a sliding layer cdiv(min(window-1+max_num_batched_tokens,
max_model_len), block)+1; logged tokens = int(num_blocks / blocks_per_request * max_model_len). For models whose
layers all share one spec (the CPU tiny Llama) this is exact and calibrated against real vLLM
(tests/e2e/test_calibration.py). For hybrid models (Gemma) it is memory-proportional: it assumes vLLM's hybrid
allocator does not pad pages, so treat it as an estimate. The workspace (activations, logits, XLA programs) is a
coarse allowance, not a model of the compiler: a config near the HBM edge can still OOM at compile time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.contracts.hardware import GiB, Hardware
from tuner.contracts.outcomes import FailureClass
from tuner.errors import ModelConfigError, ServerFlagError

DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "int8": 1,
}
# vLLM's own defaults where a flag is not given (online serving).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
# Coarse per-token activation allowance: residual stream, norms, qkv, attention output, MLP in/out and their
# temporaries are each about hidden x dtype per scheduled token; 16 of them is a deliberately generous bound.
ACTIVATION_BUFFERS = 16


@dataclass(frozen=True)
class LayerKind:
    """Attention layers that share one KV layout. window None: global (full) attention."""

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    kv_tensors: int = 2  # K and V; 1 when V reuses K (Gemma 4's global layers)
    window: int | None = None

    def heads_per_device(self, tp: int) -> int:
        # vLLM shards KV heads over tensor-parallel ranks and replicates them when tp exceeds the head count.
        return max(1, self.kv_heads // tp)

    def bytes_per_token(self, dtype_bytes: float, tp: int = 1, per_device: bool = False) -> float:
        heads = self.heads_per_device(tp) if per_device else self.kv_heads
        return self.layers * heads * self.head_dim * self.kv_tensors * dtype_bytes


@dataclass(frozen=True)
class ModelShape:
    source: str
    hidden_size: int
    vocab_size: int
    num_layers: int
    layer_kinds: tuple[LayerKind, ...]
    dtype: str  # checkpoint dtype
    max_position_embeddings: int | None
    num_experts: int = 0
    experts_per_token: int = 0
    total_params: float = 0.0
    active_params: float = 0.0
    attention_heads: int = 0  # query heads (attention FLOP); KV heads are per layer kind
    expert_params: float = 0.0  # one routed expert of one layer (what a decode step reads per expert it touches)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0


def load_model_shape(config_path: Path, total_params: float | None = None,
                     active_params: float | None = None) -> ModelShape:
    try:
        raw = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(str(config_path), "", "model config.json not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(str(config_path), "", f"cannot be read as JSON ({exc})") from None
    return shape_from_config(raw, str(config_path), total_params, active_params)


def shape_from_config(raw: dict[str, Any], source: str, total_params: float | None = None,
                      active_params: float | None = None) -> ModelShape:
    cfg = raw.get("text_config") or raw  # multimodal checkpoints keep the language model under text_config
    try:
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        vocab = int(cfg["vocab_size"])
    except KeyError as exc:
        raise ModelConfigError(source, str(exc.args[0]), "required in config.json for the memory estimate") from None
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types") or _layer_types_from_pattern(cfg, layers)
    if len(types) != layers:
        raise ModelConfigError(source, "layer_types", f"has {len(types)} entries for {layers} layers")
    n_sliding = sum(1 for t in types if t == "sliding_attention") if window else 0
    n_full = layers - n_sliding
    kinds: list[LayerKind] = []
    if n_sliding:
        kinds.append(LayerKind("sliding", n_sliding, kv_heads, head_dim, 2, int(window or 0)))
    if n_full:
        if n_sliding and cfg.get("num_global_key_value_heads"):
            # Gemma 4: global layers have their own KV head count and head size, and may share K with V.
            kinds.append(LayerKind("global", n_full, int(cfg["num_global_key_value_heads"]),
                                   int(cfg.get("global_head_dim") or head_dim),
                                   1 if cfg.get("attention_k_eq_v") else 2))
        else:
            kinds.append(LayerKind("global", n_full, kv_heads, head_dim, 2))
    experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0)
    top_k = int(cfg.get("num_experts_per_tok") or cfg.get("top_k_experts") or 0)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or raw.get("torch_dtype") or raw.get("dtype") or "bfloat16")
    shape = ModelShape(source=source, hidden_size=hidden, vocab_size=vocab, num_layers=layers,
                       layer_kinds=tuple(kinds), dtype=dtype,
                       max_position_embeddings=cfg.get("max_position_embeddings"),
                       num_experts=experts, experts_per_token=top_k, attention_heads=heads,
                       expert_params=3.0 * hidden * int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
                                                        or 0) if experts else 0.0)
    counted_total, counted_active = count_params(cfg, shape, heads)
    return ModelShape(**{**shape.__dict__, "total_params": float(total_params or counted_total),
                         "active_params": float(active_params or counted_active)})


def _layer_types_from_pattern(cfg: dict[str, Any], layers: int) -> list[str]:
    pattern = cfg.get("sliding_window_pattern")
    if cfg.get("sliding_window") and pattern:
        # Gemma 2/3 style: every pattern-th layer is global, the others slide.
        return ["full_attention" if (i + 1) % int(pattern) == 0 else "sliding_attention" for i in range(layers)]
    if cfg.get("sliding_window") and cfg.get("use_sliding_window") is True:
        return ["sliding_attention"] * layers
    return ["full_attention"] * layers


def count_params(cfg: dict[str, Any], shape: ModelShape, heads: int) -> tuple[float, float]:
    """(total, active) parameters of a decoder-only transformer from its config (norms and biases ignored).

    total: every weight (what memory holds). active: the weights one token's matmuls use — attention, the MLP or
    the routed top-k experts plus shared experts and the router, and the output projection; the input embedding
    is a lookup, not a matmul, so it counts once, as the output projection (they are one matrix when tied).
    The one counter tuner has: the memory-fit estimate and the plausibility ceiling both read it.
    """
    h = shape.hidden_size
    embed = shape.vocab_size * h
    lm_head = 0 if cfg.get("tie_word_embeddings", False) else embed
    attention = 0.0
    for kind in shape.layer_kinds:
        q_dim = heads * kind.head_dim
        attention += kind.layers * (2 * h * q_dim + kind.kv_tensors * h * kind.kv_heads * kind.head_dim)
    dense_mlp = 3 * h * int(cfg.get("intermediate_size") or 4 * h) * shape.num_layers
    if not shape.is_moe:
        return embed + lm_head + attention + dense_mlp, embed + attention + dense_mlp
    expert = 3 * h * int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or 0)
    router = h * shape.num_experts
    shared = _shared_expert_params(cfg, h, expert, dense_mlp)
    experts_all = shape.num_layers * (shape.num_experts * expert + router)
    experts_active = shape.num_layers * (shape.experts_per_token * expert + router)
    return (embed + lm_head + attention + shared + experts_all, embed + attention + shared + experts_active)


def _shared_expert_params(cfg: dict[str, Any], h: int, expert: int, dense_mlp: float) -> float:
    """Always-on MLP weights beside the routed experts: DeepSeek/Qwen shared experts, or (Gemma 4) the dense MLP
    that intermediate_size describes when moe_intermediate_size sizes the experts."""
    layers = int(cfg.get("num_hidden_layers") or 0)
    explicit = int(cfg.get("n_shared_experts") or 0) * expert + 3 * h * int(cfg.get("shared_expert_intermediate_size") or 0)
    if explicit:
        return layers * explicit
    return dense_mlp if cfg.get("moe_intermediate_size") else 0.0


@dataclass(frozen=True)
class Knobs:
    """The serving flags the estimate depends on, with vLLM's defaults filled in."""

    max_model_len: int
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    kv_cache_dtype: str = "auto"
    dtype: str = "auto"
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    tensor_parallel_size: int = 1
    kv_cache_memory_bytes: int | None = None
    block_size: int | None = None
    defaults_used: tuple[str, ...] = ()


def knobs_from_flags(flags: dict[str, Any], env: dict[str, str], shape: ModelShape) -> Knobs:
    """Read the knobs from a ServerConfig's flags (the same value forms a `vllm serve --config` file uses)."""
    defaults: list[str] = []

    def get(flag: str, default: Any, cast: Any) -> Any:
        value = flags.get(flag)
        if value is None:
            if default is not None:
                defaults.append(flag)
            return default
        try:
            return cast(value)
        except (TypeError, ValueError):
            raise ServerFlagError(flag, f"expected a {cast.__name__}, got {value!r}") from None

    mml_default = shape.max_position_embeddings or 2048
    kv_bytes = get("--kv-cache-memory-bytes", None, int)
    if kv_bytes is None and env.get("VLLM_CPU_KVCACHE_SPACE"):
        kv_bytes = int(float(env["VLLM_CPU_KVCACHE_SPACE"]) * GiB)
    return Knobs(
        max_model_len=get("--max-model-len", int(mml_default), int),
        max_num_seqs=get("--max-num-seqs", DEFAULT_MAX_NUM_SEQS, int),
        max_num_batched_tokens=get("--max-num-batched-tokens", DEFAULT_MAX_NUM_BATCHED_TOKENS, int),
        kv_cache_dtype=str(flags.get("--kv-cache-dtype") or "auto"),
        dtype=str(flags.get("--dtype") or "auto"),
        gpu_memory_utilization=get("--gpu-memory-utilization", DEFAULT_GPU_MEMORY_UTILIZATION, float),
        tensor_parallel_size=get("--tensor-parallel-size", 1, int) or 1,
        kv_cache_memory_bytes=kv_bytes,
        block_size=get("--block-size", None, int),
        defaults_used=tuple(defaults),
    )


def serving_dtype(shape: ModelShape, knobs: Knobs) -> str:
    """vLLM's "auto": the checkpoint dtype, except that float32 checkpoints are served in bfloat16."""
    dtype = shape.dtype if knobs.dtype == "auto" else knobs.dtype
    return "bfloat16" if dtype in ("float32", "float") and knobs.dtype == "auto" else dtype


def kv_dtype_bytes(shape: ModelShape, knobs: Knobs, kv_cache_dtype: str | None = None) -> float:
    name = kv_cache_dtype or knobs.kv_cache_dtype
    name = serving_dtype(shape, knobs) if name == "auto" else name
    try:
        return DTYPE_BYTES[name]
    except KeyError:
        raise ServerFlagError("--kv-cache-dtype", f"unknown KV cache dtype {name!r}") from None


@dataclass(frozen=True)
class MemoryEstimate:
    hardware: str
    tensor_parallel_size: int
    block_size: int
    weights_bytes: float  # whole model
    weights_per_device: float
    workspace_per_device: float
    kv_memory_per_device: float  # what the KV cache gets on each device
    kv_bytes_per_token: dict[str, float]  # whole model, per kv-cache dtype, a token within every window
    kv_bytes_per_token_beyond_window: dict[str, float]  # global layers only: a token past the sliding window
    kv_cache_dtype: str
    bytes_per_block: int  # per device, all layers
    per_request_bytes: int  # per device: one max-model-len sequence
    num_blocks: int
    kv_capacity_tokens: int  # as vLLM logs it: int(max concurrency x max_model_len)
    max_concurrency: float  # max-model-len sequences the cache holds at once
    max_model_len: int
    fits: bool
    predicted_failure: FailureClass | None  # when it does not fit
    reason: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def estimate(shape: ModelShape, hardware: Hardware, knobs: Knobs) -> MemoryEstimate:
    tp = knobs.tensor_parallel_size
    bs = knobs.block_size or hardware.block_size
    mml = knobs.max_model_len
    notes: list[str] = []
    if tp > hardware.devices:
        notes.append(f"tensor-parallel-size {tp} exceeds the {hardware.devices} devices of {hardware.name}")
    kv_name = knobs.kv_cache_dtype if knobs.kv_cache_dtype != "auto" else f"auto={serving_dtype(shape, knobs)}"
    kv_b = kv_dtype_bytes(shape, knobs)
    weight_b = DTYPE_BYTES.get(serving_dtype(shape, knobs), 2)
    weights = shape.total_params * weight_b
    weights_dev = weights / tp

    pages = [(k, int(bs * k.heads_per_device(tp) * k.head_dim * k.kv_tensors * kv_b)) for k in shape.layer_kinds]
    bytes_per_block = sum(k.layers * page for k, page in pages)
    per_request = 0
    for k, page in pages:
        if k.window is None:
            blocks = _cdiv(mml, bs)
        else:
            blocks = _cdiv(min(k.window - 1 + knobs.max_num_batched_tokens, mml), bs) + 1
        per_request += blocks * page * k.layers

    # A float32 buffer of vocab/tp logits per sequence that samples, plus activations of one scheduled batch.
    workspace = (knobs.max_num_seqs * shape.vocab_size / tp * 4
                 + knobs.max_num_batched_tokens * shape.hidden_size * weight_b * ACTIVATION_BUFFERS)
    if knobs.kv_cache_memory_bytes is not None:
        kv_mem = float(knobs.kv_cache_memory_bytes)  # vLLM takes it as is, bypassing the utilization fraction
        workspace = 0.0
        notes.append("KV memory set explicitly (--kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE)")
    elif hardware.memory_per_device is None:
        raise ServerFlagError("--kv-cache-memory-bytes",
                              f"needed on {hardware.name}: it has no device memory to take a fraction of")
    else:
        budget = hardware.memory_per_device * knobs.gpu_memory_utilization
        kv_mem = budget - weights_dev - workspace - hardware.reserved_per_device

    per_token = {d: sum(k.bytes_per_token(DTYPE_BYTES[d]) for k in shape.layer_kinds) for d in _kv_dtypes(shape, knobs)}
    beyond = {d: sum(k.bytes_per_token(DTYPE_BYTES[d]) for k in shape.layer_kinds if k.window is None)
              for d in per_token}
    num_blocks = max(0, int(kv_mem // bytes_per_block)) if bytes_per_block else 0
    concurrency = num_blocks * bytes_per_block / per_request if per_request else 0.0
    capacity = int(concurrency * mml)
    # vLLM reserves the block pool's null block before checking that one max-model-len request fits.
    usable = kv_mem - bytes_per_block
    budget_dev = (hardware.memory_per_device or 0) * knobs.gpu_memory_utilization
    if hardware.memory_per_device is not None and knobs.kv_cache_memory_bytes is None and weights_dev > budget_dev:
        fits, failure = False, FailureClass.OOM
        reason = (f"weights need {weights_dev / GiB:.1f} GiB per device, above {budget_dev / GiB:.1f} GiB "
                  f"(gpu-memory-utilization {knobs.gpu_memory_utilization:g})")
    elif kv_mem <= 0:
        fits, failure = False, FailureClass.OOM
        reason = f"no memory left for KV cache blocks ({kv_mem / GiB:.2f} GiB after weights and workspace)"
    elif per_request > usable:
        fits, failure = False, FailureClass.KV_CAPACITY
        reason = (f"one {mml:,}-token sequence needs {per_request / GiB:.3f} GiB of KV per device, above the "
                  f"{max(usable, 0) / GiB:.3f} GiB available")
    else:
        fits, failure = True, None
        reason = f"one {mml:,}-token sequence fits {concurrency:.2f} times"
    if fits and concurrency < knobs.max_num_seqs and knobs.max_num_seqs > 1:
        notes.append(f"max-num-seqs {knobs.max_num_seqs} full-length sequences would not fit at once "
                     f"({concurrency:.1f}); long requests will be preempted under load")
    if len(shape.layer_kinds) > 1:
        notes.append("hybrid sliding/global attention: capacity is memory-proportional (no page padding assumed)")
    relevant = [f for f in knobs.defaults_used
                if not (knobs.kv_cache_memory_bytes is not None and f == "--gpu-memory-utilization")]
    if relevant:
        notes.append("vLLM defaults assumed for " + ", ".join(relevant))
    return MemoryEstimate(
        hardware=hardware.name, tensor_parallel_size=tp, block_size=bs, weights_bytes=weights,
        weights_per_device=weights_dev, workspace_per_device=workspace, kv_memory_per_device=kv_mem,
        kv_bytes_per_token=per_token, kv_bytes_per_token_beyond_window=beyond, kv_cache_dtype=kv_name,
        bytes_per_block=bytes_per_block, per_request_bytes=per_request, num_blocks=num_blocks,
        kv_capacity_tokens=capacity, max_concurrency=concurrency, max_model_len=mml, fits=fits,
        predicted_failure=failure, reason=reason, notes=tuple(notes),
    )


def _kv_dtypes(shape: ModelShape, knobs: Knobs) -> list[str]:
    """The KV dtypes worth comparing: the serving dtype ("auto") and fp8, plus the one configured."""
    names = [serving_dtype(shape, knobs), "fp8"]
    if knobs.kv_cache_dtype not in ("auto", *names):
        names.append(knobs.kv_cache_dtype)
    return [n for n in names if n in DTYPE_BYTES]


def max_fitting_model_len(shape: ModelShape, hardware: Hardware, knobs: Knobs) -> int:
    """The largest max-model-len predicted to fit (binary search, like vLLM's estimate_max_model_len)."""
    lo, hi, best = 1, max(knobs.max_model_len, shape.max_position_embeddings or 0, 1), 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if estimate(shape, hardware, _with(knobs, max_model_len=mid)).fits:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _with(knobs: Knobs, **changes: Any) -> Knobs:
    return Knobs(**{**knobs.__dict__, **changes})


def format_bytes(n: float) -> str:
    if abs(n) >= GiB:
        return f"{n / GiB:,.2f} GiB"
    if abs(n) >= 1024**2:
        return f"{n / 1024**2:,.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"
