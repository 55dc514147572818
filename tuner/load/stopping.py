"""When a level has measured enough: precision, not counts (issue 33).

A level with a `StopRule` keeps sending until its output throughput is known to the rule's `precision` (the
relative half-width of its 95 % interval, batch means over the steady part: tuner.load.intervals), with at least
`min_requests` sent; the level's prepared requests (`requests_per_level`) are the cap. It also stops, once the
minimum is sent, when an SLO percentile's lower bound already exceeds its held limit: such a level misses the SLO
whatever more requests would say, and its throughput is not the operating point's.

The driver asks `verdict` every POLL_S from its event loop, over the requests answered so far, with the steady
part ending at the send of the oldest request still in flight (every window before it is complete). Requests in
flight when the level stops are answered and counted, as `vllm bench serve` counts its drain; the unsent ones are
not requests of the level. The figures are then computed as for any level (tuner.load.stats), so the reported
interval is the final one, over the whole level.

With several client processes, each judges its own share (its streams, its requests): a share is noisier than the
whole, so the whole is at least as precise as the rule asked.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.contracts.results import LevelEnd
from tuner.load.intervals import Z_975, steady_precision
from tuner.load.request import RequestRecord

POLL_S = 0.5  # how often a running level is judged: a few ms of numpy per look, on the client's own loop
METRICS = ("ttft", "tpot", "itl", "e2el")


@dataclass(frozen=True)
class PercentileLimit:
    """An SLO as the stop rule reads it: the `quantile` of `metric` (ttft, tpot, itl, e2el) must stay at most
    `limit_ms` (the held limit: the SLO less the study's margin)."""

    metric: str
    quantile: float
    limit_ms: float

    def proven_missed(self, records: Sequence[RequestRecord]) -> bool:
        """The percentile's 95 % lower bound (order statistics) already exceeds the limit. Only answered requests
        count: the ones still in flight are the slow ones, so leaving them out can only make a miss harder to prove."""
        samples = np.sort(_samples_ms(records, self.metric))
        n = len(samples)
        rank = math.floor(n * self.quantile - Z_975 * math.sqrt(n * self.quantile * (1 - self.quantile)))
        return rank >= 1 and float(samples[rank - 1]) > self.limit_ms


def _samples_ms(records: Sequence[RequestRecord], metric: str) -> np.ndarray:
    ok = [r for r in records if r.ok]
    if metric == "itl":
        values = [gap for r in ok for gap in r.itl]
    else:
        values = [v for r in ok if (v := getattr(r, metric)) is not None]
    return np.asarray(values, dtype=float) * 1000.0


@dataclass(frozen=True)
class StopRule:
    """Measure to `precision` (relative half-width of the 95 % CI of output throughput), sending at least
    `min_requests`; stop early when an SLO in `limits` is proven missed."""

    precision: float
    min_requests: int
    limits: tuple[PercentileLimit, ...] = ()

    def verdict(self, answered: Sequence[RequestRecord], sent: int, concurrency: int,
                steady_until: float) -> LevelEnd | None:
        """PRECISION or SLO_MISSED when the level may stop sending now; None to go on."""
        if sent < self.min_requests:
            return None
        if any(limit.proven_missed(answered) for limit in self.limits):
            return LevelEnd.SLO_MISSED
        steady = steady_precision(answered, concurrency, steady_until)
        if steady.relative is not None and steady.relative <= self.precision:
            return LevelEnd.PRECISION
        return None


def default_min_requests(concurrency: int, quantiles: Sequence[float], cap: int) -> int:
    """Enough for every stream to finish twice, and for each SLO percentile to be an order statistic of its own
    (a p99 needs 100 samples, or it is the largest one); never more than the cap."""
    percentile_need = max((math.ceil(1 / (1 - q)) for q in quantiles if q < 1), default=0)
    return min(cap, max(2 * concurrency, percentile_need))


def combined_end(ends: Sequence[LevelEnd | None]) -> LevelEnd:
    """One level's end from its client processes' (each judged its own share): the least conclusive one."""
    order = (LevelEnd.CUT_SHORT, LevelEnd.DURATION, LevelEnd.CAP, LevelEnd.COUNT, LevelEnd.SLO_MISSED,
             LevelEnd.PRECISION)
    present = [e for e in ends if e is not None]
    return next((e for e in order if e in present), LevelEnd.COUNT)
