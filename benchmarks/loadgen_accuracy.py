"""Accuracy: does tuner's load generator measure a known schedule correctly, at least as well as `vllm bench serve`?

Run by hand: .venv/bin/python benchmarks/loadgen_accuracy.py
Against tests/fakes/scheduled_server.py: first token T = 150 ms after a request arrives, then one every I = 10 ms,
64 tokens. At 8 and at 64 streams both clients measure the same server in the same run. Goals (issue 3): at 8
streams p50 TTFT within 3 ms of T; at 64 streams a p50 TTFT error no larger than vllm bench serve's; p50 ITL within
0.5 ms of I; output throughput within 2% of what the schedule allows: streams x tokens / (T + (tokens - 1) x I).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, TUNER_PY, free_port, run_tuner_bench, run_vllm_bench, server

T_MS, I_MS, TOKENS = 150.0, 10.0, 64
LEVELS = ((8, 96), (64, 384))  # (streams, requests): 12 and 6 rounds of requests per stream


def main() -> None:
    port = free_port()
    script = str(ROOT / "tests" / "fakes" / "scheduled_server.py")
    argv = [TUNER_PY, script, "--port", str(port), "--ttft-ms", str(T_MS), "--itl-ms", str(I_MS)]
    print(f"scheduled server: T={T_MS:g} ms, I={I_MS:g} ms, {TOKENS} tokens per request")
    print(f"{'streams':>7} {'client':<18}{'p50 TTFT':>10}{'err':>7}{'p50 ITL':>9}{'err':>7}{'tok/s':>9}"
          f"{'schedule':>10}{'err':>8}")
    verdicts = []
    with server(argv, port) as url:
        for streams, n in LEVELS:
            ideal = streams * TOKENS / ((T_MS + (TOKENS - 1) * I_MS) / 1000)
            v = run_vllm_bench(url, 32, TOKENS, n, streams)
            t = run_tuner_bench(url, 32, TOKENS, n, streams, workers="1")
            figures = {
                "vllm bench serve": (v["median_ttft_ms"], v["median_itl_ms"], v["output_throughput"]),
                "tuner": (t["ttft_ms"]["p50"], t["itl_ms"]["p50"], t["output_throughput"]),
            }
            for name, (ttft, itl, tps) in figures.items():
                print(f"{streams:>7} {name:<18}{ttft:>10.2f}{ttft - T_MS:>+7.2f}{itl:>9.2f}{itl - I_MS:>+7.2f}"
                      f"{tps:>9.1f}{ideal:>10.1f}{(tps - ideal) / ideal:>+8.2%}")
            ttft_err = abs(figures["tuner"][0] - T_MS)
            ref_err = abs(figures["vllm bench serve"][0] - T_MS)
            if streams == 8:
                verdicts.append((f"8 streams: p50 TTFT within 3 ms ({ttft_err:.2f} ms)", ttft_err <= 3.0))
            else:
                verdicts.append((f"{streams} streams: p50 TTFT error {ttft_err:.2f} ms <= vllm bench serve's "
                                 f"{ref_err:.2f} ms", ttft_err <= ref_err))
            itl_err = abs(figures["tuner"][1] - I_MS)
            verdicts.append((f"{streams} streams: p50 ITL within 0.5 ms ({itl_err:.2f} ms)", itl_err <= 0.5))
            tps_err = abs(figures["tuner"][2] - ideal) / ideal
            verdicts.append((f"{streams} streams: throughput within 2% ({tps_err:.2%})", tps_err <= 0.02))
    for text, ok in verdicts:
        print(f"{'MET    ' if ok else 'NOT MET'} {text}")


if __name__ == "__main__":
    main()
