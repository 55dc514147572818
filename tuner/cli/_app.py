"""The `tuner` app, its consoles and `user_errors`: the only place where errors become one-line messages and exit
codes. Commands register themselves on these apps (tuner/cli/study.py, bench.py, dashboard.py)."""
from __future__ import annotations

import functools
from collections.abc import Callable

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


