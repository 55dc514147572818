"""A study report as one self-contained HTML file (Plotly's library inlined: it opens offline, with no server) or as
Markdown with PNG figures beside it (for a PR or a wiki). Both show the same sections, in the same order."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from tuner.errors import ReportFigureError
from tuner.report._data import ReportData
from tuner.report._figures import all_figures

SECTIONS = [  # (figure id prefix, heading, what the reader learns)
    ("front", "The front", "Every search trial is one point; ringed points are on the front."),
    ("latency", "Latency", "Where each config's tail latency sits against its throughput."),
    ("curves-", "Load curves of the chosen configs", "Hollow markers are flagged levels, left out of every score."),
    ("components", "Stability", "survival, success, headroom and consistency (tuner.scoring.confirmation)."),
    ("failures", "Failure map", "Where in the space configs failed, and why (table below)."),
    ("progress", "Search progress", "A flat end means more trials would likely not move the front."),
    ("importance", "Parameter importance", "Which flags decide each objective."),
    ("cost", "Cost", "Slice time each launch held, by phase (startup split by the server's own log; waiting for"
     " a slice not counted)."),
    ("matrix-", "Matrix", "`tuner study matrix`: concurrency x input x output."),
]


LIMITS_HEADING = "Physical limits"
LIMITS_NOTE = ("Each level's share of the slice's compute ceiling (prompt and output tokens at 2 x active parameters"
               " plus attention) and decode ceiling (memory bandwidth over the weights and KV cache a step reads, times"
               " the tokens per step the server's own draft counters show); a level above either is flagged and never"
               " decides. The dotted lines on the load curves are these ceilings.")


def cost_sentence(data: ReportData) -> str:
    """"Spent 0.81 slice-hours over 10 launches (4.9 min each); by phase: sweep 64 %, starting 14 %, ...; the
    whole grid: 1,152 configs, about 94 slice-hours at the mean launch"."""
    cost = data.cost
    if cost is None or not cost.launches:
        return "No launch has held a slice yet."
    shares = ", ".join(f"{name.replace('_', ' ')} {share:.0%}" for name, share in
                       sorted(cost.phase_shares().items(), key=lambda kv: -kv[1]) if share >= 0.005)
    return f"Spent {cost.describe()}; by phase: {shares}. The whole grid: {cost.describe_grid()}.{_cache_saving(data)}"


def _cache_saving(data: ReportData) -> str:
    """What a warm compile cache saved: mean startup of warm launches against cold ones, where both ran."""
    launches = data.launches
    if "compile_cache" not in launches.columns:
        return ""
    mean = launches.groupby("compile_cache")["startup_s"].mean()
    if "warm" in mean.index and "cold" in mean.index:
        return (f" Compile cache: warm launches started in {mean['warm']:,.0f} s on average, cold ones in"
                f" {mean['cold']:,.0f} s.")
    states = ", ".join(f"{state} {count}" for state, count in launches["compile_cache"].value_counts().items())
    return f" Compile cache per launch: {states}."


def render_html(data: ReportData) -> str:
    import plotly.offline

    figures = all_figures(data)
    body = [f"<h1>Study {html.escape(data.study_name)}</h1>",
            f"<p class='note'>{html.escape(data.title_note)}; objectives: {', '.join(data.objectives)}"
            + (f"; SLOs: {html.escape(_slo(data))}" if data.slo else "") + "</p>",
            *([f"<p class='note'>Measured with {html.escape(data.traffic)}.</p>"] if data.traffic else []),
            "<h2>Trade-off: baseline, peak and balanced</h2>", _html_table(data.tradeoff, index=True),
            "<h2>Recommended config</h2>", _recommended_html(data)]
    for prefix, heading, note in SECTIONS:
        ids = [i for i in figures if i == prefix or (prefix.endswith("-") and i.startswith(prefix))]
        if not ids:
            continue
        body.append(f"<h2>{heading}</h2><p class='note'>{html.escape(note)}</p>")
        for figure_id in ids:
            body.append(figures[figure_id].to_html(full_html=False, include_plotlyjs=False,
                                                   div_id=f"fig-{figure_id}", config={"displaylogo": False}))
        if prefix == "failures" and len(data.failures):
            body.append(_html_table(data.failures))
        if prefix == "cost":
            body += [f"<p class='note'>{html.escape(cost_sentence(data))}</p>", _html_table(data.launches)]
        if prefix == "curves-" and len(data.limits):
            body += [f"<h3>{LIMITS_HEADING}</h3><p class='note'>{html.escape(LIMITS_NOTE)}</p>",
                     _html_table(data.limits)]
    body += ["<h2>Every search trial</h2>", _html_table(data.trials.rename(columns=lambda c: c.removeprefix("param:")))]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tuner report: "
            f"{html.escape(data.study_name)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>"
            f"<body>{''.join(body)}</body></html>")


def render_markdown(data: ReportData, figure_dir: Path, link_prefix: str) -> str:
    """Markdown text; each figure is written to figure_dir as PNG and linked as link_prefix/<id>.png."""
    figures = all_figures(data)
    figure_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Study {data.study_name}", "", f"{data.title_note}; objectives: {', '.join(data.objectives)}"
             + (f"; SLOs: {_slo(data)}" if data.slo else ""), "",
             *([f"Measured with {data.traffic}.", ""] if data.traffic else []), "## Trade-off: baseline, peak and balanced", "",
             data.tradeoff.to_markdown() if len(data.tradeoff) else "_no feasible config yet_", "",
             "## Recommended config", "", *_recommended_md(data), ""]
    for prefix, heading, note in SECTIONS:
        ids = [i for i in figures if i == prefix or (prefix.endswith("-") and i.startswith(prefix))]
        if not ids:
            continue
        lines += [f"## {heading}", "", note, ""]
        for figure_id in ids:
            _write_png(figures[figure_id], figure_dir / f"{figure_id}.png")
            lines += [f"![{figure_id}]({link_prefix}/{figure_id}.png)", ""]
        if prefix == "failures" and len(data.failures):
            lines += [data.failures.to_markdown(index=False), ""]
        if prefix == "cost":
            lines += [cost_sentence(data), "", data.launches.to_markdown(index=False), ""]
        if prefix == "curves-" and len(data.limits):
            lines += [f"### {LIMITS_HEADING}", "", LIMITS_NOTE, "", data.limits.to_markdown(index=False), ""]
    return "\n".join(lines) + "\n"


def _write_png(figure, path: Path) -> None:
    from kaleido.errors import ChromeNotFoundError

    try:
        figure.write_image(str(path), width=1000, height=figure.layout.height or 420)
    except ChromeNotFoundError:
        raise ReportFigureError("the Markdown report draws its figures with Chromium (through kaleido), and none"
                                " was found: install it (Debian: apt install chromium; or set BROWSER_PATH), or"
                                " write --format html, which needs no browser") from None


def _slo(data: ReportData) -> str:
    return ", ".join(f"{k} <= {v:g}" for k, v in data.slo.items())


def _html_table(frame: pd.DataFrame, index: bool = False) -> str:
    if not len(frame):
        return "<p class='note'>nothing yet</p>"
    return frame.to_html(index=index, classes="table", border=0, na_rep="-", float_format=lambda v: f"{v:,.3g}"
                         if abs(v) < 100 else f"{v:,.0f}")


def _recommended_text(data: ReportData) -> tuple[str, str, str] | None:
    """(heading line, YAML for `vllm serve --config`, env file) of the recommended config, or None."""
    if data.recommended is None:
        return None
    from tuner.report.export import render_config, render_env_file

    chosen = data.recommended
    return (f"trial {chosen.number}, exported as `tuner study export {data.study_name} --trial {chosen.number}`",
            render_config(data.study, chosen), render_env_file(chosen))


def _recommended_html(data: ReportData) -> str:
    text = _recommended_text(data)
    if text is None:
        return f"<p class='note'>{html.escape(data.recommended_why)}</p>"
    line, config, env = text
    return (f"<p>{html.escape(line)}</p><pre id='recommended-yaml'>{html.escape(config)}</pre>"
            f"<pre id='recommended-env'>{html.escape(env)}</pre>")


def _recommended_md(data: ReportData) -> list[str]:
    text = _recommended_text(data)
    if text is None:
        return [f"_{data.recommended_why}_"]
    line, config, env = text
    return [line, "", "```yaml", config.rstrip(), "```", "", "```sh", env.rstrip(), "```"]


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.note{color:#555} pre{background:#f6f8fa;padding:.8rem;overflow-x:auto}
table.table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.table th,table.table td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
table.table th{background:#f6f8fa}
"""
