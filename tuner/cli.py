"""The `tuner` command. The only place where errors become one-line messages and exit codes."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from tuner.errors import InputError, StorageError, TrialNotFound, TunerBug, TunerError

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_STORAGE = "sqlite:///tuner.db"

app = typer.Typer(
    help="Find the best vLLM serving configuration for a model on given hardware.\n\n"
    "Typical use: `tuner study start studies/X.yaml`, then `tuner study pareto X` or `tuner dashboard`, "
    "then `tuner study export X --trial max-throughput -o best.yaml` and `vllm serve --config best.yaml`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
study_app = typer.Typer(help="Run, inspect and export tuning studies.", no_args_is_help=True)
app.add_typer(study_app, name="study")

console = Console()
if not console.is_terminal:  # logs and pipes: wide enough for the Pareto table's parameter columns
    console = Console(width=160)
err_console = Console(stderr=True, soft_wrap=True)

StorageOption = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna storage URL (SQLite file or PostgreSQL).",
                             envvar="TUNER_STORAGE")


def user_errors(fn: Callable) -> Callable:
    """Map tuner's precise exceptions to one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, StorageError, TrialNotFound) as exc:
            err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None
        except TunerBug as exc:
            if exc.traceback:
                err_console.print(exc.traceback.rstrip(), markup=False, highlight=False, soft_wrap=True)
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except TunerError as exc:
            err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@study_app.command("start")
@user_errors
def study_start(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Total trials of the study (default: the study file's)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Storage URL (default: the study file's).",
                                          envvar="TUNER_STORAGE"),
    name: Optional[str] = typer.Option(None, "--name", help="Study name in storage (default: the study file's)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Existing Ray cluster (default: start a local one)."),
) -> None:
    """Run (or continue) a study: every trial launches vLLM with proposed flags and measures it."""
    import optuna

    from tuner.report import pareto_table, status_table
    from tuner.spec import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from tuner.storage import check_storage_url, open_storage

    study = load_study(study_file)
    url = storage or study.spec.storage
    check_storage_url(url, "--storage" if storage else str(study_file), "" if storage else "storage")
    study_name = name or study.spec.name
    total = trials or study.spec.trials

    from tuner.prelaunch import preflight
    from tuner.progress import ProgressDisplay
    from tuner.study import StudyRunner, create_or_load

    preflight(study)  # input errors before anything is written to storage

    optuna_study = create_or_load(study, open_storage(url), study_name)
    console.print(f"study [bold]{study_name}[/] in {url}: {total} trials, {study.spec.parallel} in parallel, "
                  f"each reserving {study.spec.resources}", highlight=False)
    runner = StudyRunner(study, optuna_study, total, ray_address=ray_address)
    try:
        with ProgressDisplay(console) as progress:
            runner.on_progress = progress
            runner.run()
    except KeyboardInterrupt:
        err_console.print("interrupted: running trials stopped and re-queued; run the same command to continue")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(status_table(optuna_study))
    console.print(pareto_table(optuna_study))


@study_app.command("status")
@user_errors
def study_status(name: str = typer.Argument(..., help="Study name."), storage: str = StorageOption) -> None:
    """Counts of trials by state and failure class, and the best trials so far."""
    from tuner.report import status_table
    from tuner.storage import load_existing_study

    console.print(status_table(load_existing_study(storage, name)))


@study_app.command("pareto")
@user_errors
def study_pareto(name: str = typer.Argument(..., help="Study name."), storage: str = StorageOption) -> None:
    """The Pareto-optimal trials: nothing else is both faster and more stable."""
    from tuner.report import pareto_table
    from tuner.storage import load_existing_study

    console.print(pareto_table(load_existing_study(storage, name)))


@study_app.command("export")
@user_errors
def study_export(
    name: str = typer.Argument(..., help="Study name."),
    trial: str = typer.Option("max-throughput", "--trial", help="Trial number, max-throughput or max-stability."),
    output: Path = typer.Option(..., "-o", "--output", help="YAML file for `vllm serve --config`."),
    env_file: Optional[Path] = typer.Option(None, "--env-file", help="Also write the trial's env vars here."),
    storage: str = StorageOption,
) -> None:
    """Write a trial's configuration as YAML that `vllm serve --config FILE` accepts as is."""
    from tuner.export import render_config, render_env_file, select_trial, write_atomically
    from tuner.storage import load_existing_study

    optuna_study = load_existing_study(storage, name)
    chosen = select_trial(optuna_study, trial)
    config_text = render_config(optuna_study, chosen)
    env_text = render_env_file(chosen) if env_file else None
    write_atomically(output, config_text)
    if env_file and env_text is not None:
        write_atomically(env_file, env_text)
    console.print(f"trial {chosen.number} written to {output}" + (f" and {env_file}" if env_file else ""),
                  highlight=False)


@app.command("dashboard")
@user_errors
def dashboard(
    storage: str = StorageOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes it to the network."),
    port: int = typer.Option(8080, "--port"),
    artifacts: Path = typer.Option(Path("tuner-runs/artifacts"), "--artifacts",
                                   help="Artifact directory (server logs, raw per-request records): <runs_dir>/artifacts."),
) -> None:
    """Open optuna-dashboard on the study storage (Pareto front, trial attributes, server logs)."""
    import optuna.artifacts
    import optuna_dashboard

    from tuner.storage import check_storage_url, open_storage

    check_storage_url(storage, "--storage", "")
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts)) if artifacts.is_dir() else None
    console.print(f"optuna-dashboard on http://{host}:{port} (Ctrl-C to stop)")
    optuna_dashboard.run_server(open_storage(storage), host=host, port=port, artifact_store=store)


# Commands that live in their own modules (their heavy imports happen inside the functions).
from tuner.bench import bench_command  # noqa: E402
from tuner.matrix_report import matrix_command, summary_command  # noqa: E402
from tuner.plan import plan_command  # noqa: E402

app.command("bench")(user_errors(bench_command))
study_app.command("plan")(user_errors(plan_command))
study_app.command("matrix")(user_errors(matrix_command))
study_app.command("summary")(user_errors(summary_command))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
