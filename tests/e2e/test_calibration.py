"""Calibrate the memory-fit estimate against real vLLM (CPU build). Tiny Llama (uniform layers): the estimated KV
capacity must match the "KV cache size: N tokens" vLLM logs within 2 %, and the predicted fit must agree with vLLM's
own kv_capacity failure on both sides of the boundary. Tiny Gemma 4 MoE (the seed's architecture: hybrid
sliding/global attention, K shared with V on the global layer, its config as transformers 5.x writes it): every
estimate equal to vLLM's logged KV tokens, and where vLLM refuses, to the maximum model length it estimates. Short
launches (--enforce-eager, ~20 s each), every one torn down."""
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


def launch(vllm_env: dict, tmp_path: Path, memory: int, mml: int, model: str | None = None,
           extra: dict | None = None) -> tuple[int | None, str | None, str]:
    """Start real vLLM; return (logged KV tokens, failure class, log). Always tears the whole group down."""
    flags = {"--kv-cache-memory-bytes": memory, "--max-model-len": mml, "--enforce-eager": True, **(extra or {})}
    config = ServerConfig(command=tuple(vllm_env["command"]), model=model or vllm_env["model"], flags=flags,
                          env=vllm_env["env"])
    name = "-".join(f"{k.strip('-')}={v}" for k, v in sorted(flags.items()))
    server = ServerProcess(config, tmp_path / f"vllm-{name}.log", TIMEOUTS)
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


# The tiny Gemma 4 at 8 MiB of KV cache: a point that fits (bf16 and fp8) and two that vLLM refuses, one for too long
# a context, one for too many batched tokens (the sliding layers keep window - 1 + batched tokens per request).
GEMMA4_POINTS = [
    {"--max-num-seqs": 16, "--max-model-len": 4096},
    {"--max-num-seqs": 16, "--max-model-len": 8192},
    {"--max-num-seqs": 64, "--max-num-batched-tokens": 8192, "--max-model-len": 4096},
    {"--max-num-seqs": 16, "--max-model-len": 4096, "--kv-cache-dtype": "fp8"},
]
ESTIMATED_MAX = re.compile(r"estimated maximum model length is (\d+)")


@pytest.mark.parametrize("flags", GEMMA4_POINTS, ids=["bf16-4096", "bf16-8192", "batched-8192", "fp8-4096"])
def test_the_gemma4_estimate_equals_what_real_vllm_logs(vllm_env, tmp_path, flags, capsys):
    from tuner.capacity.memory_fit import vllm_estimated_max_model_len

    model = vllm_env["gemma4"]
    shape = load_model_shape(Path(model) / "config.json")
    memory = 8 * 2**20
    knobs = knobs_from_flags({**flags, "--kv-cache-memory-bytes": memory}, {}, shape, SLICES["cpu"])
    est = estimate(shape, SLICES["cpu"], knobs)
    extra = {k: v for k, v in flags.items() if k != "--max-model-len"}
    logged, failure, log = launch(vllm_env, tmp_path, memory, flags["--max-model-len"], model, extra)
    refused = ESTIMATED_MAX.search(log)
    with capsys.disabled():
        print(f"\ngemma4 {flags}: estimate {est.kv_capacity_tokens} tokens, fits {est.fits}; vLLM logged {logged},"
              f" failure {failure}, estimated max {refused.group(1) if refused else None}")
    if est.fits:
        assert failure is None, f"predicted to fit, vLLM failed ({failure}):\n{log[-2000:]}"
        assert logged == est.kv_capacity_tokens, f"vLLM logged {logged}:\n{log[-2000:]}"
    else:
        assert failure == "kv_capacity", f"predicted kv_capacity, vLLM said {failure}:\n{log[-2000:]}"
        assert refused is not None, f"no estimated maximum model length in the log:\n{log[-2000:]}"
        assert int(refused.group(1)) == vllm_estimated_max_model_len(shape, SLICES["cpu"], knobs)
