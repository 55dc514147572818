"""Other drivers of the same study (one storage, e.g. PostgreSQL): the trials they run, and theirs whose driver is
gone (lease expired) re-queued here. Read from storage every POLL_S."""
from __future__ import annotations

import time
from collections.abc import Callable

import optuna

from tuner.study._bookkeeping import Counts, recover_interrupted
from tuner.study._lease import Lease

POLL_S = 2.0  # how often storage is read for other drivers' trials: theirs running, and expired leases


class OtherDrivers:
    def __init__(self, optuna_study: optuna.Study, on_event: Callable[[str], None]) -> None:
        self.optuna_study = optuna_study
        self.on_event = on_event
        self.running: dict[int, bool] = {}  # other drivers' RUNNING trials: number -> search trial
        self._polled = 0.0

    def recover(self, lease: Lease) -> bool:
        """Re-queue trials whose driver is gone (their lease expired). True when any was."""
        recovered = recover_interrupted(self.optuna_study, lease)
        if recovered:
            self.on_event(f"re-queued trials whose driver stopped (lease expired): {recovered}")
        return bool(recovered)

    def due(self) -> bool:
        """Time to read storage again (every POLL_S)."""
        if time.monotonic() - self._polled < POLL_S:
            return False
        self._polled = time.monotonic()
        return True

    def count(self, counts: Counts, own: set[int]) -> None:
        self.running = {n: search for n, search in counts.running.items() if n not in own}

    @property
    def search_trials_running(self) -> int:
        return sum(self.running.values())
