"""Tables for people: study status and the Pareto front of stability versus peak throughput."""
from __future__ import annotations

from collections import Counter

import optuna
from optuna.trial import TrialState
from rich.table import Table


def feasible_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("constraint", 1.0) <= 0 and t.values is not None]


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible trials no other feasible trial beats on both throughput and stability."""
    trials = feasible_trials(study)

    def dominated(t: optuna.trial.FrozenTrial) -> bool:
        return any(o.values[0] >= t.values[0] and o.values[1] >= t.values[1] and o.values != t.values for o in trials)

    return sorted((t for t in trials if not dominated(t)), key=lambda t: -t.values[0])


def status_table(study: optuna.Study) -> Table:
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    penalized = [t for t in complete if t.user_attrs.get("constraint", 1.0) > 0]
    classes = Counter(t.user_attrs.get("failure_class") for t in trials if t.user_attrs.get("failure_class"))
    table = Table(title=f"study {study.study_name}", show_header=False)
    table.add_row("trials", str(len(trials)))
    predicted = [t for t in penalized if t.user_attrs.get("launched", True) is False]
    table.add_row("complete", f"{len(complete)} ({len(complete) - len(penalized)} measured, {len(penalized)} penalized"
                  + (f", of which {len(predicted)} predicted without a launch)" if predicted else ")"))
    for state in ("RUNNING", "WAITING", "FAIL", "PRUNED"):
        if states.get(state):
            note = {"FAIL": " (infra: not counted, re-run)", "PRUNED": " (duplicates, not launched)"}.get(state, "")
            table.add_row(state.lower(), f"{states[state]}{note}")
    if classes:
        table.add_row("failure classes", ", ".join(f"{k} {v}" for k, v in classes.most_common()))
    front = pareto_front(study)
    if front:
        best = max(front, key=lambda t: t.values[0])
        steady = max(front, key=lambda t: (t.values[1], t.values[0]))
        table.add_row("max throughput", f"trial {best.number}: {best.values[0]:,.0f} tok/s, stability {best.values[1]:.3f}")
        table.add_row("max stability", f"trial {steady.number}: {steady.values[0]:,.0f} tok/s, stability {steady.values[1]:.3f}")
        table.add_row("pareto front", f"{len(front)} trial(s)")
    return table


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def measurement_checks(levels: list[dict]) -> str:
    """'ok' when every level passed the load generator's checks (client vs server tokens, client saturation,
    compute ceiling); else how many levels carry a warning, so a suspicious figure is never shown as plain fact."""
    flagged = [lv for lv in levels if lv.get("warnings") or lv.get("reliable") is False]
    return "ok" if not flagged else f"{len(flagged)} level(s) flagged"


def pareto_table(study: optuna.Study) -> Table:
    front = pareto_front(study)
    param_names = sorted({name for t in front for name in t.params})
    table = Table(title=f"Pareto front of {study.study_name}: peak throughput vs stability")
    table.add_column("trial", justify="right")
    table.add_column("output tok/s", justify="right")
    table.add_column("stability", justify="right")
    table.add_column("at conc.", justify="right")
    table.add_column("TTFT p50", justify="right")
    table.add_column("preempt.", justify="right")
    table.add_column("checks", justify="left")
    for name in param_names:
        table.add_column(name, justify="right")
    for t in front:
        levels = t.user_attrs.get("levels", [])
        peak_c = t.user_attrs.get("peak_concurrency")
        peak = next((lv for lv in levels if lv["concurrency"] == peak_c), None)
        ttft = peak["ttft_ms"]["p50"] if peak else None
        preemptions = sum((lv.get("server") or {}).get("preemptions") or 0 for lv in levels)
        table.add_row(str(t.number), f"{t.values[0]:,.0f}", f"{t.values[1]:.3f}", str(peak_c),
                      "n/a" if ttft is None else f"{ttft:.0f} ms", f"{preemptions:.0f}", measurement_checks(levels),
                      *(_fmt_value(t.params.get(n, "-")) for n in param_names))
    return table
