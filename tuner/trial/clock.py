"""A launch's phases timed on tuner's clock and reported live as each begins (tuner.contracts.phases).

Startup is one span on tuner's clock (process start to /health 200); the server's log splits it into loading and
compiling where it prints both figures, and the lines it prints while starting are reported as they appear, so the
live display says "loading" then "compiling" during a TPU's hour of XLA compilation.
"""
from __future__ import annotations

import re
import time

from tuner.contracts.phases import LaunchPhase, PhaseReport, PhaseSink, no_reports

_LOADING = re.compile(r"Starting to load model|Loading model from|Loading weights")
_LOADED = re.compile(r"Model loading took|Loading weights took|init engine|Compiling|compil", re.IGNORECASE)


class PhaseClock:
    def __init__(self, sink: PhaseSink = no_reports) -> None:
        self._sink = sink
        self.seconds: dict[LaunchPhase, float] = {}
        self._current: LaunchPhase | None = None
        self._since = 0.0
        self._startup_seen: LaunchPhase = LaunchPhase.STARTING

    def enter(self, phase: LaunchPhase, detail: str = "", quiet: bool = False) -> None:
        """Close the current phase and start `phase` (entering the one already running only reports the detail).
        `quiet`: account the time without a report (back to the sweep after the probes: its levels report)."""
        if phase != self._current:
            self.stop()
            self._current, self._since = phase, time.monotonic()
        if not quiet:
            self.report(phase, detail)

    def stop(self) -> None:
        if self._current is not None:
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + time.monotonic() - self._since
            self._current = None

    def report(self, phase: LaunchPhase, detail: str = "", live: bool = False) -> None:
        """Tell the live display; a display that cannot be reached never fails the launch."""
        try:
            self._sink(PhaseReport(phase, detail, live))
        except Exception:  # progress is best effort: the trial's own outcome is what counts
            pass

    def startup_lines(self, lines: list[str]) -> None:
        """Lines the server printed while starting: report loading, then compiling, as the log shows them."""
        for line in lines:
            if self._startup_seen == LaunchPhase.STARTING and _LOADING.search(line):
                self._startup_seen = LaunchPhase.LOADING
                self.report(LaunchPhase.LOADING, "reading the weights")
            elif self._startup_seen != LaunchPhase.COMPILING and _LOADED.search(line):
                self._startup_seen = LaunchPhase.COMPILING
                self.report(LaunchPhase.COMPILING, "compiling and warming up")

    def split(self, load_s: float | None, compile_s: float | None, wall_s: float) -> dict[str, float]:
        """Seconds per phase, in phase order, summing to the launch's wall time: startup split by the log's own
        figures (each capped by what is left of startup), the rest of the wall time as `other`."""
        self.stop()
        phases = dict(self.seconds)
        startup = phases.pop(LaunchPhase.STARTING, 0.0)
        loading = min(load_s or 0.0, startup)
        compiling = min(compile_s or 0.0, startup - loading)
        phases[LaunchPhase.STARTING] = startup - loading - compiling
        if loading:
            phases[LaunchPhase.LOADING] = loading
        if compiling:
            phases[LaunchPhase.COMPILING] = compiling
        phases[LaunchPhase.OTHER] = max(0.0, wall_s - sum(phases.values()))
        return {p.value: round(phases[p], 3) for p in LaunchPhase if p in phases}
