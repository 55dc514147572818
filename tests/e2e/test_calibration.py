"""Calibrate the memory-fit estimate against real vLLM (CPU build, tiny Llama): the estimated KV capacity must match
the "KV cache size: N tokens" vLLM logs within 2 %, and the predicted fit must agree with vLLM's own kv_capacity
failure on both sides of the boundary. Three short launches (--enforce-eager, ~20 s each), every one torn down."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.capacity.memory_fit import estimate, knobs_from_flags, load_model_shape
from tuner.contracts.hardware import SLICES
from tuner.errors import ServerStartupFailed
from tuner.inputs.spec import Timeouts
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess, live_group_members

pytestmark = pytest.mark.e2e
KV_SIZE = re.compile(r"KV cache size: ([\d,]+) tokens")
TIMEOUTS = Timeouts(startup_s=150, shutdown_grace_s=10, fatal_log_grace_s=3)

# (kv-cache-memory-bytes, max-model-len). With 1 KiB of KV per token and 128-token blocks, 5,000,000 bytes are
# 38 blocks; one is vLLM's null block, so 37 blocks = 4,736 tokens is the longest sequence that fits: the first
# two points sit one token either side of that boundary. The third has a max-model-len that is not a whole
# number of blocks and a cache ten times larger.
POINTS = [(5_000_000, 4736), (5_000_000, 4737), (50_000_000, 1000)]


def launch(vllm_env: dict, tmp_path: Path, memory: int, mml: int) -> tuple[int | None, str | None, str]:
    """Start real vLLM; return (logged KV tokens, failure class, log). Always tears the whole group down."""
    flags = {"--kv-cache-memory-bytes": memory, "--max-model-len": mml, "--enforce-eager": True}
    config = ServerConfig(command=tuple(vllm_env["command"]), model=vllm_env["model"], flags=flags,
                          env=vllm_env["env"])
    server = ServerProcess(config, tmp_path / f"vllm-{memory}-{mml}.log", TIMEOUTS)
    failure = None
    try:
        server.start()
        server.wait_ready()
    except ServerStartupFailed as exc:
        failure = exc.failure_class
    finally:
        pgid = server.pid
        server.stop()
        assert pgid is None or live_group_members(pgid) == [], "a vLLM process outlived its test"
    log = server.log_text()
    match = KV_SIZE.search(log)
    return (int(match.group(1).replace(",", "")) if match else None), failure, log


def test_estimate_matches_real_vllm(vllm_env, tmp_path, capsys):
    shape = load_model_shape(Path(vllm_env["model"]) / "config.json")
    rows = []
    for memory, mml in POINTS:
        knobs = knobs_from_flags({"--kv-cache-memory-bytes": memory, "--max-model-len": mml}, {}, shape)
        est = estimate(shape, SLICES["cpu"], knobs)
        logged, failure, log = launch(vllm_env, tmp_path, memory, mml)
        rows.append((memory, mml, est.kv_capacity_tokens, logged, est.fits, failure))
        if est.fits:
            assert failure is None, f"predicted to fit, vLLM failed ({failure}):\n{log[-2000:]}"
            assert logged is not None, f"no 'KV cache size' line:\n{log[-2000:]}"
            assert abs(est.kv_capacity_tokens - logged) <= 0.02 * logged
        else:
            assert est.predicted_failure == "kv_capacity"
            assert failure == "kv_capacity", f"predicted kv_capacity, vLLM said {failure}:\n{log[-2000:]}"
    with capsys.disabled():
        print("\ncalibration: kv-cache-memory-bytes, max-model-len, estimated tokens, logged tokens, fits, failure")
        for row in rows:
            print("  ", *row)
    # Both sides of the boundary were exercised.
    assert [r[4] for r in rows[:2]] == [True, False]
