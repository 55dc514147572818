"""The accelerator catalog: one type for a slice of hardware, read by the plausibility check (compute ceiling) and
the memory-fit estimate (device memory, KV block size).

A `Chip` holds vendor peak dense bf16 figures (no sparsity) and memory per chip; a `Hardware` is what one trial owns:
`count` chips of one kind. Named slices (`tpu-v6e-4`, `gpu-h100-80gb`, `cpu`) are what study files name;
`parse_hardware` also reads the short forms `tuner bench --hardware` takes (`v6e-4`, `h100x8`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from tuner.errors import InputError

GiB = 1024**3
DeviceKind = Literal["tpu", "gpu", "cpu"]


@dataclass(frozen=True)
class Chip:
    name: str
    kind: DeviceKind
    bf16_flops: float | None  # peak dense FLOP/s; None where no honest ceiling is known (a CPU host)
    hbm_bytes_s: float | None  # memory bandwidth, bytes/s
    memory_bytes: int | None  # per chip; None: host RAM, the KV cache size is set explicitly
    block_size: int  # tokens per KV block the vLLM backend uses by default
    reserved_bytes: int  # runtime, program buffers and other memory vLLM never hands to the KV cache
    max_chips: int  # largest slice / node offered
    startup_estimate_s: float = 600.0  # a launch's startup before one is measured: an assumption, never shown as measured


# TPU HBM in decimal GB as Google publishes it (conservative vs GiB), 1 GiB per chip kept back for the runtime;
# tpu-inference's KV page size varies with the model: 128 tokens is an assumption (rounding only). GPU memory in
# GiB as vLLM reports it, 16-token blocks. vLLM's CPU backend: 128-token blocks (vllm/platforms/cpu.py), KV space
# from --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE, not from a fraction of device memory.
# Memory bandwidth per chip, the decode ceiling's divisor (tuner/capacity/roofline.py), as the vendors publish it:
# TPU v5e 819 GB/s, v5p 2,765 GB/s, v6e (Trillium) 1,640 GB/s (cloud.google.com/tpu/docs/v5e, /v5p, /v6e; the
# seed's worked figure uses 1.64 TB/s); A100 80GB SXM 2,039 GB/s (NVIDIA A100 datasheet), H100 SXM 3.35 TB/s and
# H200 SXM 4.8 TB/s (NVIDIA H100 / H200 datasheets). A CPU host has no catalog figure: it is measured on the worker.
# Startup estimates (plans and budgets before a launch is measured, labelled as estimates): a TPU launch reads the
# weights and XLA-compiles every bucket, "minutes to an hour" for a 26B model: 30 min assumed; a GPU launch loads
# and captures CUDA graphs: 10 min; the CPU stand-in: 1 min (measured 38-40 s on these 2-core hosts).
CATALOG: dict[str, Chip] = {c.name: c for c in (
    Chip("tpu-v5e", "tpu", 197e12, 819e9, 16 * 10**9, 128, GiB, 256, 1800.0),
    Chip("tpu-v5p", "tpu", 459e12, 2765e9, 95 * 10**9, 128, GiB, 8960, 1800.0),
    Chip("tpu-v6e", "tpu", 918e12, 1640e9, 32 * 10**9, 128, GiB, 256, 1800.0),
    Chip("a100", "gpu", 312e12, 2039e9, 80 * GiB, 16, GiB, 16, 600.0),  # A100 80GB SXM
    Chip("h100", "gpu", 989e12, 3350e9, 80 * GiB, 16, GiB, 16, 600.0),  # H100 SXM
    Chip("h200", "gpu", 989e12, 4800e9, 141 * GiB, 16, GiB, 16, 600.0),  # H200 SXM: H100's compute, more and faster HBM
    Chip("cpu", "cpu", None, None, None, 128, 0, 1, 60.0),
)}
_ALIASES = {"v5e": "tpu-v5e", "v5litepod": "tpu-v5e", "v5lite": "tpu-v5e", "v5p": "tpu-v5p", "v6e": "tpu-v6e",
            "trillium": "tpu-v6e"}


@dataclass(frozen=True)
class Hardware:
    """A slice: `count` chips of one kind, with an optional catalog name and memory override."""

    chip: Chip
    count: int
    label: str | None = None
    memory_override: int | None = None

    @property
    def name(self) -> str:
        return self.label or f"{self.chip.name} x{self.count}"

    @property
    def kind(self) -> DeviceKind:
        return self.chip.kind

    @property
    def devices(self) -> int:
        return self.count

    @property
    def peak_flops(self) -> float | None:
        return None if self.chip.bf16_flops is None else self.chip.bf16_flops * self.count

    @property
    def memory_per_device(self) -> int | None:
        return self.memory_override if self.memory_override is not None else self.chip.memory_bytes

    @property
    def block_size(self) -> int:
        return self.chip.block_size

    @property
    def reserved_per_device(self) -> int:
        return self.chip.reserved_bytes

    def with_memory(self, bytes_per_device: int) -> Hardware:
        return replace(self, memory_override=bytes_per_device)


def _slice(label: str, chip: str, count: int) -> tuple[str, Hardware]:
    return label, Hardware(CATALOG[chip], count, label)


SLICES: dict[str, Hardware] = dict([
    *(_slice(f"tpu-v6e-{n}", "tpu-v6e", n) for n in (1, 4, 8)),
    *(_slice(f"tpu-v5e-{n}", "tpu-v5e", n) for n in (1, 4, 8)),
    _slice("gpu-h100-80gb", "h100", 1),
    _slice("gpu-a100-80gb", "a100", 1),
    _slice("cpu", "cpu", 1),
])


def parse_hardware(text: str, source: str = "--hardware") -> Hardware:
    """A named slice, or 'v6e-4', 'tpu-v6e:4', 'h100x8', 'H100' (one chip), or 'cpu' (this host, its limits measured)."""
    if text in SLICES:
        return SLICES[text]
    m = re.fullmatch(r"\s*(?:tpu-)?([a-z0-9]+?)(?:\s*[-:x*]\s*(\d+))?\s*", text.lower())
    name = m and (_ALIASES.get(m.group(1)) or (m.group(1) if m.group(1) in CATALOG else f"tpu-{m.group(1)}"))
    known = list(CATALOG)
    if not m or name not in known:
        raise InputError(source, text, f"a chip from {', '.join(known)} with an optional count, e.g. v6e-4 or h100x8")
    count = int(m.group(2) or 1)
    if not 1 <= count <= CATALOG[name].max_chips:
        raise InputError(source, text, f"between 1 and {CATALOG[name].max_chips} {name} chips")
    return Hardware(CATALOG[name], count)
