"""A MODELLED response surface for the TPU study's space (Gemma 4 26B-A4B on a v6e-4): for comparing search
strategies where no TPU is at hand. Nothing in it was measured; every replayed trial and export says so.

    .venv/bin/python benchmarks/model_surface.py [--launches 3] [--out benchmarks/data/tpu-gemma-modelled-surface.json.gz]

The space is the TPU study's main knobs on a grid (search_spaces/gemma4-26b-a4b-tpu-v6e-4.yaml, categorical here):
max-num-seqs x max-model-len x max-num-batched-tokens x kv-cache-dtype x gpu-memory-utilization.
  - Feasibility: tuner's memory-fit model (tuner.capacity.memory_fit, as `tuner study plan` uses it) for the study's model and
    slice. A config it predicts not to fit fails at startup with the predicted class in every launch. (For this
    MoE model on 4 x 32 GiB every grid point fits: the infeasible region comes from the SLO and the risks below.)
  - Throughput and latency: a toy continuous-batching model over the study's traffic mix (mean 2,848 input and 664
    output tokens): decode slots B = min(concurrency, max-num-seqs, KV tokens / tokens in flight per sequence); a
    step costs a fixed part, a part per sequence and per KV token read (halved by fp8), and the prefill chunk it
    carries (at most max-num-batched-tokens); TTFT is the own prefill in chunks plus the wait for a slot. Its units
    are modelled tok/s: only the shape of the surface matters for a comparison of samplers.
  - Requests longer than max-model-len are rejected (the mix's 8,192-token prompts at 4K and 8K): failed requests.
  - Risk, the seed's "occasional RESOURCE_EXHAUSTED": above 256 sequences, a launch dies under load at its highest
    level with a probability growing with log2(max-num-seqs / 256) and the memory fraction (less with fp8 KV).
  - Noise: each launch draws throughput x lognormal(0, 4 %) and latency x lognormal(0, 10 %) (seeded).
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import itertools
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT

sys.path.insert(0, str(ROOT))
STUDY_FILE = ROOT / "studies" / "gemma4-26b-v6e-4.yaml"
SPACE = {"parameters": {
    "max_num_seqs": {"type": "categorical", "choices": [64, 128, 256, 512, 1024, 2048], "flag": "--max-num-seqs"},
    "max_model_len": {"type": "categorical", "choices": [4096, 8192, 16384, 32768], "flag": "--max-model-len"},
    "max_num_batched_tokens": {"type": "categorical", "choices": [1024, 2048, 4096, 8192],
                               "flag": "--max-num-batched-tokens"},
    "kv_cache_dtype": {"type": "categorical", "choices": ["auto", "fp8"], "flag": "--kv-cache-dtype"},
    "gpu_memory_utilization": {"type": "categorical", "choices": [0.85, 0.95], "flag": "--gpu-memory-utilization"},
}}
CONCURRENCY = [16, 64, 256, 1024]
REQUESTS = 1024
INPUTS = (128, 1024, 2048, 8192)  # the study's matrix: every input with every output, equally likely
OUTPUTS = (16, 128, 256, 512, 1024, 2048)
MEAN_IN, MEAN_OUT = sum(INPUTS) / len(INPUTS), sum(OUTPUTS) / len(OUTPUTS)
MEDIAN_IN = 1536


def rejected_share(max_model_len: int) -> float:
    shapes = list(itertools.product(INPUTS, OUTPUTS))
    return sum(1 for i, o in shapes if i + o > max_model_len) / len(shapes)


def level(c: int, p: dict, kv_tokens: float, rng: random.Random, repeat: int = 0) -> dict:
    from tuner.contracts.results import LatencyStats, LevelResult, ServerCounters

    seqs, chunk = p["max_num_seqs"], p["max_num_batched_tokens"]
    in_flight_tokens = MEAN_IN + MEAN_OUT / 2
    slots = max(1.0, min(c, seqs, kv_tokens / in_flight_tokens))
    kv_read_ms = 2.5e-6 * slots * in_flight_tokens * (0.5 if p["kv_cache_dtype"] == "fp8" else 1.0)
    prefill_per_step = min(chunk, slots * MEAN_IN / MEAN_OUT)  # prefill needed to keep the slots decoding
    step_ms = 9.0 + 0.015 * slots + kv_read_ms + 0.002 * prefill_per_step
    decoded_per_step = min(slots, prefill_per_step * MEAN_OUT / MEAN_IN)
    tok_s = decoded_per_step / step_ms * 1000.0 * math.exp(rng.gauss(0, 0.04))
    per_request_s = MEAN_OUT / max(decoded_per_step / slots, 1e-9) * step_ms / 1000.0
    wait_ms = max(0.0, c / slots - 1.0) * per_request_s * 1000.0 / 2  # the median request waits half the queue
    ttft_p50 = (step_ms * math.ceil(MEDIAN_IN / chunk) * max(1.0, slots * MEAN_IN / MEAN_OUT / chunk) + wait_ms)
    ttft_p50 *= math.exp(rng.gauss(0, 0.10))
    failed = round(REQUESTS * rejected_share(p["max_model_len"]))
    demand = min(c, seqs) * (MEAN_IN + MEAN_OUT)
    preempted = max(0.0, demand / kv_tokens - 1.0) * REQUESTS * 0.2
    completed = REQUESTS - failed
    return LevelResult(
        concurrency=c, repeat=repeat, requests=REQUESTS, completed=completed, failed=failed,
        duration_s=completed * MEAN_OUT / tok_s, output_tokens=int(completed * MEAN_OUT), output_throughput=tok_s,
        request_throughput=tok_s / MEAN_OUT, errors={"http_400": failed} if failed else {},
        ttft_ms=LatencyStats(mean=ttft_p50 * 1.3, p50=ttft_p50, p90=ttft_p50 * 2.0, p99=ttft_p50 * 3.0),
        server=ServerCounters(generation_tokens=completed * MEAN_OUT, preemptions=preempted,
                              peak_kv_cache_usage=min(1.0, demand / kv_tokens)),
        warnings=["MODELLED, NOT MEASURED (benchmarks/model_surface.py)"], phase="sweep",
        workload="modelled: the gemma4 study's 4 x 6 input x output matrix").model_dump(mode="json",
                                                                                   exclude_defaults=True)


def death_probability(p: dict) -> float:
    if p["max_num_seqs"] <= 256:
        return 0.0
    memory = (p["gpu_memory_utilization"] - 0.8) / 0.15
    return min(0.6, 0.15 * math.log2(p["max_num_seqs"] / 256) * memory * (0.6 if p["kv_cache_dtype"] == "fp8" else 1))


def launch(p: dict, est, rng: random.Random, argv: list[str]) -> dict:
    result = {"argv": argv, "env": {}, "failure_class": None, "failure_detail": "", "startup_s": None,
              "levels": []}
    if not est.fits:
        result.update(failure_class=est.predicted_failure, failure_detail=f"modelled: {est.reason}")
        return {"outcome": est.predicted_failure, "values": {}, "result": result}
    kv = float(est.kv_capacity_tokens)
    levels = [level(c, p, kv, rng) for c in CONCURRENCY]
    if rng.random() < death_probability(p):
        levels[-1]["reliable"] = False
        levels[-1]["warnings"].append("server_died: modelled RESOURCE_EXHAUSTED under load")
        result.update(failure_class="died_under_load", failure_detail="modelled: RESOURCE_EXHAUSTED under load")
    else:
        levels.append(level(CONCURRENCY[-1], p, kv, rng, repeat=1))
    result["levels"] = levels
    result["levels_planned"] = len(CONCURRENCY) + 1
    return {"outcome": result["failure_class"] or "measured", "values": {}, "result": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "tpu-gemma-modelled-surface.json.gz")
    args = parser.parse_args()

    from tuner.inputs.spec import load_study
    from tuner.planning.prelaunch import estimate_config, model_context
    from tuner.server.config import ServerConfig

    study = load_study(STUDY_FILE)
    ctx = model_context(study)
    rng = random.Random(args.seed)
    names = list(SPACE["parameters"])
    configs = []
    for values in itertools.product(*(SPACE["parameters"][n]["choices"] for n in names)):
        p = dict(zip(names, values))
        flags = {**study.spec.server.flags, **{SPACE["parameters"][n]["flag"]: v for n, v in p.items()}}
        config = ServerConfig(command=tuple(study.spec.server.command), model=study.spec.model, flags=flags)
        est = estimate_config(ctx, config)
        argv = config.argv("127.0.0.1", 8000)
        configs.append({"params": p, "launches": [launch(p, est, rng, argv) for _ in range(args.launches)]})
    table = {
        "kind": "modelled",
        "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/model_surface.py", *sys.argv[1:]]),
        "host": "none: MODELLED, NOT MEASURED",
        "study": {"objectives": study.spec.objectives, "slo": study.spec.slo, "slo_margin": study.spec.slo_margin,
                  "load": {"concurrency": CONCURRENCY, "requests_per_level": REQUESTS, "repeats": 2}},
        "space": SPACE,
        "configs": configs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table) + "\n"
    args.out.write_bytes(gzip.compress(text.encode(), mtime=0) if args.out.suffix == ".gz" else text.encode())
    failed = sum(1 for c in configs for lv in c["launches"] if lv["result"]["failure_class"])
    print(f"wrote {args.out}: {len(configs)} configs x {args.launches} launches (MODELLED), {failed} failed launches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
