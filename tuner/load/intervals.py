"""How precisely a level's figures are known: 95 % confidence intervals from the level's own requests.

Output throughput: batch means over the level's steady part. The ramp-up (until the first `concurrency` requests have
completed) and the drain (after the last send, when fewer streams are busy by design) are left out; the steady part
is cut into equal windows at least two median request latencies long, so that one window's mean says little about
the next (the argument inference-perf and MLPerf LoadGen make for windowed estimates), and each window's output
rate counts every request's output tokens spread evenly over its decode time. With k windows (at least 5), the
half-width is t(0.975, k-1) x sd / sqrt(k); its ratio to the windows' mean is the level's relative precision, and
the level's figure (vllm bench serve's definition, ramp and drain included) carries that relative interval.

Latency percentiles: a distribution-free interval from order statistics (the normal approximation of the binomial
count below the percentile). A p99 read from too few requests has no upper bound: the interval says so instead of
pretending (with 120 requests, the 99th percentile's upper bound is beyond the largest sample).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.contracts.results import Interval
from tuner.load.request import RequestRecord

CONFIDENCE = 0.95
MIN_BATCHES = 5
MAX_BATCHES = 20
Z_975 = 1.959964
# Student's t at 0.975 for 1..30 degrees of freedom (beyond: the normal's 1.96).
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
          2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(dof: int) -> float:
    return _T_975[dof - 1] if 1 <= dof <= len(_T_975) else Z_975


@dataclass(frozen=True)
class SteadyPrecision:
    """The batch-means estimate of the steady part: the relative half-width of the 95 % interval of its output rate
    (`relative`, None with a `reason` when there is none), from `windows` windows of `width` seconds."""

    relative: float | None
    windows: int = 0
    width: float = 0.0
    reason: str = ""


def steady_precision(records: Sequence[RequestRecord], concurrency: int, until: float) -> SteadyPrecision:
    """How precisely the output rate is known from the answered `records` over the steady part that ends at `until`
    (the last send once a level is over; while it runs, the send of the oldest request still in flight, since every
    request sent before it has ended and so every window before it is complete)."""
    ok = [r for r in records if r.ok and r.output_tokens > 0]
    if len(ok) < 2:
        return SteadyPrecision(None, reason="fewer than 2 answered requests")
    starts = np.fromiter((r.start for r in ok), float, len(ok))
    ends = np.fromiter((r.end for r in ok), float, len(ok))
    ends.sort()
    t0 = float(ends[min(max(concurrency, 1), len(ends)) - 1])  # ramp-up over: the first `concurrency` answered
    span = until - t0
    latency = float(np.median(np.fromiter((r.end - r.start for r in ok), float, len(ok))))
    if span <= 0 or latency <= 0:
        return SteadyPrecision(None, reason="no steady part: the level ended before its streams were all busy")
    windows = min(MAX_BATCHES, int(span // (2 * latency)))
    if windows < MIN_BATCHES:
        return SteadyPrecision(None, windows, reason=f"steady part {span:.1f} s holds {windows} windows of two request"
                                                     f" latencies ({2 * latency:.1f} s), fewer than {MIN_BATCHES}")
    width = span / windows
    begins = starts + np.fromiter((r.ttft or 0.0 for r in ok), float, len(ok))
    rates = window_rates(begins, np.fromiter((r.end for r in ok), float, len(ok)),
                         np.fromiter((r.output_tokens for r in ok), float, len(ok)), t0, width, windows)
    mean = float(rates.mean())
    if mean <= 0:
        return SteadyPrecision(None, windows, width, "no output in the steady part")
    half = t_975(windows - 1) * float(rates.std(ddof=1)) / math.sqrt(windows)
    return SteadyPrecision(half / mean, windows, width)


def throughput_interval(records: Sequence[RequestRecord], concurrency: int, figure: float) -> Interval:
    """The 95 % interval of the level's output throughput `figure`, or why there is none (`reason`)."""
    if figure <= 0 or not records:
        return Interval(reason="fewer than 2 answered requests")
    steady = steady_precision(records, concurrency, max(r.start for r in records))  # the drain begins at the last send
    if steady.relative is None:
        return Interval(reason=steady.reason)
    rel = steady.relative
    return Interval(low=figure * (1 - rel), high=figure * (1 + rel), relative=rel, samples=steady.windows,
                    method=f"batch means: {steady.windows} windows of {steady.width:.1f} s over the steady part")


def window_rates(begins: np.ndarray, ends: np.ndarray, tokens: np.ndarray, t0: float, width: float,
                 windows: int) -> np.ndarray:
    """Output tokens per second in each window, each request's tokens spread evenly over its decode time
    ([begin, end]: first token to last); a request decoded in an instant counts in the window it falls in."""
    ends = np.maximum(ends, begins)
    edges = t0 + width * np.arange(windows + 1)
    spread = ends > begins
    overlap = np.clip(np.minimum(edges[None, 1:], ends[spread, None]) - np.maximum(edges[None, :-1],
                                                                                 begins[spread, None]), 0.0, None)
    per_window = (tokens[spread, None] * overlap / (ends[spread] - begins[spread])[:, None]).sum(axis=0)
    instant = ~spread
    index = np.floor((begins[instant] - t0) / width).astype(int)
    inside = (index >= 0) & (index < windows)
    np.add.at(per_window, index[inside], tokens[instant][inside])
    return per_window / width


def percentile_interval(samples_ms: Sequence[float] | np.ndarray, q: float) -> Interval:
    """A distribution-free 95 % interval of the q-th percentile (0 < q < 1) from order statistics."""
    xs = np.sort(np.asarray(samples_ms, dtype=float))
    n = len(xs)
    if n == 0:
        return Interval(reason="no samples")
    spread = Z_975 * math.sqrt(n * q * (1 - q))
    lo_rank, hi_rank = math.floor(n * q - spread), math.ceil(n * q + spread) + 1  # 1-based ranks
    low = float(xs[lo_rank - 1]) if lo_rank >= 1 else None
    if hi_rank > n:
        needed = _requests_for_upper_bound(q)
        return Interval(low=low, high=None, samples=n, method="order statistics",
                        reason=f"too few requests for an upper bound of the p{q * 100:g}: {n} sent, about {needed}"
                               " needed")
    return Interval(low=low, high=float(xs[hi_rank - 1]), samples=n, method="order statistics")


def _requests_for_upper_bound(q: float) -> int:
    n = 1
    while math.ceil(n * q + Z_975 * math.sqrt(n * q * (1 - q))) + 1 > n:
        n = max(n + 1, int(n * 1.1))
    return n
