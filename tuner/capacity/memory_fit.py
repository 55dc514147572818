"""Memory-fit estimate: will a configuration's weights and one max-model-len sequence fit, and how many KV tokens?

A dry run that costs no accelerator time. From the model's config.json (grouped-query attention, Gemma-style
sliding-window and global layers, MoE) and the slice's memory it estimates, per device:

    weights      total parameters x weight dtype / tensor-parallel size
    KV memory    memory x gpu-memory-utilization - weights - workspace     (or --kv-cache-memory-bytes exactly)
    KV capacity  in tokens, computed the way vLLM 0.32 computes the "KV cache size: N tokens" it logs
    fit          one request of max-model-len fits in the KV memory minus the block pool's null block

The block arithmetic is vLLM 0.32's (vllm/v1/core/kv_cache_utils.py): every attention layer gets a KV spec (K and V
both stored, also where the checkpoint shares K with V; layers that reuse another layer's KV hold none); layers
whose specs are all alike form one group whose block holds a page of every layer; a hybrid model (sliding and
global layers) has its page sizes unified (a smaller page gets a proportionally larger block) and its layers split
into KV cache groups of one size (the smallest kind's layer count, or the largest when it is under 1.5x the
smallest), each group drawing its own blocks from one pool whose block is group size x page. A full-attention group
needs cdiv(max_model_len, block) blocks per request, a sliding one cdiv(min(window - 1 + max_num_batched_tokens,
max_model_len), block) + 1; num_blocks = memory // bytes_per_block; logged tokens = int(num_blocks / blocks per
request x max_model_len); a request fits when its blocks leave the null block free. max_num_batched_tokens and
max_num_seqs default as vLLM's API server sets them on the slice's platform (arg_utils.get_batch_defaults), the
batched tokens capped at max_num_seqs x max_model_len.

Exact against the CPU vLLM for the uniform tiny Llama and for the tiny Gemma 4 MoE (tests/e2e/test_calibration.py).
On TPU (tpu-inference) and GPU backends with a block-outermost layout the grouping may differ: an estimate there. The
workspace (activations, logits, XLA programs) is a coarse allowance, not a model of the compiler: a config near the
HBM edge can still OOM at compile time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
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
DEFAULT_MAX_NUM_SEQS = 256  # without a slice: vLLM's API server on a GPU under 70 GiB
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
# vLLM 0.32's API-server defaults by chip (vllm/engine/arg_utils.py get_batch_defaults): (max_num_seqs,
# max_num_batched_tokens) per unit of world size on CPU, per server elsewhere.
SERVING_DEFAULTS: dict[str, tuple[int, int]] = {
    "cpu": (128, 2048),  # x tensor-parallel x pipeline-parallel size
    "tpu-v6e": (256, 1024), "tpu-v5e": (256, 512), "tpu-v5p": (256, 256),
    "a100": (256, 2048),  # "a100" in the device name: the small defaults whatever its memory
    "h100": (1024, 8192), "h200": (1024, 8192),  # 70-160 GiB
}
GEMMA4_GLOBAL_HEAD_DIM = 512  # transformers' Gemma4TextConfig default when a published config omits global_head_dim
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
    kv_tensors: int = 2  # K and V in the KV cache: vLLM stores both, also where the checkpoint shares K with V
    window: int | None = None
    k_eq_v: bool = False  # the checkpoint has no V projection (Gemma 4's global layers): weights only

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
    kinds = _layer_kinds(cfg, source, layers, heads, hidden)
    experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0)
    top_k = int(cfg.get("top_k_experts") or cfg.get("num_experts_per_tok") or 0)
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


def _is_gemma4(cfg: dict[str, Any]) -> bool:
    return str(cfg.get("model_type", "")).startswith("gemma4") or "per_layer_config" in cfg or any(
        "Gemma4" in a for a in cfg.get("architectures") or [])


def _layer_kinds(cfg: dict[str, Any], source: str, layers: int, heads: int, hidden: int) -> list[LayerKind]:
    """Every attention layer's KV layout, as vLLM builds it, grouped by identical layout. Reads both Gemma 4 config
    layouts: `per_layer_config` (per-layer head count and head size, as transformers 5.x writes it) and the published
    `num_global_key_value_heads` / `global_head_dim` (applied as transformers applies them)."""
    gemma4 = _is_gemma4(cfg)
    base_heads = int(cfg.get("num_key_value_heads") or heads)
    base_dim = int(cfg.get("head_dim") or hidden // heads)
    window = cfg.get("sliding_window")
    if window and gemma4 and cfg.get("use_bidirectional_attention") == "all":
        window = int(window) // 2 + 1  # transformers halves a bidirectional window
    types = list(cfg.get("layer_types") or _layer_types_from_pattern(cfg, layers))
    if len(types) != layers:
        raise ModelConfigError(source, "layer_types", f"has {len(types)} entries for {layers} layers")
    if gemma4 and types:
        types[-1] = "full_attention"  # transformers forces Gemma 4's last layer to global attention
    unknown = sorted({t for t in types} - {"sliding_attention", "full_attention"})
    if unknown:
        raise ModelConfigError(source, "layer_types", f"sliding_attention or full_attention, not {unknown[0]!r}")
    overrides = _per_layer_overrides(cfg, source, types, gemma4)
    shared = int(cfg.get("num_kv_shared_layers") or 0)
    k_eq_v = bool(cfg.get("attention_k_eq_v")) and gemma4
    counted: dict[tuple[str, int, int, int | None, bool], int] = {}
    for i, kind in enumerate(types):
        if shared and i >= layers - shared:
            continue  # reuses an earlier layer's KV: holds no cache of its own
        sliding = kind == "sliding_attention" and bool(window)
        o = overrides.get(i, {})
        key = ("sliding" if sliding else "global", int(o.get("num_key_value_heads", base_heads)),
               int(o.get("head_dim", base_dim)), int(window) if sliding and window else None,
               k_eq_v and not sliding)
        counted[key] = counted.get(key, 0) + 1
    names = [k[0] for k in counted]
    return [LayerKind(name if names.count(name) == 1 else f"{name} {h}x{d}", n, h, d, 2, w, kv)
            for (name, h, d, w, kv), n in counted.items()]


PER_LAYER_KEYS = frozenset({"head_dim", "num_key_value_heads"})


def _per_layer_overrides(cfg: dict[str, Any], source: str, types: list[str], gemma4: bool) -> dict[int, dict[str, Any]]:
    """Layer index -> its own head_dim / num_key_value_heads, from either Gemma 4 layout (empty for other models)."""
    layers = len(types)
    if "per_layer_config" in cfg:
        raw = cfg["per_layer_config"]
        if not isinstance(raw, dict):
            raise ModelConfigError(source, "per_layer_config", "a mapping of layer index to its attention settings")
        overrides: dict[int, dict[str, Any]] = {}
        for key, values in raw.items():
            try:
                index = int(key)  # transformers writes zero-padded keys ("05")
            except ValueError:
                raise ModelConfigError(source, f"per_layer_config.{key}", "a layer index") from None
            if not 0 <= index < layers or not isinstance(values, dict):
                raise ModelConfigError(source, f"per_layer_config.{key}", f"a layer index below {layers} mapped to"
                                       " its head_dim / num_key_value_heads")
            extra = sorted(set(values) - PER_LAYER_KEYS)
            if extra:
                raise ModelConfigError(source, f"per_layer_config.{key}.{extra[0]}", "only head_dim and"
                                       " num_key_value_heads, which the memory fit reads; this key it does not"
                                       " understand")
            overrides[index] = dict(values)
        return overrides
    if not gemma4:
        return {}
    # The published layout: transformers gives every global layer global_head_dim (default 512), and
    # num_global_key_value_heads only when K is shared with V.
    override: dict[str, Any] = {"head_dim": int(cfg.get("global_head_dim") or GEMMA4_GLOBAL_HEAD_DIM)}
    if cfg.get("attention_k_eq_v") and cfg.get("num_global_key_value_heads") is not None:
        override["num_key_value_heads"] = int(cfg["num_global_key_value_heads"])
    return {i: override for i, t in enumerate(types) if t == "full_attention"}


def _layer_types_from_pattern(cfg: dict[str, Any], layers: int) -> list[str]:
    if _is_gemma4(cfg) and cfg.get("sliding_window"):
        # transformers' Gemma 4 default: five sliding layers, then a global one
        return ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)]
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
        projections = 1 if kind.k_eq_v else 2  # K and V, or K alone where V reuses it
        attention += kind.layers * (2 * h * q_dim + projections * h * kind.kv_heads * kind.head_dim)
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
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS  # as resolved for max_model_len
    kv_cache_dtype: str = "auto"
    dtype: str = "auto"
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    tensor_parallel_size: int = 1
    kv_cache_memory_bytes: int | None = None
    block_size: int | None = None
    defaults_used: tuple[str, ...] = ()
    batched_tokens_default: int | None = None  # the platform's default when the flag is absent (else None)

    def at_model_len(self, max_model_len: int) -> Knobs:
        """The same flags at another max-model-len: a defaulted max_num_batched_tokens follows it, as vLLM would
        resolve it at startup (min(max_num_seqs x max_model_len, the platform's default))."""
        batched = self.max_num_batched_tokens
        if self.batched_tokens_default is not None:
            batched = min(self.max_num_seqs * max_model_len, self.batched_tokens_default)
        return replace(self, max_model_len=max_model_len, max_num_batched_tokens=batched)


def serving_defaults(hardware: Hardware | None, world_size: int) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) vLLM 0.32's API server takes on this slice when the flags are absent."""
    if hardware is None:
        return DEFAULT_MAX_NUM_SEQS, DEFAULT_MAX_NUM_BATCHED_TOKENS
    seqs, batched = SERVING_DEFAULTS.get(hardware.chip.name, (DEFAULT_MAX_NUM_SEQS, DEFAULT_MAX_NUM_BATCHED_TOKENS))
    if hardware.kind == "cpu":
        return seqs * world_size, batched * world_size
    return seqs, batched


def knobs_from_flags(flags: dict[str, Any], env: dict[str, str], shape: ModelShape,
                     hardware: Hardware | None = None) -> Knobs:
    """Read the knobs from a ServerConfig's flags (the same value forms a `vllm serve --config` file uses), with
    vLLM's defaults on `hardware` (None: a GPU's small defaults) where a flag is absent."""
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
    space = env.get("VLLM_CPU_KVCACHE_SPACE")
    if space and (hardware is None or hardware.kind == "cpu"):
        try:  # vLLM's CPU platform lets this legacy variable override the flag, in whole GiB
            kv_bytes = int(space) * GiB
        except ValueError:
            raise ServerFlagError("VLLM_CPU_KVCACHE_SPACE", f"a whole number of GiB (vLLM reads it with int()),"
                                  f" got {space!r}") from None
    tp = get("--tensor-parallel-size", 1, int) or 1
    world = tp * (int(flags.get("--pipeline-parallel-size") or 1))
    default_seqs, default_batched = serving_defaults(hardware, world)
    mml = get("--max-model-len", int(mml_default), int)
    seqs = get("--max-num-seqs", default_seqs, int)
    given_batched = flags.get("--max-num-batched-tokens")
    batched = get("--max-num-batched-tokens", min(seqs * mml, default_batched), int)
    return Knobs(
        max_model_len=mml,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        kv_cache_dtype=str(flags.get("--kv-cache-dtype") or "auto"),
        dtype=str(flags.get("--dtype") or "auto"),
        gpu_memory_utilization=get("--gpu-memory-utilization", DEFAULT_GPU_MEMORY_UTILIZATION, float),
        tensor_parallel_size=tp,
        kv_cache_memory_bytes=kv_bytes,
        block_size=get("--block-size", None, int),
        defaults_used=tuple(defaults),
        batched_tokens_default=default_batched if given_batched is None else None,
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


@dataclass(frozen=True)
class KVGroup:
    """One KV cache group: its layers draw the same blocks (a page each per block)."""

    layers: int
    block: int  # tokens per block, after page sizes were unified
    window: int | None  # None: full attention

    def blocks_per_request(self, max_model_len: int, batched_tokens: int) -> int:
        if self.window is None:
            return _cdiv(max_model_len, self.block)
        return _cdiv(min(self.window - 1 + batched_tokens, max_model_len), self.block) + 1


@dataclass(frozen=True)
class KVPool:
    """vLLM's block pool for one device: every group draws its own blocks of `bytes_per_block` from it."""

    bytes_per_block: int
    groups: tuple[KVGroup, ...]

    def blocks_per_request(self, max_model_len: int, batched_tokens: int) -> int:
        return sum(g.blocks_per_request(max_model_len, batched_tokens) for g in self.groups)

    def describe(self) -> str:
        """"6 KV cache groups (5 sliding of 1 layer at block 128, 1 full of 1 layer at block 128), 64.0 KiB per
        block": what vLLM logs as its "kv cache group sizes", to compare."""
        counts: dict[tuple[str, int, int], int] = {}
        for g in self.groups:
            key = ("sliding" if g.window else "full", g.layers, g.block)
            counts[key] = counts.get(key, 0) + 1
        kinds = ", ".join(f"{n} {kind} of {layers} layer{'s' if layers > 1 else ''} at block {block}"
                          for (kind, layers, block), n in counts.items())
        return f"{len(self.groups)} KV cache groups ({kinds}), {format_bytes(self.bytes_per_block)} per block"


def kv_cache_pool(shape: ModelShape, block_size: int, tp: int, kv_bytes: float) -> KVPool:
    """The KV cache groups and block bytes vLLM 0.32 builds for this model (vllm/v1/core/kv_cache_utils.py
    get_kv_cache_groups; a layer-outermost layout, as on CPU)."""
    kinds = [k for k in shape.layer_kinds if k.layers]
    pages = {k: int(block_size * k.heads_per_device(tp) * k.head_dim * k.kv_tensors * kv_bytes) for k in kinds}
    windows = {k.window for k in kinds}
    if len(windows) == 1:
        # One spec, or one attention type (all full, or all sliding with one window): one group whose block holds a
        # page of every layer.
        return KVPool(sum(k.layers * pages[k] for k in kinds), (KVGroup(sum(k.layers for k in kinds), block_size,
                                                                        kinds[0].window),))
    # Hybrid: unify page sizes (a smaller page that divides the largest gets a proportionally larger block, any other
    # is padded to it), then split each kind into groups of one size.
    largest = max(pages.values())
    blocks = {k: block_size * (largest // pages[k]) if largest % pages[k] == 0 else block_size for k in kinds}
    sizes = [k.layers for k in kinds]
    group_size = max(sizes) if max(sizes) < 1.5 * min(sizes) else min(sizes)
    groups: list[KVGroup] = []
    for k in kinds:
        count = _cdiv(k.layers, group_size)
        groups += [KVGroup(len(range(i, k.layers, count)), blocks[k], k.window) for i in range(count)]
    return KVPool(group_size * largest, tuple(groups))


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

    pool = kv_cache_pool(shape, bs, tp, kv_b)
    bytes_per_block = pool.bytes_per_block
    per_request = bytes_per_block * pool.blocks_per_request(mml, knobs.max_num_batched_tokens)

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
    if len(pool.groups) > 1:
        notes.append(f"hybrid attention: {pool.describe()} (vLLM 0.32's grouping on CPU; a TPU or GPU backend may"
                     " lay blocks out otherwise)")
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
    """The largest max-model-len predicted to fit, up to the model's own limit, each length with the batched tokens
    vLLM would default to at it (binary search)."""
    return _largest_fitting(shape, hardware, knobs, max(knobs.max_model_len, shape.max_position_embeddings or 0, 1),
                            follow_defaults=True)


def vllm_estimated_max_model_len(shape: ModelShape, hardware: Hardware, knobs: Knobs) -> int:
    """The "estimated maximum model length" vLLM 0.32 prints when it refuses a max-model-len: the largest length up
    to the requested one that fits, with max_num_batched_tokens as resolved for the requested length (0: none)."""
    return _largest_fitting(shape, hardware, knobs, knobs.max_model_len, follow_defaults=False)


def _largest_fitting(shape: ModelShape, hardware: Hardware, knobs: Knobs, upper: int, follow_defaults: bool) -> int:
    lo, hi, best = 1, upper, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        at = knobs.at_model_len(mid) if follow_defaults else replace(knobs, max_model_len=mid)
        if estimate(shape, hardware, at).fits:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def format_bytes(n: float) -> str:
    if abs(n) >= GiB:
        return f"{n / GiB:,.2f} GiB"
    if abs(n) >= 1024**2:
        return f"{n / 1024**2:,.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"
