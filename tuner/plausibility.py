"""Is a measured throughput physically possible? A hardware catalog and the compute ceiling.

Generating one token costs at least 2 x (active parameters) FLOP (one multiply-add per weight it uses), so
chips x peak bf16 FLOP/s / (2 x active params) bounds output tokens per second even with free attention, free
prefill and perfect utilisation. A level above that bound is not a fast server but a wrong measurement
(prefix-cache hits on repeated prompts, tokens counted that were not generated, failures dropped from the duration).
Figures are vendor peak dense bf16 numbers (no sparsity), per chip.
"""
from __future__ import annotations

import json
from pathlib import Path

from tuner.hardware import CATALOG, Chip, Hardware, parse_hardware  # noqa: F401  (re-exported)
from tuner.results import LevelResult, Plausibility


def active_params_from_config(config: dict) -> float | None:
    """Parameters one token passes through, from a Hugging Face config.json (dense and MoE decoder models).

    Counts attention and MLP weights of every layer and the output projection; for MoE only the routed experts a
    token uses (top-k) plus shared experts. Embedding lookups cost no FLOPs and are left out. An estimate within a
    few percent for Llama/Qwen/Mixtral/DeepSeek/Gemma-style configs; give --active-params for anything else."""
    c = config.get("text_config", config)
    try:
        h = int(c["hidden_size"])
        layers = int(c["num_hidden_layers"])
        vocab = int(c.get("vocab_size") or config.get("vocab_size"))
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(c.get("num_attention_heads") or 1)
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // heads)
    attention = h * head_dim * (2 * heads + 2 * kv_heads)  # q, o, k, v
    experts = c.get("num_experts") or c.get("num_local_experts") or c.get("n_routed_experts")
    if experts:
        top_k = int(c.get("num_experts_per_tok") or c.get("top_k_experts") or 1)
        expert_inter = int(c.get("moe_intermediate_size") or c.get("intermediate_size"))
        shared = int(c.get("n_shared_experts") or 0) * expert_inter + int(c.get("shared_expert_intermediate_size") or 0)
        mlp = 3 * h * (top_k * expert_inter + shared) + h * int(experts)  # experts + router
    else:
        mlp = 3 * h * int(c.get("intermediate_size") or 4 * h)  # gate, up, down
    return float(layers * (attention + mlp) + h * vocab)


def active_params_of(model_dir: str | Path) -> float | None:
    try:
        return active_params_from_config(json.loads((Path(model_dir) / "config.json").read_text()))
    except (OSError, ValueError):
        return None


def check_level(level: LevelResult, hardware: Hardware, active_params: float) -> Plausibility:
    """The level's output rate as a share of the compute ceiling; above 100% it is marked invalid."""
    ceiling = hardware.peak_flops / (2.0 * active_params)
    share = level.output_throughput / ceiling
    total_share = None
    if level.duration_s > 0:
        computed_inputs = level.input_tokens - ((level.server.prefix_cache_hits or 0.0) if level.server else 0.0)
        total_share = (level.output_tokens + max(computed_inputs, 0.0)) / level.duration_s / ceiling
    result = Plausibility(hardware=hardware.name, active_params=active_params, ceiling_tok_s=ceiling,
                          compute_share=share, total_compute_share=total_share)
    if share > 1.0:
        result.valid = False
        result.reason = (f"{level.output_throughput:,.0f} output tok/s is {share:.0%} of the compute ceiling of "
                         f"{hardware.name} ({ceiling:,.0f} tok/s at 100% of peak bf16 for {active_params / 1e9:.2f} B "
                         "active parameters): not physically possible; look for prefix-cache hits on repeated prompts,"
                         " tokens counted that were not generated, or failures dropped from the duration")
    return result
