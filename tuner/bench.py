"""`tuner bench URL ...`: benchmark any running OpenAI-compatible server with tuner's load generator."""
from __future__ import annotations

import typer


def bench_command(
    url: str = typer.Argument(..., help="Base URL of a running server, e.g. http://127.0.0.1:8000"),
) -> None:
    """Benchmark a running server (not implemented yet)."""
    raise typer.Exit(1)
