"""`python -m tuner.cli` is the `tuner` command."""
from tuner.cli import app

app()
