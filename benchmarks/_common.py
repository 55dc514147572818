"""Shared helpers of the load-generator benchmarks: servers and both clients as subprocesses of this script."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNER_PY = str(ROOT / ".venv" / "bin" / "python")
VLLM_PY = str(ROOT / ".venv-vllm" / "bin" / "python")
TINY_MODEL = str(ROOT / ".models" / "tiny-llama")

# Drives vllm.benchmarks.serve's own argument parser and main(), as `vllm bench serve` would.
VLLM_DRIVER = """
import argparse, sys
from vllm.benchmarks.serve import add_cli_args, main
p = argparse.ArgumentParser(); add_cli_args(p)
main(p.parse_args(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(argv: list[str], port: int):
    """Start a server process in its own session; always stop it (by its PID, whole group) afterwards."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server {argv} did not listen on {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def run_vllm_bench(url: str, input_len: int, output_len: int, prompts: int, concurrency: int) -> dict:
    return run_vllm_bench_dataset(url, ["--dataset-name", "random", "--random-input-len", str(input_len),
                                        "--random-output-len", str(output_len), "--served-model-name", "m"],
                                  prompts, concurrency)


def run_vllm_bench_dataset(url: str, dataset_args: list[str], prompts: int, concurrency: int) -> dict:
    """`vllm bench serve` with any dataset options (and any other of its options: sampling, warm-ups); its saved
    JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [VLLM_PY, "-c", VLLM_DRIVER, "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
                *dataset_args, "--num-prompts", str(prompts), "--max-concurrency", str(concurrency),
                "--ready-check-timeout-sec", "0", "--tokenizer", TINY_MODEL, "--model", TINY_MODEL,
                "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
                "--metric-percentiles", "50,90,99", "--save-result", "--result-dir", tmp,
                "--result-filename", "vllm.json", "--disable-tqdm"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise RuntimeError("vllm bench serve failed")
        return json.loads((Path(tmp) / "vllm.json").read_text())


def run_tuner_bench(url: str, input_len: int, output_len: int, prompts: int, concurrency: int,
                    workers: str = "auto", extra: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tuner.json"
        argv = [TUNER_PY, "-m", "tuner.cli", "bench", url, "--concurrency", str(concurrency), "--requests",
                str(prompts), "--input-len", str(input_len), "--output-len", str(output_len), "--tokenizer",
                TINY_MODEL, "--model", "m", "--warmup", "0", "--workers", workers, "--no-live", "--json", str(out),
                *(extra or [])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise RuntimeError("tuner bench failed")
        return json.loads(out.read_text())["levels"][0]


# vllm bench serve's option for each sampling field it can send (tuner.contracts.sampling.SAMPLING_FIELDS); a
# per-request seed has no option of its own and goes into --extra-body.
VLLM_BENCH_SAMPLING_FLAGS = {"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k",
                             "min_p": "--min-p", "repetition_penalty": "--repetition-penalty",
                             "presence_penalty": "--presence-penalty", "frequency_penalty": "--frequency-penalty"}


def vllm_bench_sampling_args(params: dict[str, float | int]) -> list[str]:
    """vllm bench serve's options for a study's sampling (`Sampling.params()`: the fields it sets). Nothing set:
    no options, so every request leaves sampling to the server, as a study with no `sampling:` did."""
    argv: list[str] = []
    for name, value in params.items():
        if name == "seed":
            argv += ["--extra-body", json.dumps({"seed": value})]
        elif name in VLLM_BENCH_SAMPLING_FLAGS:
            argv += [VLLM_BENCH_SAMPLING_FLAGS[name], str(value)]
        else:
            raise ValueError(f"vllm bench serve cannot send sampling field {name!r}")
    return argv


def tuner_bench_sampling_arg(params: dict[str, float | int]) -> str:
    """`tuner bench --sampling` for the same sampling: 'defaults' when nothing is set."""
    return ",".join(f"{name}={value}" for name, value in params.items()) or "defaults"


@contextmanager
def pinned(cpus: set[int] | None):
    """Run the block (and every process it starts, which inherits the mask) on `cpus` only, as `taskset -c`
    would; the mask this process had is restored afterwards. None: no pinning."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_list(cpus: set[int]) -> str:
    """"0", "1", "0,2": a set of CPUs as taskset's -c takes it."""
    return ",".join(map(str, sorted(cpus)))
