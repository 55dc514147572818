"""Tables for people: study status and the Pareto front of stability versus peak throughput."""
from __future__ import annotations

from collections import Counter

import optuna
from rich.table import Table

from tuner.results import LevelResult
from tuner.trial_record import best_by, pareto_front, records


def status_table(study: optuna.Study) -> Table:
    trials = records(study)
    states = Counter(r.state for r in trials)
    complete = [r for r in trials if r.complete]
    penalized = [r for r in complete if r.penalized]
    predicted = [r for r in penalized if not r.launched]
    classes = Counter(r.failure_class for r in trials if r.failure_class)
    table = Table(title=f"study {study.study_name}", show_header=False)
    table.add_row("trials", str(len(trials)))
    table.add_row("complete", f"{len(complete)} ({len(complete) - len(penalized)} measured, {len(penalized)} penalized"
                  + (f", of which {len(predicted)} predicted without a launch)" if predicted else ")"))
    for state in ("RUNNING", "WAITING", "FAIL", "PRUNED"):
        if states.get(state):
            note = {"FAIL": " (infra or tuner error: not counted, re-run)",
                    "PRUNED": " (duplicates, not launched)"}.get(state, "")
            table.add_row(state.lower(), f"{states[state]}{note}")
    if classes:
        table.add_row("failure classes", ", ".join(f"{k} {v}" for k, v in classes.most_common()))
    front = pareto_front(study)
    if front:
        for label, objective in (("max throughput", "throughput"), ("max stability", "stability")):
            r = best_by(front, objective)
            table.add_row(label, f"trial {r.number}: {r.throughput:,.0f} tok/s, stability {r.stability:.3f}")
        table.add_row("pareto front", f"{len(front)} trial(s)")
    return table


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def measurement_checks(levels: list[LevelResult]) -> str:
    """'ok' when every level passed the load generator's checks (client vs server tokens, client saturation,
    compute ceiling); else how many levels carry a warning, so a suspicious figure is never shown as plain fact."""
    flagged = [lv for lv in levels if lv.warnings or not lv.reliable]
    return "ok" if not flagged else f"{len(flagged)} level(s) flagged"


def pareto_table(study: optuna.Study) -> Table:
    front = pareto_front(study)
    param_names = sorted({name for r in front for name in r.params})
    table = Table(title=f"Pareto front of {study.study_name}: peak throughput vs stability")
    for column in ("trial", "output tok/s", "stability", "at conc.", "TTFT p50", "preempt."):
        table.add_column(column, justify="right")
    table.add_column("checks", justify="left")
    for name in param_names:
        table.add_column(name, justify="right")
    for r in front:
        ttft = r.peak_level.ttft_ms.p50 if r.peak_level else None
        table.add_row(str(r.number), f"{r.throughput:,.0f}", f"{r.stability:.3f}", str(r.peak_concurrency),
                      "n/a" if ttft is None else f"{ttft:.0f} ms", f"{r.preemptions:.0f}", measurement_checks(r.levels),
                      *(_fmt_value(r.params.get(n, "-")) for n in param_names))
    return table
