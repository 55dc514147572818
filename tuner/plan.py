"""`tuner study plan STUDY.yaml`: a dry run that prints the commands and memory estimates of N configs."""
from __future__ import annotations

from pathlib import Path

import typer


def plan_command(
    study_file: Path = typer.Argument(..., help="Study file (studies/*.yaml).", show_default=False),
) -> None:
    """Print the exact argv and env of sampled configs, with memory-fit estimates (not implemented yet)."""
    raise typer.Exit(1)
