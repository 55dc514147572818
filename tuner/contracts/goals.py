"""The vocabulary of what a study optimises and must meet: objective names and directions, SLO names, and
`Goals` (objectives, limits, chips, price), shared by the study file (tuner.inputs.spec), scoring, the driver and
the report. Reading these off measured levels is tuner.scoring.objectives' job; its docstring lists the objectives."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["maximize", "minimize"]
STABILITY = "stability"
QUALITY = "quality"  # not read off a level: the launch's probe answers against the reference (tuner.scoring.quality)
LATENCY_RE = re.compile(r"^(ttft|tpot|itl|e2el)_(mean|p50|p90|p99)_ms$")
THROUGHPUT_LIKE = {"output_tok_s": "maximize", "goodput_tok_s": "maximize", "goodput_req_s": "maximize",
                   "tok_s_per_chip": "maximize", "usd_per_m_tokens": "minimize"}
DEFAULT_OBJECTIVES = ("output_tok_s", STABILITY)
KNOWN_HELP = ("output_tok_s, goodput_tok_s, goodput_req_s, tok_s_per_chip, usd_per_m_tokens, stability, quality, or a"
              " latency such as ttft_p99_ms / itl_p50_ms / tpot_p90_ms / e2el_mean_ms")


def direction_of(name: str) -> Direction:
    """The direction of a known objective; ValueError naming the choices otherwise."""
    if name in (STABILITY, QUALITY):
        return "maximize"
    if name in THROUGHPUT_LIKE:
        return THROUGHPUT_LIKE[name]  # type: ignore[return-value]
    if LATENCY_RE.match(name):
        return "minimize"
    raise ValueError(f"unknown objective {name!r}; choose from {KNOWN_HELP}")


def check_latency_name(name: str) -> None:
    if not LATENCY_RE.match(name):
        raise ValueError(f"unknown SLO {name!r}; name a latency percentile such as ttft_p99_ms, itl_p99_ms,"
                         " tpot_p90_ms or e2el_p50_ms")


@dataclass(frozen=True)
class Goals:
    """The study's objectives and limits, as scoring needs them (built from the study file by tuner.inputs.spec)."""

    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    slo: dict[str, float] = field(default_factory=dict)  # latency name -> upper limit in ms
    chips: int = 1
    price_per_slice_hour: float | None = None
    # A level meets an SLO when it beats the limit by this fraction: a p99 measured again after a relaunch moves by
    # 10-30 % on a busy host, and a point chosen right at the limit would then miss it half the time.
    slo_margin: float = 0.0

    @classmethod
    def on_slice(cls, objectives: Sequence[str], slo: Mapping[str, float], hardware: str | None,
                 price_per_slice_hour: float | None, slo_margin: float) -> Goals:
        """The goals of a study on the named slice (its chip count prices per-chip objectives); None: one chip."""
        from tuner.contracts.hardware import SLICES

        chips = SLICES[hardware].count if hardware in SLICES else 1
        return cls(objectives=tuple(objectives) or DEFAULT_OBJECTIVES, slo=dict(slo), chips=chips,
                   price_per_slice_hour=price_per_slice_hour, slo_margin=slo_margin)

    def held_limit(self, name: str) -> float:
        """The value a level must not exceed for the SLO `name`: its limit less the margin."""
        return self.slo[name] * (1.0 - self.slo_margin)

    def describe_slo(self) -> str:
        """'ttft_p99_ms <= 2000 (held to 1800: 10 % margin)', for titles and export headers."""
        limits = ", ".join(f"{k} <= {v:g}" for k, v in self.slo.items())
        if not self.slo_margin or not self.slo:
            return limits
        held = ", ".join(f"{self.held_limit(k):g}" for k in self.slo)
        return f"{limits} (held to {held}: {self.slo_margin:.0%} margin)"

    @property
    def directions(self) -> list[Direction]:
        return [direction_of(name) for name in self.objectives]

    @property
    def rank_metric(self) -> str:
        """The objective that picks the operating point: the first throughput-like one, else output_tok_s."""
        return next((o for o in self.objectives if o in THROUGHPUT_LIKE), "output_tok_s")

    def worst(self) -> list[float]:
        """Values told to Optuna for a config that produced no measurement (it is infeasible anyway)."""
        return [0.0 if d == "maximize" else float("inf") for d in self.directions]
