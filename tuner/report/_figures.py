"""The report's plots, drawn with Plotly from tuner.report._data's tables. The same figures go into the HTML report
(interactive), the Markdown report (as PNG, through kaleido) and optuna-dashboard (saved with the study)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tuner.report._data import FEASIBLE, Chosen, ReportData

# One colour per outcome, the same in every figure; penalized classes share warm colours.
COLOURS = {FEASIBLE: "#2a9d8f", "slo_miss": "#e9c46a", "unreliable (flagged levels)": "#8d99ae"}
FAILURE_COLOURS = ["#e76f51", "#d62828", "#9d0208", "#f4a261", "#6a040f", "#bc6c25", "#7f5539"]
LAYOUT = dict(template="plotly_white", height=420, margin=dict(l=60, r=20, t=50, b=50),
              legend=dict(orientation="h", y=-0.2))


def colour_of(outcome: str, outcomes: list[str]) -> str:
    if outcome in COLOURS:
        return COLOURS[outcome]
    failures = [o for o in outcomes if o not in COLOURS]
    return FAILURE_COLOURS[failures.index(outcome) % len(FAILURE_COLOURS)] if outcome in failures else "#555"


def _hover(row: pd.Series, param_names: list[str]) -> str:
    lines = [f"<b>trial {row['trial']}</b>{' — ' + row['label'] if row['label'] else ''}", f"outcome: {row['outcome']}"]
    if row["output_tok_s"] > 0:
        lines += [f"output tok/s: {row['output_tok_s']:,.0f}", f"stability: {row['stability']:.3f}"]
    if pd.notna(row["ttft_p99_ms"]):
        lines.append(f"TTFT p99: {row['ttft_p99_ms']:,.0f} ms at concurrency {row['concurrency']}")
    lines += [f"{n}: {row[f'param:{n}']}" for n in param_names if pd.notna(row[f"param:{n}"])]
    if row["detail"]:
        lines.append(f"why: {row['detail'][:120]}")
    if row["flagged_levels"]:
        lines.append(f"{row['flagged_levels']} flagged level(s), left out of the score")
    return "<br>".join(lines)


def front_figure(data: ReportData) -> go.Figure:
    """Every search trial as one point: throughput vs stability, coloured by outcome; the front ringed, enqueued
    configs labelled. A trial that measured nothing sits at 0 tok/s."""
    fig = go.Figure()
    trials = data.trials.copy()
    # Trials that measured nothing would all sit on one spot at (0, 0): stack them below the axis, one per row.
    unmeasured = trials["output_tok_s"] <= 0
    trials.loc[unmeasured, "stability"] = [-0.04 * (i + 1) for i in range(int(unmeasured.sum()))]
    outcomes = list(dict.fromkeys(trials["outcome"]))
    for outcome in outcomes:
        part = trials[trials["outcome"] == outcome]
        fig.add_trace(go.Scatter(
            x=part["output_tok_s"], y=part["stability"], mode="markers+text", name=f"{outcome} ({len(part)})",
            error_x=_error_bars(part["output_ci_tok_s"]),
            text=part["label"], textposition="top center", customdata=part["trial"],
            hovertext=[_hover(row, data.param_names) for _, row in part.iterrows()], hoverinfo="text",
            marker=dict(size=[16 if f else 10 for f in part["on_front"]], color=colour_of(outcome, outcomes),
                        symbol="circle" if outcome == FEASIBLE else "x",
                        line=dict(width=[2 if f else 0 for f in part["on_front"]], color="#264653"))))
    fig.update_layout(title=f"Every trial: throughput vs stability ({data.title_note}; ringed: on the front;"
                      " bars: 95 % CI of the operating point; below 0: measured nothing)", xaxis_title="output tok/s at the operating point",
                      yaxis_title="stability", **LAYOUT)
    return fig


def latency_figure(data: ReportData) -> go.Figure:
    trials = data.trials.dropna(subset=["ttft_p99_ms"])
    fig = go.Figure()
    outcomes = list(dict.fromkeys(data.trials["outcome"]))
    for outcome in dict.fromkeys(trials["outcome"]):
        part = trials[trials["outcome"] == outcome]
        fig.add_trace(go.Scatter(x=part["output_tok_s"], y=part["ttft_p99_ms"], mode="markers", name=outcome,
                                 hovertext=[_hover(row, data.param_names) for _, row in part.iterrows()],
                                 hoverinfo="text", marker=dict(size=10, color=colour_of(outcome, outcomes))))
    if "ttft_p99_ms" in data.slo:
        fig.add_hline(y=data.slo["ttft_p99_ms"], line_dash="dash", annotation_text="SLO: TTFT p99")
    fig.update_layout(title="Throughput vs TTFT p99 at each trial's operating point",
                      xaxis_title="output tok/s", yaxis_title="TTFT p99 (ms)", **LAYOUT)
    return fig


def curves_figure(data: ReportData, chosen: Chosen) -> go.Figure:
    """A config's load curves: throughput, TTFT p99 and ITL p99 against concurrency, and TTFT p99 against
    throughput (what each step of load buys and costs); flagged levels are hollow."""
    curve = data.curves[chosen.record.number]
    fig = make_subplots(rows=1, cols=4, subplot_titles=("output tok/s", "TTFT p99 (ms)", "ITL p99 (ms)",
                                                        "TTFT p99 (ms) vs tok/s"))
    symbols = ["circle" if ok else "circle-open" for ok in curve["reliable"]]
    hover = [f"concurrency {c}, repeat {r}; {ceilings}{' — ' + w if w else ''}"
             for c, r, w, ceilings in zip(curve["concurrency"], curve["repeat"], curve["warnings"], curve["ceilings"])]
    for col, (x, y) in enumerate((("concurrency", "output_tok_s"), ("concurrency", "ttft_p99_ms"),
                                  ("concurrency", "itl_p99_ms"), ("output_tok_s", "ttft_p99_ms")), start=1):
        bars = _error_bars(curve["output_ci_tok_s"])
        fig.add_trace(go.Scatter(x=curve[x], y=curve[y], mode="lines+markers", showlegend=False, hovertext=hover,
                                 error_y=bars if y == "output_tok_s" else None,
                                 error_x=bars if x == "output_tok_s" else None,
                                 hoverinfo="text+x+y", marker=dict(symbol=symbols, size=9, color="#264653")),
                      row=1, col=col)
        fig.update_xaxes(title_text=x.replace("_", " "), type="log" if x == "concurrency" else "linear",
                         row=1, col=col)
    for column, name, dash in (("decode_ceiling_tok_s", "decode ceiling (bandwidth)", "dot"),
                               ("compute_ceiling_tok_s", "compute ceiling", "dashdot")):
        if curve[column].notna().any():
            fig.add_trace(go.Scatter(x=curve["concurrency"], y=curve[column], mode="lines", name=name,
                                     line=dict(dash=dash, color="#9a9a9a"), hoverinfo="name+x+y"), row=1, col=1)
            fig.update_yaxes(type="log", row=1, col=1)  # a ceiling can be orders above the measured curve
    if "ttft_p99_ms" in data.slo:
        for col in (2, 4):
            fig.add_hline(y=data.slo["ttft_p99_ms"], line_dash="dash", row=1, col=col)
    fig.update_layout(title=f"{chosen.role}: trial {chosen.record.number}, load curves", **{**LAYOUT, "height": 340})
    return fig


def components_figure(data: ReportData) -> go.Figure:
    """Each chosen config's stability components side by side."""
    fig = go.Figure()
    for chosen in data.chosen:
        if chosen.summary is None:
            continue
        parts = chosen.summary.components.model_dump(exclude={"score"})
        fig.add_trace(go.Bar(x=list(parts), y=list(parts.values()), name=f"trial {chosen.record.number}: {chosen.role}"))
    fig.update_layout(title="Stability components of the chosen configs", yaxis_range=[0, 1.05], barmode="group",
                      **LAYOUT)
    return fig


def failure_map_figure(data: ReportData) -> go.Figure:
    """Where in the space configs failed: the first two parameters, every trial, coloured by outcome. Trials on the
    same spot are spread around it so none hides another."""
    trials = data.trials.copy()
    # Axes from parameters every trial has: a conditional one (drafts, where speculation is on) has holes.
    names = [n for n in data.param_names if trials[f"param:{n}"].notna().all()][:2]
    axes = [f"param:{n}" for n in names] + [None] * (2 - len(names))
    x_col = axes[0] or "trial"
    y_col = axes[1] or "outcome"
    spot = trials.groupby([trials[x_col].astype(str), trials[y_col].astype(str)], dropna=False).cumcount()
    fig = go.Figure()
    outcomes = list(dict.fromkeys(trials["outcome"]))
    for outcome in outcomes:
        part = trials[trials["outcome"] == outcome]
        fig.add_trace(go.Scatter(
            x=_spread(part[x_col], spot[part.index], 0), y=_spread(part[y_col], spot[part.index], 1),
            mode="markers", name=outcome, hoverinfo="text",
            hovertext=[_hover(row, data.param_names) for _, row in part.iterrows()],
            marker=dict(size=14, opacity=0.75, color=colour_of(outcome, outcomes),
                        symbol="circle" if outcome == FEASIBLE else "x")))
    for axis, column in (("xaxis", x_col), ("yaxis", y_col)):
        fig.update_layout({axis: _axis(trials[column])})
    fig.update_layout(title="Failure map: outcome by " + (" and ".join(names) if names else "trial"),
                      xaxis_title=names[0] if names else "trial", yaxis_title=names[1] if len(names) > 1 else "",
                      **LAYOUT)
    return fig


def _error_bars(half_widths: pd.Series) -> dict:
    """Symmetric error bars from 95 % CI half-widths (none where a figure has no interval)."""
    return dict(type="data", array=[0.0 if pd.isna(h) else float(h) for h in half_widths], visible=True,
                thickness=1, color="#6c757d")


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.dropna())


def _spread(values: pd.Series, nth: pd.Series, which: int) -> list:
    """The k-th trial on a spot moves 4 % (numeric axes) off it, alternately right/up; categories stay put."""
    if not _numeric(values):
        return [str(v) for v in values]
    step = [1.0, 1.04, 0.96, 1.08, 0.92]
    return [v * step[(k + which) % len(step)] if k else v for v, k in zip(values, nth)]


def _axis(values: pd.Series) -> dict:
    if not _numeric(values):
        return {"type": "category"}
    ticks = sorted(set(values.dropna()))
    logarithmic = ticks and ticks[0] > 0 and ticks[-1] / ticks[0] >= 8
    return {"type": "log" if logarithmic else "linear", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def progress_figure(data: ReportData) -> go.Figure:
    p = data.progress
    fig = go.Figure(go.Scatter(x=p["launch"], y=p["share_of_final"], mode="lines+markers",
                               hovertext=[f"trial {t}" for t in p["trial"]], hoverinfo="text+y"))
    fig.update_layout(title="Is the search still improving? Front hypervolume after each launch (share of the last)",
                      xaxis_title="launched search trials", yaxis_title="hypervolume share", yaxis_range=[0, 1.05],
                      **LAYOUT)
    return fig


def importance_figure(data: ReportData) -> go.Figure:
    fig = go.Figure()
    for objective, part in data.importance.groupby("objective", sort=False):
        fig.add_trace(go.Bar(x=part["importance"], y=part["parameter"], orientation="h", name=objective))
    fig.update_layout(title="Parameter importance per objective (PED-ANOVA over the feasible launches)",
                      xaxis_title="importance", barmode="group", **LAYOUT)
    return fig


def matrix_figure(trial: int, points: pd.DataFrame) -> go.Figure:
    shape = points["input_len"].astype(str) + " in / " + points["output_len"].astype(str) + " out"
    table = points.assign(shape=shape).pivot_table(index="shape", columns="concurrency", values="output_tok_s")
    fig = go.Figure(go.Heatmap(z=table.values, x=[str(c) for c in table.columns], y=list(table.index),
                               colorscale="Viridis", colorbar=dict(title="tok/s")))
    fig.update_layout(title=f"Trial {trial}: output tok/s over concurrency x input x output",
                      xaxis_title="concurrency", **{**LAYOUT, "height": max(320, 24 * len(table.index) + 120)})
    return fig


def cost_figure(data: ReportData) -> go.Figure:
    """Each launch's slice time, stacked by phase: what startup, probes, the worst case and the sweep cost."""
    fig = go.Figure()
    frame = data.launches
    for column in [c for c in frame.columns if c.endswith("_s") and c != "startup_s"]:
        fig.add_trace(go.Bar(x=[f"trial {t}" for t in frame["trial"]], y=frame[column] / 60,
                             name=column.removesuffix("_s").replace("_", " ")))
    cost = data.cost
    fig.update_layout(title="Slice time per launch, by phase" + (f": {cost.describe()}" if cost else ""),
                      barmode="stack", yaxis_title="minutes", **LAYOUT)
    return fig


def all_figures(data: ReportData) -> dict[str, go.Figure]:
    """Every figure of the report by id, in reading order (ids are stable: the browser test and dashboard use them)."""
    figures = {"front": front_figure(data)}
    if data.trials["ttft_p99_ms"].notna().any():
        figures["latency"] = latency_figure(data)
    for chosen in data.chosen:
        if len(data.curves[chosen.record.number]):
            figures[f"curves-{chosen.record.number}"] = curves_figure(data, chosen)
    if any(c.summary is not None for c in data.chosen):
        figures["components"] = components_figure(data)
    figures["failures"] = failure_map_figure(data)
    if len(data.progress):
        figures["progress"] = progress_figure(data)
    if len(data.importance):
        figures["importance"] = importance_figure(data)
    if len(data.launches):
        figures["cost"] = cost_figure(data)
    for trial, points in data.matrices.items():
        if len(points):
            figures[f"matrix-{trial}"] = matrix_figure(trial, points)
    return figures
