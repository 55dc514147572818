"""Capacity: can tuner's load generator outrun `vllm bench serve`? Run by hand: .venv/bin/python benchmarks/loadgen_capacity.py

Against benchmarks/instant_sse_server.py (answers every request at once with max_tokens one-token events),
2,000 requests x 256 output tokens at 256 streams, so the clients' own per-token cost is what is measured. Both
clients run in the same run on the same machine, alternately, ROUNDS times each; the medians are compared.
Goal (issue 3): output tok/s >= 1.5x vllm bench serve's, and mean TTFT (all of it added by the client, as the
server answers at once) <= half of vllm bench serve's.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TUNER_PY, free_port, run_tuner_bench, run_vllm_bench, server

PROMPTS, OUTPUT_LEN, INPUT_LEN, STREAMS = 2000, 256, 32, 256
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def main() -> None:
    port = free_port()
    instant = str(Path(__file__).resolve().parent / "instant_sse_server.py")
    rows: dict[str, list[tuple[float, float]]] = {"vllm bench serve": [], "tuner (1 process)": [],
                                                   "tuner (--workers 2)": []}
    with server([TUNER_PY, instant, str(port)], port) as url:
        for _ in range(ROUNDS):
            v = run_vllm_bench(url, INPUT_LEN, OUTPUT_LEN, PROMPTS, STREAMS)
            rows["vllm bench serve"].append((v["output_throughput"], v["mean_ttft_ms"]))
            t = run_tuner_bench(url, INPUT_LEN, OUTPUT_LEN, PROMPTS, STREAMS, workers="1")
            assert t["completed"] == PROMPTS, t["errors"]
            rows["tuner (1 process)"].append((t["output_throughput"], t["ttft_ms"]["mean"]))
            t2 = run_tuner_bench(url, INPUT_LEN, OUTPUT_LEN, PROMPTS, STREAMS, workers="2")
            rows["tuner (--workers 2)"].append((t2["output_throughput"], t2["ttft_ms"]["mean"]))
    print(f"{PROMPTS} requests x {OUTPUT_LEN} tokens at {STREAMS} streams against instant_sse_server.py, "
          f"{ROUNDS} alternating rounds (median)")
    ref_tps = statistics.median(r[0] for r in rows["vllm bench serve"])
    ref_ttft = statistics.median(r[1] for r in rows["vllm bench serve"])
    print(f"{'client':<22}{'output tok/s':>14}{'mean TTFT ms':>14}{'tok/s ratio':>13}{'TTFT ratio':>12}   runs")
    for name, values in rows.items():
        tps = statistics.median(v[0] for v in values)
        ttft = statistics.median(v[1] for v in values)
        runs = ", ".join(f"{a:,.0f}/{b:.0f}" for a, b in values)
        print(f"{name:<22}{tps:>14,.0f}{ttft:>14.1f}{tps / ref_tps:>12.2f}x{ttft / ref_ttft:>11.2f}x   {runs}")
    tps = statistics.median(v[0] for v in rows["tuner (1 process)"])
    ttft = statistics.median(v[1] for v in rows["tuner (1 process)"])
    ok = tps >= 1.5 * ref_tps and ttft <= 0.5 * ref_ttft
    print(f"goal (1 process): tok/s >= 1.5x and TTFT <= 0.5x vllm bench serve: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
