"""Live progress of a running study: a rich panel on a terminal, one line per event elsewhere (CI logs)."""
from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tuner.study import Snapshot


def render(s: Snapshot) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]{s.complete}/{s.total}[/] trials done",
        f"[cyan]{len(s.running)}[/] running",
        f"[red]{s.penalized}[/] penalized" + (f" ({s.predicted} predicted, not launched)" if s.predicted else ""),
        f"{s.infra_retries} infra retries",
        s.describe_cost(),
    )
    best = Table.grid(padding=(0, 2))
    if s.best_throughput:
        best.add_row(f"best single launch: trial {s.best_throughput[0]} at [green]{s.best_throughput[1]:,.0f}[/] output"
                     " tok/s (unconfirmed)")
    if s.confirming or s.confirmations:
        best.add_row(f"confirming the front: {s.confirmations} relaunch(es) done")
    running = Text("  ".join(f"trial {n}: {sec:.0f}s{', ' + s.phases[n] if n in s.phases else ''}"
                             for n, sec in sorted(s.running.items())), style="dim")
    return Group(head, best, running, Text(s.last_event, style="italic"))


class ProgressDisplay:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self._last_event = ""
        self._last_refresh = 0.0

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def __call__(self, snapshot: Snapshot) -> None:
        if self.live:
            now = time.monotonic()
            if snapshot.last_event != self._last_event or now - self._last_refresh > 0.5:
                self.live.update(render(snapshot))
                self._last_refresh = now
        if snapshot.last_event != self._last_event:
            self._last_event = snapshot.last_event
            if not self.live:
                self.console.print(
                    f"[{snapshot.complete}/{snapshot.total} done, {len(snapshot.running)} running,"
                    f" {snapshot.penalized} penalized, {snapshot.describe_cost()}] {snapshot.last_event}",
                    highlight=False, markup=False)
            else:
                self.live.console.print(f"  {snapshot.last_event}", highlight=False, markup=False, style="dim")
