"""Reports for people: terminal tables (status, the front), and the study report as HTML or Markdown.

    _terminal  rich tables for `tuner study status` and `tuner study pareto`
    _data      what a report shows, as pandas tables read from storage alone
    _figures   the plots (Plotly), shared by the HTML and Markdown reports and the dashboard
    _render    the HTML (self-contained, offline) and Markdown (PNG figures beside it) reports
    _dashboard notes and figures saved with the study for optuna-dashboard
"""
from __future__ import annotations

from pathlib import Path

from tuner.report._terminal import measurement_checks, pareto_table, status_table

__all__ = ["measurement_checks", "pareto_table", "publish_to_dashboard", "status_table", "write_report"]


def publish_to_dashboard(study) -> int:
    """Notes on every finished trial and on the study, and the report's figures, saved for optuna-dashboard."""
    from tuner.report._dashboard import publish

    return publish(study)


def write_report(study, output: Path, fmt: str = "html", recommend: str = "max-throughput") -> list[Path]:
    """Write the study's report; returns the files written (the Markdown report's figures too). Written beside the
    target and renamed into place, so a failed report leaves no half-written file."""
    from tuner.export import write_atomically
    from tuner.report._data import report_data
    from tuner.report._render import render_html, render_markdown

    data = report_data(study, recommend)
    if fmt == "html":
        write_atomically(output, render_html(data))
        return [output]
    figure_dir = output.parent / f"{output.stem}_figures"
    text = render_markdown(data, figure_dir, figure_dir.name)
    write_atomically(output, text)
    return [output, *sorted(figure_dir.glob("*.png"))]
