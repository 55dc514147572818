"""`tuner bench`, the library side: a typed spec of the command's options -> a plan of levels -> measured levels ->
the JSON/CSV documents. The command itself (option parsing, live display) is tuner/cli/bench.py.

The trial sweep of `tuner study` uses the same code (tuner.load). Levels:
  closed loop   one level per --concurrency value (a sweep when several are given)
  open loop     one level per --rate value (req/s; Poisson, gamma or constant arrivals); --concurrency then caps
                the requests in flight
  matrix        several --input-len / --output-len values: every concurrency x input x output point, one server
Metric definitions are `vllm bench serve`'s (docs/bench.md): TTFT = first content event - send; ITL = gaps
between content events; TPOT = (E2EL - TTFT) / (output tokens - 1); E2EL = last content event - send; output
tokens from `usage.completion_tokens`; throughput over first send .. last completion, failures included.

JSON output (--json FILE), schema "tuner.load.bench/1":
    {
      "schema": "tuner.load.bench/1",
      "url": str, "model": str, "started_at": ISO-8601 UTC, "tuner_version": str,
      "workload": {"endpoint", "input_len", "input_len_max", "output_len", "output_len_max", "prefix_len",
                   "prompt_kind" ("ids" | "text" | "words"), "ignore_eos", "seed",
                   "sampling" (the fields sent with every request; {} = the server's defaults)},
      "options": {"requests", "duration_s", "warmup_rounds", "workers", "arrival", "burstiness", "slo",
                  "request_timeout_s", "level_timeout_s"},
      "hardware": str | null, "active_params": float | null,
      "levels": [ LevelResult, ... ]
    }
  Each level (tuner.contracts.results.LevelResult) holds:
    concurrency, mode ("closed" | "open"), request_rate, input_len, output_len, repeat,
    requests, completed, failed, errors {kind: count}, duration_s,
    input_tokens, output_tokens, chunks, output_throughput, total_token_throughput, request_throughput (per s),
    goodput (req/s meeting every SLO, null without SLOs), slo {ttft_ms, tpot_ms, e2el_ms},
    output_throughput_ci: {low, high, relative, samples, method, reason}: the 95 % interval of output_throughput
            (batch means over the steady part; low/high null with the reason when the level is too short),
    ttft_ms, tpot_ms, itl_ms, e2el_ms, queue_ms: each {mean, p50, p90, p99, p99_ci} in milliseconds (p99_ci: order
            statistics; high null when too few requests bound the p99 from above),
    server: deltas of the server's /metrics counters over the level (prompt_tokens, generation_tokens,
            preemptions, requests_succeeded, prefix_cache_queries, prefix_cache_hits, spec_drafts,
            spec_draft_tokens, spec_accepted_tokens) and peaks of its gauges (peak_kv_cache_usage, peak_running,
            peak_waiting); null when the server has no /metrics,
    client: {workers, loop_lag_p50_ms, loop_lag_p99_ms, loop_lag_max_ms, cpu_util_max, requested_concurrency,
             achieved_concurrency, requested_rate, achieved_rate, saturated, reasons},
    token_mismatch (client vs server output tokens > 1% apart),
    plausibility: {hardware, active_params, ceiling_tok_s, compute_share, total_compute_share, compute, decode, off,
                   valid, reason} | null,   (compute and decode: tuner/contracts/results.py ComputeCeiling, DecodeCeiling)
    speculation: {drafts, draft_tokens, accepted_tokens, acceptance_rate, accepted_per_draft, per_position} | null,
    reliable (false when the client saturated, tokens mismatched or the figure is impossible), warnings [str].
CSV output (--csv FILE): one row per level, the same fields flattened with "_" (ttft_ms_p50, server_preemptions,
client_saturated, ...), lists and dicts as JSON text.
Per-request records (--records FILE): JSON lines of tuner.load.RequestRecord (times in seconds).
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tuner import __version__
from tuner.contracts.results import LevelResult
from tuner.contracts.sampling import Sampling, SamplingInForce, ServerDefaults, server_defaults
from tuner.errors import InputError
from tuner.load.matrix import MatrixPoint, grid, workload_for
from tuner.load.request import RequestRecord
from tuner.load.runner import LevelOptions, LoadPattern, measure_level
from tuner.load.stats import SLO
from tuner.load.stopping import StopRule, default_min_requests
from tuner.load.tokenizer import Tokenizer
from tuner.load.workload import Workload

SCHEMA = "tuner.load.bench/1"
Length = tuple[int, "int | None"]  # (low, high) of a drawn range; high None: exactly low


@dataclass
class BenchSpec:
    """What the user asked for, parsed and typed (tuner/cli/bench.py builds it from the options)."""

    url: str
    concurrencies: list[int]
    inputs: list[Length]
    outputs: list[Length]
    requests: int | None = None
    duration_s: float | None = None
    precision: float | None = None  # measure each level to this relative 95 % CI half-width; requests: the cap
    rates: list[float] | None = None
    cap_in_flight: int | None = None  # open loop: --concurrency given with --rate
    model: str | None = None
    tokenizer: Path | None = None
    endpoint: str = "/v1/completions"
    prefix_len: int = 0
    arrival: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: float = 1.0
    warmup_rounds: int = 1
    workers: int | None = None  # None: one client process per 256 streams
    slo: SLO = field(default_factory=lambda: SLO(None, None, None))
    hardware: str | None = None
    active_params: float | None = None
    ignore_eos: bool = True
    prompt_kind: Literal["ids", "text", "words"] | None = None
    seed: int = 0
    request_timeout_s: float = 120.0
    level_timeout_s: float = 600.0
    api_key: str | None = None
    metrics: bool = True
    dataset: Path | None = None  # the user's traffic (tuner.load.dataset); replaces inputs/outputs
    dataset_samples: int | None = None
    sampling: Sampling = field(default_factory=Sampling)  # sent with every request; unset: the server's defaults


@dataclass
class BenchLevel:
    label: str
    workload: Workload
    pattern: LoadPattern
    workers: int


@dataclass
class BenchPlan:
    spec: BenchSpec
    base_url: str
    model: str
    headers: dict[str, str]
    workload: Workload
    prompt_kind: str
    tokenizer: Tokenizer | None
    levels: list[BenchLevel]
    hardware_name: str | None = None
    active_params: float | None = None
    plausibility: Callable[[LevelResult], Any] | None = None
    defaults: ServerDefaults = field(default_factory=ServerDefaults)  # read from --tokenizer's folder, if any

    @property
    def sampling_in_force(self) -> SamplingInForce:
        return SamplingInForce(sent=self.spec.sampling, defaults=self.defaults,
                               per_request=self.workload.own_sampling)

    def options(self, level: BenchLevel) -> LevelOptions:
        s = self.spec
        return LevelOptions(request_timeout_s=s.request_timeout_s, level_timeout_s=s.level_timeout_s,
                            workers=level.workers, slo=s.slo, headers=self.headers, tokenizer=self.tokenizer,
                            metrics=s.metrics, plausibility=self.plausibility)


def plan_bench(spec: BenchSpec) -> BenchPlan:
    """Resolve the model, tokenizer and hardware, and lay out the levels. Asks the server only for its model name
    and, for text prompts, its tokenizer."""
    from tuner.capacity.roofline import roofline_for
    from tuner.contracts.hardware import parse_hardware
    from tuner.load.http import Target

    Target.parse(spec.url)  # a bad URL fails here, before anything is sent
    base_url = spec.url.rstrip("/")
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    model = spec.model or _served_model(base_url, headers)
    folder = spec.tokenizer or (Path(spec.model) if spec.model and Path(spec.model).is_dir() else None)
    vocab, tokenizer = _tokenizer_for(folder, base_url, model, headers, spec.endpoint, spec.prompt_kind)
    hardware = parse_hardware(spec.hardware) if spec.hardware else None
    roofline = roofline_for(hardware, folder, spec.active_params) if hardware else None
    if hardware and roofline is None:
        raise InputError("--active-params", "", "the model's active parameter count (no config.json to read it from)")
    params = roofline.shape.active_params if roofline else None
    (in_lo, in_hi), (out_lo, out_hi) = spec.inputs[0], spec.outputs[0]
    if spec.prefix_len > in_lo:
        raise InputError("--prefix-len", str(spec.prefix_len), f"at most the input length ({in_lo})")
    samples, label = _dataset_samples(spec, tokenizer)
    workload = Workload(model=model, input_len=in_lo, output_len=out_lo, endpoint=spec.endpoint, vocab_size=vocab,
                        seed=spec.seed, input_len_max=in_hi, output_len_max=out_hi, prefix_len=spec.prefix_len,
                        ignore_eos=spec.ignore_eos, prompt_kind=spec.prompt_kind, samples=samples, label=label,
                        sampling=spec.sampling)
    kind = workload.kind(tokenizer)
    if kind == "ids" and not vocab:
        raise InputError("--prompt", "ids", "a vocabulary size: give --tokenizer DIR (config.json or tokenizer.json)")
    plausibility = roofline.check if roofline else None
    return BenchPlan(spec, base_url, model, headers, workload, kind, tokenizer, _levels(spec, workload),
                     hardware.name if hardware else None, params, plausibility,
                     server_defaults(str(folder)) if folder else ServerDefaults())


def _dataset_samples(spec: BenchSpec, tokenizer: Tokenizer | None) -> tuple[tuple, str]:
    if spec.dataset is None:
        return (), ""
    from tuner.load.dataset import load_dataset

    if len(spec.inputs) > 1 or len(spec.outputs) > 1:
        raise InputError("--dataset", str(spec.dataset), "without a matrix of --input-len/--output-len lists")
    count = (lambda text: len(tokenizer.encode(text))) if tokenizer is not None else None
    samples = load_dataset(spec.dataset, limit=spec.dataset_samples, seed=spec.seed, count_tokens=count)
    return samples, spec.dataset.name


def _levels(spec: BenchSpec, workload: Workload) -> list[BenchLevel]:
    return _open_loop_levels(spec, workload) if spec.rates else _closed_loop_levels(spec, workload)


def _open_loop_levels(spec: BenchSpec, workload: Workload) -> list[BenchLevel]:
    """One level per rate; --concurrency, when given, caps the requests in flight."""
    cap = spec.cap_in_flight
    levels = []
    for rate in spec.rates or []:
        requests = spec.requests or max(64, int(rate * (spec.duration_s or 30)))
        pattern = LoadPattern(concurrency=cap, requests=requests, rate=rate, arrival=spec.arrival,
                              burstiness=spec.burstiness, duration_s=spec.duration_s,
                              warmup=spec.warmup_rounds * (cap or 1), stop=_stop_rule(spec, cap or 1, requests))
        levels.append(BenchLevel(f"rate {rate:g}/s", workload, pattern, _workers(spec, cap)))
    return levels


def _stop_rule(spec: BenchSpec, concurrency: int, cap: int) -> StopRule | None:
    """--precision: the level stops once its throughput is known that well (two rounds of streams at least)."""
    if spec.precision is None:
        return None
    return StopRule(precision=spec.precision, min_requests=default_min_requests(concurrency, [], cap))


def _closed_loop_levels(spec: BenchSpec, workload: Workload) -> list[BenchLevel]:
    """One level per concurrency, or per matrix point when several input or output lengths are given."""
    matrix = len(spec.inputs) > 1 or len(spec.outputs) > 1
    points = grid(spec.concurrencies, [i for i, _ in spec.inputs], [o for o, _ in spec.outputs]) if matrix else \
        [MatrixPoint(c, workload.input_len, workload.output_len) for c in spec.concurrencies]
    levels = []
    for p in points:
        label = f"c={p.concurrency}" + (f" in={p.input_len} out={p.output_len}" if matrix else "")
        requests = spec.requests or max(64, 4 * p.concurrency)
        pattern = LoadPattern(concurrency=p.concurrency, requests=requests, duration_s=spec.duration_s,
                              warmup=spec.warmup_rounds * p.concurrency,
                              stop=_stop_rule(spec, p.concurrency, requests))
        # A single shape keeps the workload whole: its length ranges (--input-len A:B) are drawn per request.
        levels.append(BenchLevel(label, workload_for(p, workload) if matrix else workload, pattern,
                                 _workers(spec, p.concurrency)))
    return levels


def _workers(spec: BenchSpec, streams: int | None) -> int:
    if spec.workers is not None:
        return spec.workers
    return max(1, min(os.cpu_count() or 1, -(-(streams or 256) // 256)))


def run_bench(plan: BenchPlan, on_start: Callable[[BenchLevel], None] = lambda level: None,
              on_done: Callable[[BenchLevel, LevelResult, list[RequestRecord]], None] = lambda *a: None
              ) -> list[LevelResult]:
    """Measure the plan's levels in order. Ctrl-C stops after the levels measured so far."""
    levels: list[LevelResult] = []
    try:
        for level in plan.levels:
            on_start(level)
            result, records = measure_level(plan.base_url, level.workload, level.pattern, plan.options(level))
            result.workload = level.workload.describe()
            result.sampling = plan.sampling_in_force
            levels.append(result)
            on_done(level, result, records)
    except KeyboardInterrupt:
        pass
    return levels


def bench_document(plan: BenchPlan, levels: list[LevelResult], started_at: str) -> dict[str, Any]:
    """The JSON document of schema tuner.load.bench/1 (above)."""
    s, w = plan.spec, plan.workload
    return {
        "schema": SCHEMA, "url": plan.base_url, "model": plan.model, "started_at": started_at,
        "tuner_version": __version__,
        "workload": {"description": w.describe(), "dataset": str(s.dataset) if s.dataset else None,
                     "endpoint": w.endpoint, "input_len": w.input_len, "input_len_max": w.input_len_max,
                     "output_len": w.output_len, "output_len_max": w.output_len_max, "prefix_len": w.prefix_len,
                     "prompt_kind": plan.prompt_kind, "ignore_eos": w.ignore_eos, "seed": w.seed,
                     "sampling": w.sampling.params()},
        "options": {"requests": s.requests, "duration_s": s.duration_s, "warmup_rounds": s.warmup_rounds,
                    "workers": "auto" if s.workers is None else str(s.workers),  # as typed: schema unchanged
                    "arrival": s.arrival if s.rates else None, "burstiness": s.burstiness if s.rates else None,
                    "slo": s.slo.as_dict(), "request_timeout_s": s.request_timeout_s,
                    "level_timeout_s": s.level_timeout_s},
        "hardware": plan.hardware_name, "active_params": plan.active_params,
        "levels": [level.model_dump(mode="json") for level in levels],
    }


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_outputs(document: dict[str, Any], json_out: Path | None, csv_out: Path | None) -> None:
    if json_out:
        json_out.write_text(json.dumps(document, indent=2) + "\n")
    if csv_out:
        levels_frame(document["levels"]).to_csv(csv_out, index=False)


def record_lines(records: list[RequestRecord], level_index: int) -> str:
    return "".join(json.dumps({**asdict(r), "level": level_index}) + "\n" for r in records)


def levels_frame(levels: list[dict]):
    """One row per level, nested fields flattened with "_" (the CSV schema)."""
    import pandas as pd

    frame = pd.json_normalize(levels, sep="_")
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return frame


def _served_model(base_url: str, headers: dict[str, str]) -> str:
    from tuner.errors import ServerGone
    from tuner.server.client import server_client

    try:
        with server_client(10.0, headers) as client:
            response = client.get(f"{base_url}/v1/models")
        return str(response.json()["data"][0]["id"])
    except ServerGone as exc:
        raise InputError("URL", base_url, f"a running server that answers ({exc})") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError("--model", "", f"a model name: {base_url}/v1/models did not list one") from None


def _tokenizer_for(folder: Path | None, base_url: str, model: str, headers: dict[str, str], path: str,
                   prompt_kind: str | None):
    """(vocabulary size, tokenizer or None). A tokenizer is only needed for text prompts (chat, --prompt text)."""
    from tuner.errors import ServerGone, TokenizerUnavailable
    from tuner.load.tokenizer import LocalTokenizer, ServerTokenizer, vocab_size_in

    if folder is not None and not folder.is_dir():
        raise InputError("--tokenizer", str(folder), "a folder with tokenizer.json or config.json")
    vocab = vocab_size_in(folder) if folder else None
    needs_text = path.endswith("/chat/completions") or prompt_kind == "text" or (vocab is None and prompt_kind != "words")
    if not needs_text or prompt_kind in ("words", "ids"):
        return vocab, None
    if folder is not None:
        try:
            return vocab, LocalTokenizer(folder)
        except TokenizerUnavailable:
            pass
    try:
        return vocab, ServerTokenizer(base_url, model, headers)
    except ServerGone as exc:
        raise InputError("URL", base_url, f"a running server that answers ({exc})") from None
    except TokenizerUnavailable:
        if prompt_kind == "text":
            raise InputError("--prompt", "text", "a tokenizer: install `tokenizers` or use a server with "
                             "/tokenize and /detokenize") from None
        return vocab, None


