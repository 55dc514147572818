"""Tables for people: study status and the Pareto front of stability versus peak throughput."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
from rich.table import Table

from tuner.contracts.outcomes import Outcome
from tuner.contracts.results import LevelResult
from tuner.report._data import grid_of
from tuner.study.cost import study_cost
from tuner.study.front import study_front
from tuner.study.records import StudyRecord, TrialCounts, records


def status_table(study: optuna.Study) -> Table:
    trials = records(study)
    states = Counter(r.state for r in trials)
    complete = [r for r in trials if r.complete]
    counts = TrialCounts.of(trials)
    search, penalized, predicted = counts.search, counts.penalized, counts.predicted
    confirmations, answered, warm = counts.confirmations, counts.answered, counts.warm
    outcomes = Counter(r.outcome for r in complete if r.outcome != Outcome.MEASURED and not r.answered)
    table = Table(title=f"study {study.study_name}", show_header=False)
    table.add_row("trials", str(len(trials)))
    table.add_row("search", f"{len(search)} ({len(search) - len(penalized)} feasible, {len(penalized)} infeasible"
                  + (f", of which {len(predicted)} predicted without a launch)" if predicted else ")"))
    if warm:
        sources = sorted({r.warm_start_from.split("#")[0] for r in warm})
        table.add_row("warm start", f"{len(warm)} trials of {', '.join(sources)} (seed the sampler; not launched here)")
    if confirmations:
        table.add_row("confirmation runs", str(len(confirmations)))
    if answered:
        table.add_row("answered", f"{len(answered)} (duplicate proposals, answered from the earlier trial, not launched)")
    for state in ("RUNNING", "WAITING", "FAIL", "PRUNED"):
        if states.get(state):
            note = {"FAIL": " (infra or tuner error, or a duplicate of a running trial: not counted)",
                    "PRUNED": " (duplicates, not launched; studies from before answers)"}.get(state, "")
            table.add_row(state.lower(), f"{states[state]}{note}")
    if outcomes:
        table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    flagged = sum(1 for r in complete for lv in r.levels if not lv.reliable)
    if flagged:
        table.add_row("flagged levels", f"{flagged} (left out of every score; see each trial's warnings)")
    cost = study_cost(trials, StudyRecord.of(study).spec.price_per_slice_hour, grid_of(study))
    table.add_row("slice time", cost.describe())
    if cost.launches:
        shares = ", ".join(f"{name.replace('_', ' ')} {share:.0%}" for name, share in cost.phase_shares().items()
                           if share >= 0.005)
        table.add_row("by phase", shares)
        table.add_row("whole grid", cost.describe_grid())
    stopped = StudyRecord.of(study).search_stopped
    if stopped:
        table.add_row("search stopped", stopped)
    front = study_front(study)
    table.add_row("machine noise", f"{front.noise:.1%} (spread of repeated measurements)")
    if front.configs:
        state = "confirmed" if front.confirmed else "UNCONFIRMED single launches"
        table.add_row("front", f"{len(front.configs)} config(s), {state}")
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


def _fmt_objective(name: str, value: float) -> str:
    if name == "stability":
        return f"{value:.3f}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def _range(rank_range: list[float] | None) -> str:
    """The rank objective's range across a config's launches: the interval of their median (with n launches it
    holds it with 1 - 2^(1-n) confidence; the export header says how much)."""
    return "-" if not rank_range else f"{rank_range[0]:,.0f}-{rank_range[1]:,.0f}"


def pareto_table(study: optuna.Study) -> Table:
    front = study_front(study)
    goals = front.goals
    param_names = sorted({name for s in front.configs for name in s.params})
    state = "confirmed medians" if front.confirmed else "UNCONFIRMED single launches"
    replay = StudyRecord.of(study).spec.replay
    if replay:
        state = f"REPLAYED from {Path(replay.surface).name}, {state}"
    slo = f"; SLOs {goals.describe_slo()}" if goals.slo else ""
    table = Table(title=f"front of {study.study_name}: {' vs '.join(goals.objectives)} ({state}{slo})")
    table.add_column("trial", justify="right")
    table.add_column("runs", justify="right")
    for name in goals.objectives:
        table.add_column(name, justify="right")
    for column in ("spread", "range", "at conc.", "survival", "headroom", "consist."):
        table.add_column(column, justify="right")
    for name in param_names:
        table.add_column(name, justify="right")
    for s in front.configs:
        c = s.components
        table.add_row(str(s.trial), str(len(s.runs)), *(_fmt_objective(n, s.values[n]) for n in goals.objectives),
                      "-" if s.spread is None else f"{s.spread:.1%}", _range(s.rank_range),
                      str(s.operating_concurrency),
                      f"{c.survival:.2f}", f"{c.headroom:.2f}", f"{c.consistency:.2f}",
                      *(_fmt_value(s.params.get(n, "-")) for n in param_names))
    return table
