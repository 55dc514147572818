"""How soon a config that dies at the top of its load gets its verdict, with the worst-case phase and without, in
one run on the real CPU vLLM.

    .venv/bin/python benchmarks/worst_case_verdict.py [--study studies/quickstart-cpu.yaml] [--kv-limit 0.9]

The config is the quickstart's "peak guess" (64 sequences, 8 MiB of KV cache), run with the quickstart study's own
sweep plan (c=4, 16, 64 over its chat traffic): once with `load.worst_case: true` (the default: 64 requests at once
at the traffic's longest prompt and output, before the sweep), once with it off. Each launch ends when tuner has
its verdict; the script prints both times and their ratio.

The death is injected, the rest is real. The CPU build of vLLM commits its whole KV cache at startup, so it cannot
run out of memory under load the way an accelerator does when the memory profile passed and the load did not (vLLM
issue #21410). A watchdog stands in for the out-of-memory killer: it reads the server's own
`vllm:kv_cache_usage_perc` every 50 ms and SIGKILLs the engine core once the cache is fuller than `--kv-limit` (a
config whose memory holds only that share of what vLLM allocated). The server, the load, the detection of the death
and its classification (`died_under_load`) are tuner's real path. The ratio compares two launches of one config in
the same run, so the machine's speed cancels out.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.inputs.spec import load_study  # noqa: E402
from tuner.load.server_counters import parse_prometheus  # noqa: E402
from tuner.planning.prelaunch import prompt_vocab_size  # noqa: E402
from tuner.planning.traffic import resolve_traffic, sweep_plan  # noqa: E402
from tuner.server.config import build_server_config  # noqa: E402
from tuner.server.process import ServerProcess, live_group_members  # noqa: E402
from tuner.trial import run_trial  # noqa: E402
from tuner.trial.run import Seam  # noqa: E402

PEAK_GUESS = {"max_num_seqs": 64, "max_num_batched_tokens": 8192, "max_model_len": 4096, "kv_cache_dtype": "auto",
              "spec_method": None}
POLL_S = 0.05


class OutOfMemoryStandIn:
    """Kills the server's engine core once its KV cache is fuller than `limit` (see the module docstring)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.killed_at: float | None = None
        self.peak = 0.0

    def __call__(self, seam: Seam, server: ServerProcess) -> None:
        if seam == Seam.READY:
            threading.Thread(target=self._watch, args=(server,), daemon=True).start()

    def _watch(self, server: ServerProcess) -> None:
        with httpx.Client(timeout=2.0) as client:
            while server.exit_code() is None and self.killed_at is None:
                try:
                    usage = parse_prometheus(client.get(f"{server.base_url}/metrics").text).get(
                        "vllm:kv_cache_usage_perc", 0.0)
                except httpx.HTTPError:
                    usage = 0.0
                self.peak = max(self.peak, usage)
                if usage > self.limit:
                    self._kill_engine(server)
                time.sleep(POLL_S)

    def _kill_engine(self, server: ServerProcess) -> None:
        for pid in live_group_members(server.pid or -1):
            try:
                if b"EngineCore" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    self.killed_at = time.monotonic()
                    return
            except OSError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart-cpu.yaml")
    parser.add_argument("--kv-limit", type=float, default=0.9, help="KV-cache usage at which the engine is killed")
    args = parser.parse_args()
    study = load_study(args.study)
    spec = study.spec
    base = sweep_plan(study, resolve_traffic(study))
    vocab = prompt_vocab_size(study)
    config = build_server_config(spec, study.space, PEAK_GUESS)
    verdicts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for worst_case in (True, False):
            plan = replace(base, load=base.load.model_copy(update={"worst_case": worst_case}))
            killer = OutOfMemoryStandIn(args.kv_limit)
            began = time.monotonic()
            result = run_trial(config, plan, spec.timeouts, f"{tmp}/worst-{worst_case}.log", spec.server.host,
                               vocab, observer=killer).result
            verdict_s = time.monotonic() - began
            label = "worst case first" if worst_case else "sweep only      "
            levels = ", ".join(f"{lv.phase} c={lv.concurrency}" for lv in result.levels)
            print(f"{label}: {result.failure_class or 'survived'} after {verdict_s:6.1f} s (startup"
                  f" {result.startup_s or 0:5.1f} s, after ready {verdict_s - (result.startup_s or 0):6.1f} s;"
                  f" peak KV usage {killer.peak:.0%}); levels: {levels or 'none'}")
            print(f"  {result.failure_detail[:240]}")
            if result.failure_class != "died_under_load":
                print("the stand-in never fired: raise the load or lower --kv-limit")
                return 1
            verdicts[worst_case] = (verdict_s, verdict_s - (result.startup_s or 0))
    (with_s, with_ready), (without_s, without_ready) = verdicts[True], verdicts[False]
    print(f"time to a verdict with the worst case first: {with_s / without_s:.2f}x of the sweep's"
          f" ({with_s:.0f} s vs {without_s:.0f} s); after startup {with_ready / without_ready:.2f}x"
          f" ({with_ready:.0f} s vs {without_ready:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
