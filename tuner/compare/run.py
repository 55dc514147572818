"""The launches of a comparison: alternating, one at a time on the slice, each written down as it ends."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuner.compare.sides import Side
from tuner.contracts.results import TrialResult
from tuner.inputs.spec import Study
from tuner.planning.prelaunch import prompt_vocab_size
from tuner.planning.traffic import resolve_traffic, sweep_plan
from tuner.trial import launch
from tuner.trial.sweep_plan import LaunchRequest

LAUNCHES_FILE = "launches.jsonl"


def alternating(launches: int) -> list[int]:
    """Side indices in launch order: A B B A A B B A ... (an order that cancels a linear drift of the host)."""
    order: list[int] = []
    while len(order) < 2 * launches:
        order += [0, 1] if len(order) % 4 == 0 else [1, 0]
    return order[:2 * launches]


@dataclass
class CompareRun:
    sides: tuple[Side, Side]
    results: tuple[list[TrialResult], list[TrialResult]] = field(default_factory=lambda: ([], []))


def run_compare(study: Study, sides: tuple[Side, Side], launches: int, out_dir: Path,
                on_event: Callable[[str], None] = lambda _: None) -> CompareRun:
    """Launch each side `launches` times, alternately, with the study's sweep; every launch's result is appended to
    out_dir/launches.jsonl as it ends (its server log beside it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = sweep_plan(study, resolve_traffic(study))
    vocab = prompt_vocab_size(study)
    run = CompareRun(sides)
    for n, side_index in enumerate(alternating(launches)):
        side = sides[side_index]
        name = "AB"[side_index]
        on_event(f"launch {n + 1}/{2 * launches}: {name} ({side.label})")
        log_path = out_dir / f"launch-{n + 1:02d}-{name}.log"
        outcome = launch(LaunchRequest(config=side.config, plan=plan, timeouts=study.spec.timeouts,
                                       log_path=str(log_path.absolute()), host=study.spec.server.host,
                                       vocab_size=vocab))
        result = outcome.result
        run.results[side_index].append(result)
        with (out_dir / LAUNCHES_FILE).open("a") as f:
            f.write(json.dumps({"launch": n + 1, "side": name, "label": side.label,
                                "result": result.model_dump(mode="json")}) + "\n")
        verdict = result.failure_class or "measured"
        on_event(f"launch {n + 1}/{2 * launches}: {name} {verdict}"
                 + (f" ({result.failure_detail[:100]})" if result.failure_class else ""))
    return run
