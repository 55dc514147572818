"""The load generator against the scheduled test server: accuracy, failures counted, token mismatch flagged,
several client processes merged. Tolerances are wide enough for a busy CI machine, but a TTFT that included the
client's queueing or an ITL computed per request (E2EL / tokens) would fall outside them."""
from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tuner.load import SLO, LevelOptions, LoadPattern, Workload, measure_level
from tuner.load.matrix import MatrixPoint, run_matrix
from tuner.load.runner import SWEEP_METRICS_INTERVAL_S


def run_level(base_url, workload, concurrency, requests, warmup, request_timeout_s, level_timeout_s, repeat=0):
    """A closed-loop level as the trial sweep measures it."""
    return measure_level(base_url, workload, LoadPattern(concurrency=concurrency, requests=requests, warmup=warmup),
                         LevelOptions(request_timeout_s=request_timeout_s, level_timeout_s=level_timeout_s,
                                      metrics_interval_s=SWEEP_METRICS_INTERVAL_S), repeat)

# Loaded by path: tests/ is not a package, and a conftest.py here would shadow tests/conftest.py's module name.
_spec = importlib.util.spec_from_file_location("scheduled_server", Path(__file__).parents[1] / "fakes" / "scheduled_server.py")
_scheduled = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_scheduled)  # type: ignore[union-attr]


@pytest.fixture
def scheduled_server():
    """Factory: scheduled_server(**flags) -> base URL; every server started is stopped (by PID) at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(_scheduled.launch(**options))


T_MS, I_MS, TOKENS = 150.0, 10.0, 32
W = Workload(model="m", input_len=16, output_len=TOKENS, vocab_size=2048)


def test_closed_loop_accuracy_and_contract(scheduled_server):
    url = scheduled_server(ttft_ms=T_MS, itl_ms=I_MS)
    level, records = run_level(url, W, 8, 32, 8, 30.0, 60.0)
    assert level.completed == 32 and level.failed == 0 and len(records) == 32
    assert abs(level.ttft_ms.p50 - T_MS) < 10
    # ITL per event: 10 ms. Per request (E2EL / tokens) it would be (150 + 31 x 10) / 32 = 14.4 ms.
    assert abs(level.itl_ms.p50 - I_MS) < 1.5
    assert abs(level.tpot_ms.p50 - I_MS) < 1.5
    ideal = 8 * TOKENS / ((T_MS + (TOKENS - 1) * I_MS) / 1000)
    assert level.output_throughput == pytest.approx(ideal, rel=0.08)
    assert not level.token_mismatch and level.server is not None and level.server.generation_tokens == 32 * TOKENS
    assert level.client is not None and level.client.achieved_concurrency == pytest.approx(8, rel=0.15)


def test_open_loop_queue_time_is_not_in_ttft(scheduled_server):
    url = scheduled_server(ttft_ms=100, itl_ms=5)
    # 40 req/s with at most 2 in flight, each taking ~255 ms: requests queue in the client for hundreds of ms.
    pattern = LoadPattern(concurrency=2, requests=12, rate=40.0, arrival="constant")
    level, _ = measure_level(url, Workload(model="m", input_len=8, output_len=32, vocab_size=2048), pattern,
                             LevelOptions(request_timeout_s=30, level_timeout_s=60))
    assert level.mode == "open" and level.completed == 12
    assert level.queue_ms.p50 > 200  # the client queue is real and reported ...
    assert abs(level.ttft_ms.p50 - 100) < 15  # ... but not part of TTFT


def test_failed_requests_are_counted_and_stay_in_the_duration(scheduled_server):
    url = scheduled_server(ttft_ms=20, itl_ms=2, fail_every=4, error_every=5)
    level, records = run_level(url, Workload(model="m", input_len=8, output_len=16, vocab_size=2048), 4, 40, 0,
                             30.0, 60.0)
    assert level.requests == 40 and level.completed + level.failed == 40
    assert level.errors.get("http_500") == 10
    assert level.errors.get("error_event", 0) >= 5
    assert level.output_tokens == level.completed * 16
    assert level.duration_s >= max(r.end for r in records) - min(r.start for r in records) - 1e-9
    assert any("requests failed" in w for w in level.warnings)


def test_token_mismatch_with_the_server_is_flagged(scheduled_server):
    url = scheduled_server(ttft_ms=5, itl_ms=1, metrics_scale=0.95)
    level, _ = run_level(url, Workload(model="m", input_len=8, output_len=20, vocab_size=2048), 4, 16, 0, 30.0, 60.0)
    assert level.failed == 0 and level.token_mismatch and not level.reliable
    assert any(w.startswith("token_mismatch") for w in level.warnings)


def test_two_client_processes_merge_exactly(scheduled_server):
    url = scheduled_server(ttft_ms=50, itl_ms=5)
    pattern = LoadPattern(concurrency=8, requests=32, warmup=8)
    level, records = measure_level(url, Workload(model="m", input_len=8, output_len=16, vocab_size=2048, seed=3),
                                   pattern, LevelOptions(workers=2, slo=SLO(ttft_ms=1000), request_timeout_s=30))
    assert level.client.workers == 2 and level.completed == 32 and len(records) == 32
    assert abs(level.ttft_ms.p50 - 50) < 10 and level.goodput == pytest.approx(level.request_throughput)
    assert level.server.generation_tokens == 32 * 16 and not level.token_mismatch


def test_matrix_points_one_server(scheduled_server):
    url = scheduled_server(ttft_ms=5, itl_ms=1)
    seen = []
    levels = run_matrix(url, W, [MatrixPoint(2, 8, 4), MatrixPoint(4, 16, 8)], 8, 1, None,
                        lambda p, lvl: seen.append(p))
    assert [(lv.concurrency, lv.input_len, lv.output_len) for lv in levels] == [(2, 8, 4), (4, 16, 8)]
    assert [lv.output_tokens for lv in levels] == [32, 64] and len(seen) == 2


def test_a_client_in_its_own_session_measures_and_aborts(scheduled_server):
    """Trials run the client in a child process of its own session (own CPU scheduling group, away from Ray's
    daemons); the level's abort event (a thread's, not picklable) still reaches it."""
    url = scheduled_server(ttft_ms=20, itl_ms=2)
    abort = threading.Event()
    options = LevelOptions(own_session=True, abort=abort, request_timeout_s=30)
    level, _ = measure_level(url, W, LoadPattern(concurrency=4, requests=16, warmup=4), options)
    assert level.completed == 16 and level.client.workers == 1 and level.server.generation_tokens == 16 * TOKENS
    abort.set()
    level, _ = measure_level(url, W, LoadPattern(concurrency=4, requests=16), options)
    assert level.completed < 16 and level.errors.get("aborted", 0) > 0


def test_leaving_the_session_makes_a_new_one():
    probe = ("import os; from tuner.load.workers import _leave_session; before = os.getsid(0); _leave_session();"
             " print(before != os.getsid(0) == os.getpid())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
