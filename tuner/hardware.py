"""The accelerator catalog: per-chip peak bf16 FLOP/s, HBM bandwidth and capacity, and slice sizes.

One source for every figure about hardware: the plausibility check (compute ceiling) and the memory-fit
estimate (HBM capacity) both read it. Vendor peak dense bf16 numbers (no sparsity), per chip.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tuner.errors import InputError


@dataclass(frozen=True)
class Chip:
    name: str
    bf16_flops: float  # peak dense FLOP/s
    hbm_bytes_s: float  # HBM bandwidth, bytes/s
    hbm_gb: float
    max_chips: int  # largest slice / node offered


CATALOG: dict[str, Chip] = {c.name: c for c in (
    Chip("tpu-v5e", 197e12, 819e9, 16, 256),
    Chip("tpu-v5p", 459e12, 2765e9, 95, 8960),
    Chip("tpu-v6e", 918e12, 1638e9, 32, 256),
    Chip("a100", 312e12, 2039e9, 80, 16),  # A100 80GB SXM
    Chip("h100", 989e12, 3350e9, 80, 16),  # H100 SXM
    Chip("h200", 989e12, 4800e9, 141, 16),  # H200 SXM: H100's compute, more and faster HBM
)}
_ALIASES = {"v5e": "tpu-v5e", "v5litepod": "tpu-v5e", "v5lite": "tpu-v5e", "v5p": "tpu-v5p", "v6e": "tpu-v6e",
            "trillium": "tpu-v6e"}


@dataclass(frozen=True)
class Hardware:
    chip: Chip
    count: int

    @property
    def name(self) -> str:
        return f"{self.chip.name} x{self.count}"

    @property
    def peak_flops(self) -> float:
        return self.chip.bf16_flops * self.count


def parse_hardware(text: str, source: str = "--hardware") -> Hardware:
    """'v6e-4', 'tpu-v6e:4', 'h100x8', 'H100' (one chip)."""
    m = re.fullmatch(r"\s*(?:tpu-)?([a-z0-9]+?)(?:\s*[-:x*]\s*(\d+))?\s*", text.lower())
    name = m and (_ALIASES.get(m.group(1)) or (m.group(1) if m.group(1) in CATALOG else f"tpu-{m.group(1)}"))
    if not m or name not in CATALOG:
        raise InputError(source, text, f"a chip from {', '.join(CATALOG)} with an optional count, e.g. v6e-4 or h100x8")
    count = int(m.group(2) or 1)
    if not 1 <= count <= CATALOG[name].max_chips:
        raise InputError(source, text, f"between 1 and {CATALOG[name].max_chips} {name} chips")
    return Hardware(CATALOG[name], count)
