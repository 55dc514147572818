"""Does the CPU server starve the load client, and does running the server at a higher niceness stop it?

    .venv/bin/python benchmarks/server_priority.py [--launches 4] [--levels 3]

On the CPU stand-in the server and tuner's load client share the host's cores; on a TPU or GPU host the server
mostly waits for the accelerator. This script launches the CPU vLLM on the tiny model (make model) alternately at
niceness 0 and at tuner's default (study key server.nice, tuner.inputs.spec.DEFAULT_SERVER_NICE), and measures the same
level each time from a client in a session of its own, as trials do. Beside it, an idle sentinel process in its
own session sleeps 5 ms in a loop and counts how often it waited more than 50 ms for a core: what any process
other than the server sees of the host. Prints per mode: those waits, the client's flagged levels, TTFT p99
(median over levels) and output tok/s (median), then nice-default / nice-0 as ratios.

Measured here (2 cores, 2026-11-28, 4 launches x 3 levels of 128 requests at concurrency 4):
  nice  0: sentinel waited > 50 ms 121 times, 3 of 6 levels flagged, TTFT p99 median 821 ms, 1,237 tok/s
  nice 10: sentinel waited > 50 ms   0 times, 0 of 6 levels flagged, TTFT p99 median  22 ms, 1,339 tok/s
  nice 10 / nice 0: TTFT p99 0.03x, tok/s 1.08x. (TTFT p50 is 17-21 ms in both modes: the p99 at niceness 0 is the
  host's scheduler, not the config. Three of those inflated levels were not even flagged by the lag probe.)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, TINY_MODEL, VLLM_PY, free_port

sys.path.insert(0, str(ROOT))
TRAFFIC = [(32 + (i * 37) % 64, 64 + (i * 53) % 96) for i in range(24)]
SENTINEL = """
import sys, time
waits = 0
while True:
    t = time.perf_counter(); time.sleep(0.005)
    if time.perf_counter() - t - 0.005 > 0.05:
        waits += 1
        print(waits, flush=True)
"""


def measure(url: str, concurrency: int):
    from tuner.load.runner import LevelOptions, LoadPattern, measure_level
    from tuner.load.tokenizer import vocab_size_in
    from tuner.load.workload import Sample, Workload

    workload = Workload(model=TINY_MODEL, input_len=1, output_len=1, vocab_size=vocab_size_in(TINY_MODEL),
                        samples=tuple(Sample(input_len=i, output_len=o) for i, o in TRAFFIC))
    options = LevelOptions(request_timeout_s=60, level_timeout_s=120, own_session=True)
    level, _ = measure_level(url, workload, LoadPattern(concurrency=concurrency, requests=32 * concurrency,
                                                        warmup=concurrency), options)
    return level


def launch(nice: int, levels: int, concurrency: int) -> list[tuple[int, bool, float, float]]:
    """One server launch at `nice`: per level, (sentinel waits > 50 ms, flagged, TTFT p99 ms, tok/s)."""
    from tuner.inputs.spec import Timeouts
    from tuner.server.config import ServerConfig
    from tuner.server.process import ServerProcess

    flags = {"--max-num-seqs": 16, "--max-model-len": 1024, "--kv-cache-memory-bytes": 8388608,
             "--enforce-eager": True}
    config = ServerConfig(command=(VLLM_PY, "-m", "vllm.entrypoints.openai.api_server"), model=TINY_MODEL,
                          flags=flags, env={"HF_HUB_OFFLINE": "1"}, nice=nice)
    log = Path(tempfile.gettempdir()) / "server-priority.log"
    rows = []
    with ServerProcess(config, log, Timeouts(startup_s=300, shutdown_grace_s=10), port=free_port()) as server:
        server.wait_ready()
        for _ in range(levels):
            with tempfile.TemporaryFile("w+") as out:
                sentinel = subprocess.Popen([sys.executable, "-c", SENTINEL], stdout=out, start_new_session=True)
                try:
                    level = measure(server.base_url, concurrency)
                finally:
                    sentinel.kill()  # our own child, by its handle
                    sentinel.wait()
                out.seek(0)
                waits = len(out.read().split())
            rows.append((waits, level.client.saturated, level.ttft_ms.p99 or 0.0, level.output_throughput))
            print(f"  nice {nice:2}: sentinel waits > 50 ms {waits:3}  {'FLAGGED' if rows[-1][1] else 'ok':7}"
                  f"  TTFT p99 {rows[-1][2]:8.1f} ms  {rows[-1][3]:8.1f} tok/s", flush=True)
    return rows


def main() -> int:
    from tuner.inputs.spec import DEFAULT_SERVER_NICE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=4, help="server launches, alternating the two modes")
    parser.add_argument("--levels", type=int, default=3, help="levels per launch")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    modes = (0, DEFAULT_SERVER_NICE)
    rows: dict[int, list] = {m: [] for m in modes}
    for i in range(args.launches):
        nice = modes[i % 2]
        rows[nice] += launch(nice, args.levels, args.concurrency)
    print(f"\n{'nice':>4} {'levels':>6} {'waits>50ms':>10} {'flagged':>8} {'TTFT p99 median ms':>19} {'tok/s median':>13}")
    summary = {}
    for nice in modes:
        r = rows[nice]
        summary[nice] = (sum(x[0] for x in r), sum(x[1] for x in r), statistics.median(x[2] for x in r),
                         statistics.median(x[3] for x in r))
        print(f"{nice:>4} {len(r):>6} {summary[nice][0]:>10} {summary[nice][1]:>8} {summary[nice][2]:>19.1f}"
              f" {summary[nice][3]:>13.1f}")
    base, ours = summary[0], summary[DEFAULT_SERVER_NICE]
    print(f"nice {DEFAULT_SERVER_NICE} / nice 0: TTFT p99 {ours[2] / max(base[2], 1e-9):.2f}x,"
          f" tok/s {ours[3] / max(base[3], 1e-9):.2f}x, sentinel waits {ours[0]} vs {base[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
