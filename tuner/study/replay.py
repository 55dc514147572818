"""Replay: answer a study's trials from a recorded response surface instead of launching servers.

A surface (benchmarks/record_surface.py) holds, for every config of a space, several launches as the worker
returned them (TrialResult, levels in full). A replayed trial draws one of those launches, so the machine's noise is
replayed too, and hands it to the normal study loop: scoring, constraints, the front and confirmation run on it
exactly as on a live trial. Every replayed trial says so (`replayed` in its record, its log tail, the front's title
and the export header); a surface is `measured` (real launches) or `modelled` (e.g. feasibility from the memory-fit
model), and that word travels with it.

Used by benchmarks/search_efficiency.py to compare samplers over many seeds in seconds; a study file turns it on
with `replay: {surface: FILE, seed: N}`.
"""
from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tuner.contracts.phases import PhaseReport
from tuner.contracts.results import TrialResult
from tuner.errors import SurfaceError
from tuner.trial.sweep_plan import LaunchRequest, TrialOutcome

Key = TypeVar("Key")


def read_table(path: Path) -> dict[str, Any]:
    """The surface's JSON table; gzip-compressed when the name ends in .gz."""
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class Surface:
    """Recorded launches by config: what a replay draws from."""

    path: Path
    kind: str  # "measured" or "modelled"
    launches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # params_key -> TrialResult dicts

    @classmethod
    def load(cls, path: Path) -> Surface:
        """A surface file (.json, or .json.gz for large ones); SurfaceError naming the file if it is not one."""
        try:
            table = read_table(Path(path))
            configs = table["configs"]
            launches = {params_key(c["params"]): [launch["result"] for launch in c["launches"]] for c in configs}
            kind = str(table.get("kind", "measured"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SurfaceError(str(path), "", f"not a recorded surface ({exc}); record one with"
                               " benchmarks/record_surface.py") from None
        return cls(Path(path), kind, launches)

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.kind})"

    def draw(self, params: dict[str, Any], rng: random.Random) -> TrialResult:
        """One recorded launch of these parameters, chosen by `rng`, marked as replayed."""
        recorded = self.launches.get(params_key(params))
        if not recorded:
            raise SurfaceError(str(self.path), "configs", f"no launch recorded for {params}: replay a space the"
                               " surface was recorded on")
        index = rng.randrange(len(recorded))
        result = TrialResult.model_validate(recorded[index])
        return result.model_copy(update={
            "replayed": self.label, "log_path": "",
            "log_tail": f"replayed: launch {index + 1} of {len(recorded)} recorded for these parameters in"
                        f" {self.label}; no server was started"})


class ReplayExecutor(Generic[Key]):
    """The RayExecutor's interface, answered from a surface at once: submit() draws, wait() hands results back in
    submission order. `params_of(key)` gives the searched parameters of a submitted attempt."""

    def __init__(self, surface: Surface, seed: int | None, params_of: Callable[[Key], dict[str, Any]]) -> None:
        self.surface = surface
        self._rng = random.Random(seed)
        self._params_of = params_of
        self._done: list[tuple[Key, TrialOutcome]] = []

    def __enter__(self) -> ReplayExecutor[Key]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.clear()

    @property
    def running(self) -> list[Key]:
        return [key for key, _ in self._done]

    def submit(self, key: Key, request: LaunchRequest) -> None:
        self._done.append((key, TrialOutcome(self.surface.draw(self._params_of(key), self._rng))))

    def wait(self, timeout_s: float) -> list[tuple[Key, TrialOutcome]]:
        return [self._done.pop(0)] if self._done else []

    def cancel_all(self) -> list[Key]:
        keys = self.running
        self._done.clear()
        return keys

    def phase_reports(self) -> list[tuple[Key, PhaseReport]]:
        return []  # nothing is launched
