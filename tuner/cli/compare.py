"""`tuner compare`: is B (or C, ...) really better than A, and by how much? (tuner.compare)"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tuner.cli._app import app, console, err_console, user_errors
from tuner.errors import InputError

if TYPE_CHECKING:
    from tuner.compare import Comparison

EXIT_MAY_NOT_REPLACE = 1


@app.command("compare")
@user_errors
def compare(
    study_file: Path = typer.Argument(..., help="Study file whose workload, SLOs, sweep, server command and"
                                      " timeouts every side is measured with."),
    a: str = typer.Argument(..., help="A, what runs today: a config YAML (as `tuner study export` writes), a trial"
                            " (N or STUDY:N, in the study's storage), or a quoted `vllm serve MODEL --flags` line."),
    candidates: list[str] = typer.Argument(..., help="B, the candidate (and C, D, ... to compare several with A):"
                                           " the same forms as A."),
    launches: int = typer.Option(2, "--launches", min=1, max=20, help="Launches per side, alternating A B B A ..."
                                 " (A B C C B A ... for three; 2 or more give intervals; more decide smaller"
                                 " differences)."),
    output_format: str = typer.Option("table", "--format", help="table (terminal) or md (Markdown, for a pull"
                                      " request)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the verdicts as JSON (for CI): one"
                                          " object for B, or {\"comparisons\": [...]} with several candidates."),
    out_dir: Path | None = typer.Option(None, "--out", help="Where the launches' server logs go (default"
                                        " compare-runs/<time>); it names the comparison study the launches are"
                                        " stored in, so given again after an interruption, the launches already"
                                        " stored are kept."),
    server_command_a: str | None = typer.Option(None, "--server-command-a", help="A's server command instead of"
                                                " the study's (e.g. another vLLM environment)."),
    server_command_b: str | None = typer.Option(None, "--server-command-b", help="B's server command instead of"
                                                " the study's: the same flags across vLLM versions (C, D, ... run"
                                                " the study's)."),
) -> None:
    """Launch A and B (and C, ...) alternately on this slice with the study's workload and print, per metric, each
    candidate against A with a 95 % interval and a verdict (IMPROVED, REGRESSION, WITHIN NOISE). Exit 0 when a
    candidate may replace A (the rank objective IMPROVED, no SLO, success, stability or quality REGRESSION), 1 when
    none may, 2 for bad input."""
    import optuna

    from tuner.compare import compare_launches, open_store, resolve_side, run_compare
    from tuner.compare.store import SIDE_NAMES
    from tuner.inputs.spec import load_study
    from tuner.study.storage import redact_url

    if output_format not in ("table", "md"):
        raise InputError("--format", output_format, "table or md")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tuner says which study it stores the launches in
    study = load_study(study_file)
    if len(candidates) > len(SIDE_NAMES) - 1:
        raise InputError("tuner compare", "candidates", f"at most {len(SIDE_NAMES) - 1} candidates beside A")
    sides = (resolve_side(a, study, server_command_a),
             *(resolve_side(text, study, server_command_b if n == 0 else None) for n, text in enumerate(candidates)))
    out = out_dir or Path("compare-runs") / time.strftime("%Y%m%d-%H%M%S")
    store = open_store(study, tuple(side.label for side in sides), out)
    err_console.print(f"comparison {store.name} in {redact_url(study.spec.storage)} (every launch stored as it ends;"
                      " `tuner dashboard` shows it)", highlight=False)
    run = run_compare(study, sides, launches, store, out,
                      on_event=lambda line: err_console.print(line, highlight=False))
    goals, quality = study.spec.goals(), run.quality_check(study.spec.quality.tolerance)
    comparisons = [compare_launches(sides[0].label, side.label, run.results[0], run.results[k], goals, quality,
                                    b_name=SIDE_NAMES[k]) for k, side in enumerate(sides) if k > 0]
    store.write_verdict("\n".join(c.markdown() for c in comparisons))
    for comparison in comparisons:
        if output_format == "md":
            typer.echo(comparison.markdown())
        else:
            _print_table(comparison)
    if json_path is not None:
        doc = comparisons[0].as_dict() if len(comparisons) == 1 else {"comparisons": [c.as_dict() for c in comparisons]}
        json_path.write_text(json.dumps(doc, indent=2, default=str))
    err_console.print(f"launches: comparison {store.name} (`tuner dashboard --storage"
                      f" {redact_url(study.spec.storage)}`); server logs: {out}", highlight=False)
    if not any(comparison.may_replace for comparison in comparisons):
        raise typer.Exit(EXIT_MAY_NOT_REPLACE)


def _print_table(comparison: Comparison) -> None:
    from rich.table import Table

    from tuner.compare.verdict import header

    b = comparison.b_name
    versions = f"; vLLM {comparison.versions[0]} vs {comparison.versions[1]}" if any(comparison.versions) else ""
    table = Table(title=f"{b} vs A: {comparison.launches[0]} and {comparison.launches[1]} launches, machine noise"
                        f" {comparison.noise:.1%}{versions}")
    for name in header(b):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for row in comparison.rows():
        table.add_row(*row)
    console.print(f"A: {comparison.a_label}\n{b}: {comparison.b_label}", highlight=False)
    console.print(table)
    console.print(comparison.summary(), highlight=False)
