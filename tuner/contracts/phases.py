"""Where a launch's slice time goes: its phases in order, the seconds each took, and the live reports a worker
sends while it runs (so a study on a TPU shows "compiling" for an hour instead of nothing).

A launch holds its slice from the server's start until it is torn down; time spent waiting for a free slice is not
slice time. Startup is split by the server's own log where it prints the split (vLLM: "Model loading took ... s",
"init engine (...) took ... s"); every other phase is tuner's clock.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class LaunchPhase(enum.StrEnum):
    STARTING = "starting"  # process start, imports, device init: startup less the two below (all of it unsplit)
    LOADING = "loading"  # reading the weights, as the server's log times it
    COMPILING = "compiling"  # compile and warm-up until ready, as the server's log times it
    PROBES = "probes"  # the quality guard's probe set (and a confirmation run's second check after its soak)
    WORST_CASE = "worst_case"  # max-num-seqs requests at once at the longest lengths, before the sweep
    SWEEP = "sweep"  # building the requests, every sweep level and its repeats
    SOAK = "soak"  # a confirmation run's long phase
    TEARDOWN = "teardown"  # stopping the server until its devices are free
    OTHER = "other"  # wall time between phases (tuner's calls to /version, its own bookkeeping)


@dataclass(frozen=True)
class PhaseReport:
    """A phase a running launch entered, with what it is doing there ("c=64: 128 requests"). `live`: an update
    within the phase ("c=64: 57/128 answered, 1,210 tok/s so far"), for a live display only: a log without a
    terminal gets one line per phase change, not one per update."""

    phase: LaunchPhase
    detail: str = ""
    live: bool = False

    def describe(self) -> str:
        return f"{self.phase.value.replace('_', ' ')}{': ' + self.detail if self.detail else ''}"


PhaseSink = Callable[[PhaseReport], None]


def no_reports(report: PhaseReport) -> None:
    return None
