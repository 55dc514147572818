"""`tuner study ...`: run, inspect, plan, measure and export studies. Library code lives in the stage modules; this
module parses options, calls them and prints."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tuner.cli._app import EXIT_INTERRUPTED, StorageOption, console, err_console, study_app, user_errors
from tuner.errors import InputError
from tuner.report.matrix import SEED_CONCURRENCY, SEED_INPUT_LENS, SEED_OUTPUT_LENS

if TYPE_CHECKING:
    from tuner.contracts.matrix import MatrixPoint
    from tuner.contracts.sampling import Sampling
    from tuner.inputs.spec import Study
    from tuner.report.matrix import MatrixRow
    from tuner.study.api import PreparedStudy


@study_app.command("start")
@user_errors
def study_start(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Total trials of the study (default: the study file's)."),
    storage: str | None = typer.Option(None, "--storage", help="Storage URL (default: the study file's).",
                                          envvar="TUNER_STORAGE"),
    name: str | None = typer.Option(None, "--name", help="Study name in storage (default: the study file's)."),
    ray_address: str | None = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Existing Ray cluster (default: start a local one)."),
) -> None:
    """Run (or continue) a study: every trial launches vLLM with proposed flags and measures it."""
    import optuna

    from tuner import study as studies
    from tuner.report import pareto_table, publish_to_dashboard, status_table
    from tuner.report.progress import ProgressDisplay

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prepared = studies.prepare(study_file, trials=trials, storage=storage, name=name)
    _print_start(prepared)
    try:
        with ProgressDisplay(console) as progress:
            optuna_study = studies.run(prepared, on_progress=progress, ray_address=ray_address,
                                       on_finish=[publish_to_dashboard])  # notes and plots for `tuner dashboard`
    except KeyboardInterrupt:
        err_console.print("interrupted: running trials stopped and re-queued; run the same command to continue")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(status_table(optuna_study))
    console.print(pareto_table(optuna_study))


def _print_start(prepared: PreparedStudy) -> None:
    spec = prepared.study.spec
    console.print(f"study [bold]{prepared.name}[/] in {prepared.storage_url}: {prepared.trials} trials,"
                  f" {spec.parallel} in parallel, each reserving {spec.resources}", highlight=False)
    choice = prepared.sampler
    # markup=False: the reason names `tuner[gp]`, which rich would read as a markup tag and drop.
    console.print(f"sampler: {choice.name}" + (f" ({choice.reason})" if choice.reason else ""), highlight=False,
                  markup=False)
    if prepared.warm and spec.warm_start is not None:
        console.print(f"warm start: {len(prepared.warm)} finished trials of study {spec.warm_start.study} seed the"
                      " sampler (marked warm_start_from; never launches or front configs of this study)",
                      highlight=False)
    for note in prepared.notes:
        console.print(note, highlight=False, markup=False)
    if prepared.surface is not None:
        console.print(f"REPLAY: no server is started; every trial draws a recorded launch from"
                      f" {prepared.surface.label}", highlight=False)


@study_app.command("status")
@user_errors
def study_status(name: str = typer.Argument(..., help="Study name."), storage: str = StorageOption) -> None:
    """Counts of trials by state and failure class, and the best trials so far."""
    from tuner.report import status_table
    from tuner.study import open_study

    console.print(status_table(open_study(name, storage)))


@study_app.command("pareto")
@user_errors
def study_pareto(name: str = typer.Argument(..., help="Study name."), storage: str = StorageOption) -> None:
    """The front: configs no other config beats by more than the machine's noise, with confirmed medians."""
    from tuner.report import pareto_table
    from tuner.study import open_study

    console.print(pareto_table(open_study(name, storage)))


@study_app.command("report")
@user_errors
def study_report(
    name: str = typer.Argument(..., help="Study name."),
    output: Path = typer.Option(..., "-o", "--output", help="report.html (one file, opens offline) or report.md."),
    fmt: str | None = typer.Option(None, "--format", help="html or md (default: from the output's suffix). md"
                                      " writes PNG figures into <name>_figures/ beside it (drawn with Chromium)."),
    trial: str = typer.Option("max-throughput", "--trial", help="The recommended config: a trial number,"
                              " max-throughput or max-stability (as `study export`)."),
    storage: str = StorageOption,
) -> None:
    """The study as a report a person decides from: the front, the baseline/peak/balanced trade-off, load curves,
    failures, search progress, parameter importance and the recommended config's YAML, built from storage alone."""
    from tuner.report import write_report
    from tuner.study import open_study

    chosen_format = fmt or ("md" if output.suffix.lower() in (".md", ".markdown") else "html")
    if chosen_format not in ("html", "md"):
        raise InputError("--format", "", f"expected html or md, got {chosen_format!r}")
    written = write_report(open_study(name, storage), output, chosen_format, trial)
    extra = f" and {len(written) - 1} figures in {written[1].parent}" if len(written) > 1 else ""
    console.print(f"report of {name} written to {output}{extra}", highlight=False)


@study_app.command("export")
@user_errors
def study_export(
    name: str = typer.Argument(..., help="Study name."),
    trial: str = typer.Option("max-throughput", "--trial", help="Trial number, max-throughput or max-stability."),
    output: Path = typer.Option(..., "-o", "--output", help="YAML file for `vllm serve --config`."),
    env_file: Path | None = typer.Option(None, "--env-file", help="Also write the trial's env vars here."),
    storage: str = StorageOption,
) -> None:
    """Write a trial's configuration as YAML that `vllm serve --config FILE` accepts as is."""
    from tuner.report.export import launch_command, render_config, render_env_file, select_trial, write_atomically
    from tuner.study import open_study

    optuna_study = open_study(name, storage)
    chosen = select_trial(optuna_study, trial)
    config_text = render_config(optuna_study, chosen)
    env_text = render_env_file(chosen) if env_file else None
    write_atomically(output, config_text)
    if env_file and env_text is not None:
        write_atomically(env_file, env_text)
    console.print(f"trial {chosen.number} written to {output}" + (f" and {env_file}" if env_file else ""),
                  highlight=False)
    console.print(f"start it with: {launch_command(optuna_study, output, env_file)}", highlight=False, soft_wrap=True)


@study_app.command("new")
@user_errors
def new_command(
    from_command: str | None = typer.Option(None, "--from-command", help="Your current `vllm serve MODEL --flag"
                                            " value ...` line (quoted), or @FILE holding it: its model, fixed flags"
                                            " and knob values (the first trial, labelled as yours)."),
    model: str | None = typer.Option(None, "--model", help="Or just the model (a hub id or a local folder)."),
    server_command: str | None = typer.Option(None, "--server-command", help="The server's argv before the model"
                                              " and flags (default: your command's, else `vllm serve`), e.g."
                                              " \".venv-vllm/bin/python -m vllm.entrypoints.openai.api_server\"."),
    hardware: str | None = typer.Option(None, "--hardware", help="The slice one trial owns: tpu-v6e-4, tpu-v5e-8,"
                                        " gpu-h100-80gb, cpu, ... (default: detected here: a TPU or GPU if one is"
                                        " visible, else cpu)."),
    objective: str = typer.Option("throughput", "--objective", help="throughput, goodput (needs --slo), latency"
                                  " or cost (needs --price-per-slice-hour); stability is always the second."),
    slo: str | None = typer.Option(None, "--slo", help="Limits at the operating point, e.g."
                                   " ttft_p99_ms=500,itl_p99_ms=50."),
    traffic: str = typer.Option("chat", "--traffic", help="chat, long-context (built-in mixes) or a traffic FILE"
                                " (JSONL / CSV, as `load.dataset` reads)."),
    input_len: int | None = typer.Option(None, "--input-len", min=1, help="Fixed prompt tokens instead of a mix."),
    output_len: int | None = typer.Option(None, "--output-len", min=1, help="Fixed output tokens instead of a mix."),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Search trials (default 30, or the budget's)."),
    budget: float | None = typer.Option(None, "--budget", min=0.01, help="Slice-hours for the whole study."),
    confirm: int | None = typer.Option(None, "--confirm", min=0, max=10, help="Relaunches of each front config"
                                       " before export (default 2 on accelerators, 1 on cpu; 0: off)."),
    price: float | None = typer.Option(None, "--price-per-slice-hour", min=0.0, help="For cost figures."),
    model_config: Path | None = typer.Option(None, "--model-config", help="The model's config.json, for a hub"
                                             " model the memory fit cannot read offline."),
    active_params: float | None = typer.Option(None, "--active-params", help="Parameters used per token (MoE)."),
    total_params: float | None = typer.Option(None, "--total-params", help="All parameters (MoE)."),
    sampling: str = typer.Option("defaults", "--sampling", help="How your clients sample: 'defaults' (they send"
                                 " none: the server applies the model's generation_config.json), 'greedy', or"
                                 " fields like 'temperature=0.7,top_p=0.95'. Decides whether speculation pays."),
    name: str | None = typer.Option(None, "--name", help="Study name and file name (default: model-hardware)."),
    out_dir: Path = typer.Option(Path("studies"), "-o", "--output-dir", help="Where <name>.yaml and"
                                 " search_spaces/<name>.yaml are written."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Write a study file and its search space from your `vllm serve` command, ready for `tuner study start`."""
    from tuner.inputs.command_line import ServeCommand, parse_serve_command
    from tuner.planning.new_study import NewStudyRequest, detect_hardware, write_new_study

    if (from_command is None) == (model is None):
        raise InputError("tuner study new", "", "give --from-command \"vllm serve MODEL ...\" or --model MODEL (one)")
    if from_command is not None:
        source = "--from-command"
        if from_command.startswith("@"):
            path = Path(from_command[1:])
            if not path.is_file():
                raise InputError("--from-command", from_command, "a file holding your vllm serve command")
            source, from_command = str(path), path.read_text()
        command = parse_serve_command(from_command, source)
    else:
        command = ServeCommand(command=("vllm", "serve"), model=str(model))
    if server_command:
        import dataclasses
        import shlex

        command = dataclasses.replace(command, command=tuple(shlex.split(server_command)))
    if objective not in ("throughput", "goodput", "latency", "cost"):
        raise InputError("--objective", objective, "throughput, goodput, latency or cost")
    request = NewStudyRequest(command=command, hardware=hardware or detect_hardware(), objective=objective,  # type: ignore[arg-type]
                              slo=_parse_slo(slo), traffic=traffic, input_len=input_len, output_len=output_len,
                              trials=trials, budget_slice_hours=budget, confirm=confirm, price_per_slice_hour=price,
                              name=name, model_config=model_config, total_params=total_params,
                              active_params=active_params, sampling=_parse_sampling(sampling))
    study_path, space_path, notes = write_new_study(request, out_dir, force)
    typer.echo(f"wrote {study_path} and {space_path} ({request.hardware})")
    for note in notes:
        typer.echo(note)
    typer.echo(f"next: tuner study plan {study_path}   then: tuner study start {study_path}")


def _parse_sampling(text: str) -> Sampling:
    from tuner.contracts.sampling import parse_sampling

    try:
        return parse_sampling(text)
    except ValueError as exc:
        raise InputError("--sampling", text, str(exc)) from None


def _parse_slo(text: str | None) -> dict[str, float]:
    from tuner.contracts.goals import check_latency_name

    limits: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        try:
            check_latency_name(key.strip())
        except ValueError as exc:
            raise InputError("--slo", item, str(exc)) from None
        try:
            limits[key.strip()] = float(value)
        except ValueError:
            raise InputError("--slo", item, "name=limit in milliseconds, e.g. ttft_p99_ms=500") from None
    return limits


@study_app.command("plan")
@user_errors
def plan_command(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
    trials: int = typer.Option(5, "--trials", min=1, help="How many configs to show (enqueued ones first)."),
    seed: int | None = typer.Option(None, "--seed", help="Sampler seed (default: the study's)."),
) -> None:
    """Print the exact argv and env of the first N configs with memory-fit estimates; launches nothing."""
    import optuna

    from tuner.inputs.spec import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(study_file)
    from tuner.planning.prelaunch import check_server_inputs, model_context, plan_configs
    from tuner.planning.study_plan import render_plan

    notes = check_server_inputs(study)  # a flag the installed server does not know: exit 2 here too
    planned = plan_configs(study, trials, seed)
    typer.echo(render_plan(study, planned, model_context(study)))
    for note in notes:
        typer.echo(note)
    if study.spec.quality.enabled:
        from tuner.trial.probes import study_probe_set

        probes = study_probe_set(study)
        typer.echo(f"\nquality guard: reference {study.spec.quality_reference()}, tolerance"
                   f" {study.spec.quality.tolerance}; {len(probes)} probes, each launch answers those within its"
                   f" --max-model-len: " + ", ".join(f"{p.name}" for p in probes))


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(option, "", f"expected comma-separated positive integers, got {text!r}")
    return values


@study_app.command("matrix")
@user_errors
def matrix_command(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
    trial: str = typer.Option("max-throughput", "--trial", help="Trial number, max-throughput or max-stability."),
    output_dir: Path = typer.Option(Path("."), "-o", "--output-dir", help="Where matrix_benchmark_*.csv/json go."),
    storage: str | None = typer.Option(None, "--storage", envvar="TUNER_STORAGE",
                                          help="Storage URL (default: the study file's)."),
    concurrency: str = typer.Option(",".join(map(str, SEED_CONCURRENCY)), "--concurrency",
                                    help="Concurrent streams of the grid, comma-separated."),
    input_lens: str = typer.Option(",".join(map(str, SEED_INPUT_LENS)), "--input-lens",
                                   help="Prompt lengths of the grid in tokens, comma-separated."),
    output_lens: str = typer.Option(",".join(map(str, SEED_OUTPUT_LENS)), "--output-lens",
                                    help="Output lengths of the grid in tokens, comma-separated."),
    requests_per_point: int | None = typer.Option(
        None, "--requests-per-point", min=1, help="Requests per point (default: 4 x concurrency, at least 16)."),
) -> None:
    """Launch a trial's config once and measure concurrency x input x output (the seed's 144-point grid by default)."""
    import optuna

    from tuner.inputs.spec import load_study
    from tuner.report.export import select_trial
    from tuner.report.matrix import seed_grid
    from tuner.study import open_study
    from tuner.study.records import write_matrix

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(study_file)
    points = seed_grid(_ints(concurrency, "--concurrency"), _ints(input_lens, "--input-lens"),
                       _ints(output_lens, "--output-lens"))
    optuna_study = open_study(study.spec.name, storage or study.spec.storage)
    chosen = select_trial(optuna_study, trial)
    files = _measure_matrix(study, dict(chosen.record.params), points, output_dir,
                            f"{study.spec.name}-trial-{chosen.number}", requests_per_point)
    # Kept with the study too, so `tuner study report` draws it from storage alone.
    write_matrix(optuna_study, chosen.number, [r.model_dump() for r in files.rows])
    measured = len(files.rows)
    if files.failure:
        err_console.print(f"trial {chosen.number}'s relaunch failed after {measured} points: {files.failure}",
                          highlight=False, markup=False)
    left = len(points) - measured
    skipped = f" ({left} not measured: longer than max-model-len or after the failure)" if left else ""
    typer.echo(f"trial {chosen.number}: {measured} points{skipped} written to {files.csv_path} and {files.json_path}")
    if files.failure:
        raise typer.Exit(1)


@study_app.command("summary")
@user_errors
def summary_command(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
    storage: str | None = typer.Option(None, "--storage", envvar="TUNER_STORAGE",
                                          help="Storage URL (default: the study file's)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Also write the Markdown table here."),
) -> None:
    """The enqueued seed configs next to the best configs found, as a Markdown table."""
    import optuna

    from tuner.inputs.spec import load_study
    from tuner.report.matrix import render_summary, summary_rows
    from tuner.study import open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(study_file)
    table = render_summary(summary_rows(open_study(study.spec.name, storage or study.spec.storage),
                                        study.spec))
    typer.echo(table)
    if output is not None:
        output.write_text(table + "\n")


@dataclass(frozen=True)
class MatrixFiles:
    csv_path: Path
    json_path: Path
    rows: list[MatrixRow]
    failure: str = ""  # "died_under_load: ...": the launch failed; the rows are the points measured before it


def _measure_matrix(study: Study, params: dict[str, Any], points: Sequence[MatrixPoint], out_dir: Path, name: str,
                     requests_per_point: int | None = None, log_path: Path | None = None) -> MatrixFiles:
    """Launch one configuration of the study (e.g. the best trial's params), measure the matrix, tear it down."""
    from tuner.contracts.serving import ServingFlags
    from tuner.report.matrix import row_from_level, write_matrix
    from tuner.server.config import build_server_config
    from tuner.trial.matrix import run_matrix_launch

    spec = study.spec
    config = build_server_config(spec, study.space, params)
    # A point whose prompt plus output exceeds the config's max-model-len would only measure HTTP 400s: skip it.
    mml = ServingFlags.of(config.flags).max_model_len
    runnable = [p for p in points if mml is None or p.input_len + p.output_len <= mml]
    skipped = [p for p in points if p not in runnable]
    log = log_path or out_dir / f"matrix_benchmark_{name}.server.log"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    outcome, measured = run_matrix_launch(config, runnable, spec.load, spec.timeouts, str(log),
                                          host=spec.server.host, requests_per_point=requests_per_point)
    result = outcome.result
    failure = f"{result.failure_class}: {result.failure_detail}" if result.failure_class else ""
    rows = [row_from_level(point, level) for point, level in measured]
    meta = {"study": spec.name, "model": spec.model, "params": params, "argv": result.argv, "env": result.env,
            "started_at": started, "startup": result.startup, "points": len(runnable),
            "skipped_longer_than_max_model_len": [asdict(p) for p in skipped],
            "failure_class": result.failure_class, "failure_detail": result.failure_detail}
    csv_path, json_path = write_matrix(rows, out_dir, name, meta)
    return MatrixFiles(csv_path, json_path, rows, failure)
