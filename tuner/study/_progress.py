"""What the progress display shows of a running study (Snapshot), kept current from storage and the workers'
phase reports (Progress). The loop calls it; the display (tuner.report.progress) only reads the snapshot."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tuner.contracts.phases import PhaseReport
from tuner.inputs.spec import StudySpec
from tuner.study._bookkeeping import Counts


@dataclass
class Snapshot:
    """What the progress display shows."""

    total: int
    complete: int = 0
    penalized: int = 0
    predicted: int = 0  # penalized by prediction (rules, memory fit), never launched, not counted in the trials
    infra_retries: int = 0
    confirmations: int = 0  # confirmation runs done
    confirming: bool = False  # the search is done; the front's configs are being relaunched
    running: dict[int, float] = field(default_factory=dict)  # trial number -> seconds running
    phases: dict[int, str] = field(default_factory=dict)  # trial number -> the phase it is in, as its worker said
    best_throughput: tuple[int, float] | None = None
    last_event: str = ""
    slice_s: float = 0.0  # slice time of the finished launches (tuner.study.cost)
    price_per_slice_hour: float | None = None
    launch_s: float | None = None  # the mean measured launch
    left_s: float | None = None  # expected slice time to finish: the launches still planned at the mean launch

    def describe_cost(self) -> str:
        """"0.21 slice-h, ~0.35 h to go" (and the price where the study sets one)."""
        text = f"{self.slice_s / 3600:.2f} slice-h"
        if self.price_per_slice_hour is not None:
            text += f" ({self.slice_s / 3600 * self.price_per_slice_hour:,.2f})"
        if self.left_s is not None:
            text += f", ~{self.left_s / 3600:.2f} h to go"
        return text


class Progress:
    """The snapshot, and the one way the loop tells the display something happened."""

    def __init__(self, spec: StudySpec, total: int, on_progress: Callable[[Snapshot], None],
                 running: Callable[[], dict[int, float]]) -> None:
        self.spec = spec
        self.snapshot = Snapshot(total=total)
        self.on_progress = on_progress
        self._running = running  # trial number -> when it started (monotonic), of this driver's attempts

    def count(self, counts: Counts) -> None:
        """Storage's counts into the snapshot, and the slice time still to go at the mean launch."""
        s = self.snapshot
        s.complete, s.predicted, s.penalized = counts.launched, counts.predicted, counts.penalized
        s.best_throughput, s.confirmations = counts.best_throughput, counts.confirmations
        s.slice_s, s.launch_s = counts.cost.slice_s, counts.cost.mean_launch_s
        s.price_per_slice_hour = self.spec.price_per_slice_hour
        if s.launch_s is not None:
            search_left = max(0, s.total - s.complete)
            confirm_left = self.spec.confirm.repeats * self.spec.confirm.candidates - s.confirmations
            s.left_s = (search_left + max(0, confirm_left)) * s.launch_s

    def phases(self, reports: Iterable[tuple[int, PhaseReport]]) -> None:
        """Each running trial's phase as its worker reports it: one event per phase change, so a log without a
        terminal shows "loading", "compiling", each level, instead of nothing for the length of a launch."""
        for number, report in reports:
            if number not in self._running():
                continue  # it finished while its report was on the way
            described = report.describe()
            self.snapshot.phases[number] = described
            if report.live:
                self.publish()  # a terminal's panel shows it; a log gets one line per phase, not per update
            else:
                self.event(f"trial {number}: {described}")

    def event(self, message: str) -> None:
        self.snapshot.last_event = message
        self.publish()

    def publish(self) -> None:
        now = time.monotonic()
        self.snapshot.running = {n: now - started for n, started in self._running().items()}
        self.snapshot.phases = {n: p for n, p in self.snapshot.phases.items() if n in self.snapshot.running}
        self.on_progress(self.snapshot)
