"""What a person reads and takes away: tables, the study report, the dashboard notes, the exported config.

    progress   the live display of a running study (rich on a terminal, one line per event otherwise)
    _terminal  rich tables for `tuner study status` and `tuner study pareto`
    _data      what a report shows, as pandas tables read from storage alone
    _figures   the plots (Plotly), shared by the HTML and Markdown reports and the dashboard
    _render    the HTML (self-contained, offline) and Markdown (PNG figures beside it) reports
    _dashboard notes and figures saved with the study for optuna-dashboard
    matrix     `tuner study matrix` (concurrency x input x output against one launch) and `tuner study summary`
    export     a confirmed config -> `vllm serve --config` YAML (+ env file), written atomically

Importing one module (export, say) loads none of the others: the names below are loaded on first use.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import optuna

_TABLES = {"measurement_checks", "pareto_table", "status_table"}
__all__ = ["measurement_checks", "pareto_table", "publish_to_dashboard", "status_table", "write_report"]


def __getattr__(name: str) -> Any:
    if name not in _TABLES:
        raise AttributeError(f"module 'tuner.report' has no attribute {name!r}")
    return getattr(importlib.import_module("tuner.report._terminal"), name)


def publish_to_dashboard(study: optuna.Study) -> int:
    """Notes on every finished trial and on the study, and the report's figures, saved for optuna-dashboard."""
    from tuner.report._dashboard import publish

    return publish(study)


def write_report(study: optuna.Study, output: Path, fmt: str = "html", recommend: str = "max-throughput") -> list[Path]:
    """Write the study's report; returns the files written (the Markdown report's figures too). Written beside the
    target and renamed into place, so a failed report leaves no half-written file."""
    from tuner.report._data import report_data
    from tuner.report._render import render_html, render_markdown
    from tuner.report.export import write_atomically

    data = report_data(study, recommend)
    if fmt == "html":
        write_atomically(output, render_html(data))
        return [output]
    figure_dir = output.parent / f"{output.stem}_figures"
    text = render_markdown(data, figure_dir, figure_dir.name)
    write_atomically(output, text)
    return [output, *sorted(figure_dir.glob("*.png"))]
