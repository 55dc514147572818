"""Does the load client inside a Ray worker keep up, with and without a session of its own?

    .venv/bin/python benchmarks/client_isolation.py [--levels 6] [--concurrency 16] [--max-num-seqs 4]

Starts the CPU vLLM on the tiny model (make model) with requests queueing past --max-num-seqs, then a local Ray
cluster as `tuner study start` does, and measures the same level from inside a Ray task alternately:
  - shared:  the client's event loop in the Ray worker process (it shares the session, hence on Linux the CPU
             scheduling group (autogroup), of raylet, the GCS and every Ray daemon),
  - own:     the client in a child process that called setsid() (what trials do: LevelOptions.own_session).
Prints, per mode, the client's event-loop lag (p99 of a 5 ms timer), how many levels were flagged as
client-saturated (and so could not count), and the median output tok/s; then own / shared as ratios.
Measured here (2 cores, 2026-11-28, 6 levels each): shared flagged 2 of 6 (lag p99 median 8.1 ms, worst 1,436 ms),
own flagged 0 of 6 (lag p99 median 1.4 ms, worst 1.9 ms); own/shared lag 0.17x, tok/s 1.01x. Right after Ray
starts, its daemons are busiest: a client in the driver's session was flagged in 4-5 of 6 levels then.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, TINY_MODEL, VLLM_PY, free_port

TRAFFIC = [(32 + (i * 37) % 64, 64 + (i * 53) % 96) for i in range(24)]


def measure(url: str, own_session: bool, concurrency: int) -> tuple[float, bool, float]:
    from tuner.load.runner import LevelOptions, LoadPattern, measure_level
    from tuner.load.tokenizer import vocab_size_in
    from tuner.load.workload import Sample, Workload

    workload = Workload(model=TINY_MODEL, input_len=1, output_len=1, vocab_size=vocab_size_in(TINY_MODEL),
                        samples=tuple(Sample(input_len=i, output_len=o) for i, o in TRAFFIC))
    options = LevelOptions(request_timeout_s=60, level_timeout_s=120, own_session=own_session)
    level, _ = measure_level(url, workload, LoadPattern(concurrency=concurrency, requests=2 * concurrency,
                                                        warmup=concurrency), options)
    return level.client.loop_lag_p99_ms or 0.0, level.client.saturated, level.output_throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, default=6, help="levels per mode (alternating)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    args = parser.parse_args()

    import ray

    from tuner.inputs.spec import Timeouts
    from tuner.server.config import ServerConfig
    from tuner.server.process import ServerProcess

    command = (VLLM_PY, "-m", "vllm.entrypoints.openai.api_server")
    flags = {"--max-num-seqs": args.max_num_seqs, "--max-model-len": 1024, "--kv-cache-memory-bytes": 8388608,
             "--enforce-eager": True}
    config = ServerConfig(command=command, model=TINY_MODEL, flags=flags,
                          env={"HF_HUB_OFFLINE": "1", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1"})
    log = Path(tempfile.gettempdir()) / "client-isolation-server.log"
    with ServerProcess(config, log, Timeouts(startup_s=300, shutdown_grace_s=10), port=free_port()) as server:
        server.wait_ready()
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        remote = ray.remote(num_cpus=0)(measure)
        rows: dict[bool, list] = {False: [], True: []}
        try:
            for i in range(2 * args.levels):
                own = bool(i % 2)
                rows[own].append(ray.get(remote.remote(server.base_url, own, args.concurrency)))
                lag, saturated, tok_s = rows[own][-1]
                print(f"  {'own   ' if own else 'shared'} lag p99 {lag:8.1f} ms  {'FLAGGED' if saturated else 'ok':7}"
                      f"  {tok_s:8.1f} tok/s", flush=True)
        finally:
            ray.shutdown()
    print(f"\n{'client':<8} {'levels':>6} {'flagged':>8} {'lag p99 median ms':>18} {'tok/s median':>13}")
    summary = {}
    for own, name in ((False, "shared"), (True, "own")):
        lags = [r[0] for r in rows[own]]
        flagged = sum(r[1] for r in rows[own])
        tok = statistics.median(r[2] for r in rows[own])
        summary[own] = (statistics.median(lags), flagged, tok)
        print(f"{name:<8} {len(lags):>6} {flagged:>8} {summary[own][0]:>18.1f} {tok:>13.1f}")
    print(f"own/shared: lag p99 {summary[True][0] / max(summary[False][0], 1e-9):.2f}x, flagged levels"
          f" {summary[True][1]} vs {summary[False][1]}, tok/s {summary[True][2] / max(summary[False][2], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
