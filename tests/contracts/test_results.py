"""The level vocabulary: warning kinds written and read back (stored lines from before the kinds included)."""
from __future__ import annotations

from tuner.contracts.results import LevelResult, LevelRole, LoadMode, WarningKind, level_warning, warning_kind


def test_a_warning_is_written_as_kind_then_detail_and_read_back():
    line = level_warning(WarningKind.CLIENT_SATURATED, "event loop lag p99 80 ms > 50 ms")
    assert line == "client_saturated: event loop lag p99 80 ms > 50 ms"
    assert warning_kind(line) == WarningKind.CLIENT_SATURATED


def test_lines_stored_before_the_kinds_still_read():
    assert warning_kind("3 of 120 requests failed: {'http_500': 3}") == WarningKind.FAILED_REQUESTS
    assert warning_kind("server counters unavailable: client figures not cross-checked") == (
        WarningKind.COUNTERS_UNAVAILABLE)
    assert warning_kind("server_died: died_under_load during or after this level") == WarningKind.SERVER_DIED
    assert warning_kind("something a future tuner writes") is None


def test_stored_level_roles_and_modes_load_as_their_enums():
    level = LevelResult.model_validate({"concurrency": 4, "requests": 8, "completed": 8, "failed": 0,
                                        "duration_s": 1.0, "phase": "worst_case", "mode": "open"})
    assert level.phase is LevelRole.WORST_CASE and level.mode is LoadMode.OPEN
    assert level.model_dump(mode="json")["phase"] == "worst_case"  # stored as before
