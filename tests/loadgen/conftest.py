"""The scheduled test server as a fixture factory: each server is a subprocess stopped (by PID) at teardown."""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest

# Loaded by path: tests/ is not a package (rootdir-relative imports would depend on how pytest is invoked).
_spec = importlib.util.spec_from_file_location("scheduled_server", Path(__file__).parents[1] / "fakes" / "scheduled_server.py")
scheduled = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(scheduled)  # type: ignore[union-attr]
launch = scheduled.launch


@pytest.fixture
def scheduled_server():
    stack = contextlib.ExitStack()

    def start(**options) -> str:
        return stack.enter_context(launch(**options))

    with stack:
        yield start
