"""Open-loop arrival schedules: when each request is due, as offsets in seconds from the level's start.

Poisson arrivals have exponential gaps; gamma gaps with shape k (mean 1/rate) generalise them, as
`vllm bench serve --burstiness k` does: k < 1 is burstier than Poisson, k > 1 more regular, k = 1 is Poisson.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

Arrival = Literal["poisson", "gamma", "constant"]


def arrival_offsets(n: int, rate: float, arrival: Arrival = "poisson", burstiness: float = 1.0,
                    seed: int = 0) -> list[float]:
    """Offsets of n arrivals at `rate` requests per second; the first is due at 0."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if n <= 0:
        return []
    rng = np.random.default_rng(seed)
    if arrival == "constant":
        gaps = np.full(n - 1, 1.0 / rate)
    elif arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, n - 1)
    elif arrival == "gamma":
        if burstiness <= 0:
            raise ValueError("burstiness must be positive")
        gaps = rng.gamma(burstiness, 1.0 / (rate * burstiness), n - 1)
    else:
        raise ValueError(f"unknown arrival process {arrival!r}")
    return [0.0, *np.cumsum(gaps).tolist()]
