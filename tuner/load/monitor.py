"""Self-monitoring of the client: is the load generator itself the bottleneck?

Two independent signs: event-loop lag (a timer that should fire every few ms fires late when the loop is busy
parsing responses, and every timestamp taken meanwhile is late by as much) and the process's CPU use (a client near
one full core cannot go faster). Achieved versus requested concurrency or rate is computed from the records
(stats.py), so it works the same after merging worker processes.
"""
from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field

PROBE_INTERVAL_S = 0.005


@dataclass
class ClientSample:
    """What one client process saw of itself during a level."""

    lag_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def cpu_util(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoopMonitor:
    """Runs a lag probe on the current event loop between start() and stop()."""

    def __init__(self, interval_s: float = PROBE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.sample = ClientSample()
        self._task: asyncio.Task | None = None
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def start(self) -> None:
        self._cpu0 = _cpu_seconds()
        self._wall0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        lag = self.sample.lag_s
        interval = self.interval_s
        while True:
            t = time.perf_counter()
            await asyncio.sleep(interval)
            lag.append(max(0.0, time.perf_counter() - t - interval))

    async def stop(self) -> ClientSample:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.sample.cpu_s = _cpu_seconds() - self._cpu0
        self.sample.wall_s = time.perf_counter() - self._wall0
        return self.sample
