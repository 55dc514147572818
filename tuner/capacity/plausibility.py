"""Is a measured throughput physically possible? A hardware catalog and the compute ceiling.

Generating one token costs at least 2 x (active parameters) FLOP (one multiply-add per weight it uses), so
chips x peak bf16 FLOP/s / (2 x active params) bounds output tokens per second even with free attention, free
prefill and perfect utilisation. A level above that bound is not a fast server but a wrong measurement
(prefix-cache hits on repeated prompts, tokens counted that were not generated, failures dropped from the duration).
Figures are vendor peak dense bf16 numbers (no sparsity), per chip.
"""
from __future__ import annotations

from pathlib import Path

from tuner.capacity.hardware import Hardware, parse_hardware  # noqa: F401  (re-exported for tuner bench)
from tuner.contracts.results import LevelResult, Plausibility
from tuner.errors import ModelConfigError


def active_params_of(model_dir: str | Path) -> float | None:
    from tuner.capacity.memory_fit import load_model_shape

    try:
        return load_model_shape(Path(model_dir) / "config.json").active_params
    except ModelConfigError:
        return None


def check_level(level: LevelResult, hardware: Hardware, active_params: float) -> Plausibility:
    """The level's output rate as a share of the compute ceiling; above 100% it is marked invalid."""
    if hardware.peak_flops is None:
        raise ValueError(f"{hardware.name} has no known compute peak")
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
