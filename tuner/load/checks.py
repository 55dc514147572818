"""Should a level's figures be trusted? Client vs server token counts, and client saturation.

Each check appends a plain-language warning to the level and clears `reliable`; nothing is dropped or corrected.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuner.contracts.results import ClientHealth, LevelResult, WarningKind, level_warning
from tuner.load.monitor import ClientSample
from tuner.load.request import RequestRecord
from tuner.load.stats import achieved_concurrency, achieved_rate

TOKEN_MISMATCH_TOLERANCE = 0.01
# The lag probe sleeps 5 ms; the loop is overloaded when a timer is this late at p99. Every response timestamp
# taken in such a stretch is late by about as much, so TTFT/ITL would be inflated by the client itself.
LAG_P99_LIMIT_MS = 20.0
CPU_LIMIT = 0.9  # a client process using >= 90% of a core is at its limit: it is what sets the pace
CONCURRENCY_SHORTFALL = 0.9  # achieved below 90% of requested (closed loop) or of the rate (open loop)


def cross_check(level: LevelResult) -> list[str]:
    """Compare the client's output-token count with the server's own counter for the same window.

    The server counts tokens of failed and aborted requests too, so the comparison is made only when every request
    succeeded (with failures the counts legitimately differ)."""
    server = level.server
    if server is None or not server.scraped or server.generation_tokens is None:
        return [level_warning(WarningKind.COUNTERS_UNAVAILABLE,
                              "server counters unavailable: client figures not cross-checked")]
    if level.failed:
        return []
    reference = max(server.generation_tokens, 1.0)
    diff = abs(level.output_tokens - server.generation_tokens) / reference
    if diff > TOKEN_MISMATCH_TOLERANCE:
        level.token_mismatch = True
        return [level_warning(WarningKind.TOKEN_MISMATCH,
                              f"client counted {level.output_tokens} output tokens, the server's"
                              f" vllm:generation_tokens_total grew by {server.generation_tokens:.0f} ({diff:.1%} apart,"
                              f" more than {TOKEN_MISMATCH_TOLERANCE:.0%})")]
    return []


def client_health(samples: Sequence[ClientSample], records: Sequence[RequestRecord], concurrency: int | None,
                  rate: float | None) -> ClientHealth:
    lag = np.concatenate([np.asarray(s.lag_s, dtype=float) for s in samples]) * 1000 if samples else np.array([])
    health = ClientHealth(
        workers=len(samples),
        requested_concurrency=concurrency,
        requested_rate=rate,
        cpu_util_max=max((s.cpu_util for s in samples), default=None),
    )
    if lag.size:
        health.loop_lag_p50_ms, health.loop_lag_p99_ms = (float(x) for x in np.percentile(lag, [50, 99]))
        health.loop_lag_max_ms = float(lag.max())
    sent = [r for r in records if r.start]
    if rate is None:
        health.achieved_concurrency = achieved_concurrency(sent, concurrency)
    else:
        health.achieved_rate = achieved_rate(sent)
    reasons = health.reasons
    if health.loop_lag_p99_ms is not None and health.loop_lag_p99_ms > LAG_P99_LIMIT_MS:
        reasons.append(f"client event loop lag p99 {health.loop_lag_p99_ms:.1f} ms > {LAG_P99_LIMIT_MS:.0f} ms")
    if health.cpu_util_max is not None and health.cpu_util_max >= CPU_LIMIT:
        reasons.append(f"a client process used {health.cpu_util_max:.0%} of a core")
    if rate is None and concurrency and health.achieved_concurrency is not None \
            and len(sent) > concurrency and health.achieved_concurrency < CONCURRENCY_SHORTFALL * concurrency:
        reasons.append(f"achieved concurrency {health.achieved_concurrency:.1f} of {concurrency} requested")
    if rate is not None and health.achieved_rate is not None and health.achieved_rate < CONCURRENCY_SHORTFALL * rate:
        reasons.append(f"achieved rate {health.achieved_rate:.2f} req/s of {rate:g} requested")
    health.saturated = bool(reasons)
    return health
