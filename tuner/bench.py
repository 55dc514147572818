"""`tuner bench URL ...`: benchmark any running OpenAI-compatible server with tuner's load generator.

The trial sweep of `tuner study` uses the same code (tuner.loadgen). Levels:
  closed loop   one level per --concurrency value (a sweep when several are given)
  open loop     one level per --rate value (req/s; Poisson, gamma or constant arrivals); --concurrency then caps
                the requests in flight
  matrix        several --input-len / --output-len values: every concurrency x input x output point, one server
Metric definitions are `vllm bench serve`'s (docs/bench.md): TTFT = first content event - send; ITL = gaps
between content events; TPOT = (E2EL - TTFT) / (output tokens - 1); E2EL = last content event - send; output
tokens from `usage.completion_tokens`; throughput over first send .. last completion, failures included.

JSON output (--json FILE), schema "tuner.bench/1":
    {
      "schema": "tuner.bench/1",
      "url": str, "model": str, "started_at": ISO-8601 UTC, "tuner_version": str,
      "workload": {"endpoint", "input_len", "input_len_max", "output_len", "output_len_max", "prefix_len",
                   "prompt_kind" ("ids" | "text" | "words"), "ignore_eos", "seed"},
      "options": {"requests", "duration_s", "warmup_rounds", "workers", "arrival", "burstiness", "slo",
                  "request_timeout_s", "level_timeout_s"},
      "hardware": str | null, "active_params": float | null,
      "levels": [ LevelResult, ... ]
    }
  Each level (tuner.results.LevelResult) holds:
    concurrency, mode ("closed" | "open"), request_rate, input_len, output_len, repeat,
    requests, completed, failed, errors {kind: count}, duration_s,
    input_tokens, output_tokens, chunks, output_throughput, total_token_throughput, request_throughput (per s),
    goodput (req/s meeting every SLO, null without SLOs), slo {ttft_ms, tpot_ms, e2el_ms},
    ttft_ms, tpot_ms, itl_ms, e2el_ms, queue_ms: each {mean, p50, p90, p99} in milliseconds,
    server: deltas of the server's /metrics counters over the level (prompt_tokens, generation_tokens,
            preemptions, requests_succeeded, prefix_cache_queries, prefix_cache_hits, spec_drafts,
            spec_draft_tokens, spec_accepted_tokens) and peaks of its gauges (peak_kv_cache_usage, peak_running,
            peak_waiting); null when the server has no /metrics,
    client: {workers, loop_lag_p50_ms, loop_lag_p99_ms, loop_lag_max_ms, cpu_util_max, requested_concurrency,
             achieved_concurrency, requested_rate, achieved_rate, saturated, reasons},
    token_mismatch (client vs server output tokens > 1% apart),
    plausibility: {hardware, active_params, ceiling_tok_s, compute_share, total_compute_share, valid, reason} | null,
    reliable (false when the client saturated, tokens mismatched or the figure is impossible), warnings [str].
CSV output (--csv FILE): one row per level, the same fields flattened with "_" (ttft_ms_p50, server_preemptions,
client_saturated, ...), lists and dicts as JSON text.
Per-request records (--records FILE): JSON lines of tuner.loadgen.RequestRecord (times in seconds).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from tuner.errors import InputError

SCHEMA = "tuner.bench/1"


def bench_command(
    url: str = typer.Argument(..., help="Base URL of a running server, e.g. http://127.0.0.1:8000"),
    concurrency: str = typer.Option("1", "--concurrency", "-c",
                                    help="Streams per level, comma-separated for a sweep (open loop: cap in flight)."),
    requests: Optional[int] = typer.Option(None, "--requests", "-n", min=1,
                                           help="Requests per level (default: 4 x concurrency, at least 64)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1,
                                             help="End each level after this many seconds (requests then a cap)."),
    input_len: str = typer.Option("128", "--input-len", help="Prompt tokens: N, a range A:B, or a list A,B for a matrix."),
    output_len: str = typer.Option("128", "--output-len", help="Output tokens: N, a range A:B, or a list A,B."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name to request (default: the server's first)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Folder with the model's tokenizer/config."),
    endpoint: str = typer.Option("completions", "--endpoint", help="completions or chat (or a path)."),
    prefix_len: int = typer.Option(0, "--prefix-len", min=0, help="Tokens of a prefix shared by every prompt."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Open loop: requests/s, comma-separated for a sweep."),
    arrival: str = typer.Option("poisson", "--arrival", help="poisson, gamma or constant (open loop)."),
    burstiness: float = typer.Option(1.0, "--burstiness", min=0.01, help="Gamma shape (1 = Poisson)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up rounds of `concurrency` requests, not measured."),
    workers: str = typer.Option("auto", "--workers", help="Client processes: a number, or auto (1 per 256 streams)."),
    slo_ttft_ms: Optional[float] = typer.Option(None, "--slo-ttft-ms", help="Goodput SLO on TTFT."),
    slo_tpot_ms: Optional[float] = typer.Option(None, "--slo-tpot-ms", help="Goodput SLO on TPOT."),
    slo_e2el_ms: Optional[float] = typer.Option(None, "--slo-e2el-ms", help="Goodput SLO on E2E latency."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Chips serving, e.g. v6e-4 or h100x8: checks "
                                           "each level against their compute ceiling."),
    active_params: Optional[float] = typer.Option(None, "--active-params", help="Active parameters per token "
                                                  "(default: from the model folder's config.json)."),
    ignore_eos: bool = typer.Option(True, "--ignore-eos/--no-ignore-eos", help="Exact output lengths."),
    prompt_kind: Optional[str] = typer.Option(None, "--prompt", help="ids, text or words (default: best available)."),
    seed: int = typer.Option(0, "--seed"),
    request_timeout: float = typer.Option(120.0, "--request-timeout", min=0.1),
    level_timeout: float = typer.Option(600.0, "--level-timeout", min=1.0),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY", show_envvar=False,
                                          help="Bearer token (default: $OPENAI_API_KEY)."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Cross-check with the server's /metrics."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON (schema in docs/bench.md)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per level."),
    records_out: Optional[Path] = typer.Option(None, "--records", help="Write every request's record (JSON lines)."),
    live: bool = typer.Option(True, "--live/--no-live", help="Live table on a terminal."),
) -> None:
    """Benchmark a running OpenAI-compatible server (vLLM or any other) like `vllm bench serve`, checked against
    the server's own counters, the client's own health and the hardware's ceiling."""
    import datetime
    import json

    from rich.console import Console

    from tuner import __version__
    from tuner.loadgen.http import Target
    from tuner.loadgen.matrix import MatrixPoint, grid
    from tuner.loadgen.runner import LevelOptions, LoadPattern, measure_level
    from tuner.loadgen.stats import SLO
    from tuner.loadgen.workload import Workload
    from tuner.plausibility import active_params_of, check_level, parse_hardware

    console = Console()
    if not console.is_terminal:  # logs and pipes: one line per level, unwrapped
        console = Console(width=200)
    Target.parse(url)  # fails early, as an InputError, on a bad URL
    base_url = url.rstrip("/")
    concurrencies = _int_list(concurrency, "--concurrency")
    inputs = _lengths(input_len, "--input-len")
    outputs = _lengths(output_len, "--output-len")
    rates = _float_list(rate, "--rate") if rate else None
    if arrival not in ("poisson", "gamma", "constant"):
        raise InputError("--arrival", arrival, "poisson, gamma or constant")
    if prompt_kind not in (None, "ids", "text", "words"):
        raise InputError("--prompt", prompt_kind, "ids, text or words")
    if rates and len(concurrencies) > 1:
        raise InputError("--concurrency", concurrency, "one value with --rate (it caps requests in flight)")
    path = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}.get(endpoint, endpoint)
    if not path.startswith("/"):
        raise InputError("--endpoint", endpoint, "completions, chat, or a path starting with /")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    model_name = model or _served_model(base_url, headers)
    folder = tokenizer or (Path(model) if model and Path(model).is_dir() else None)
    vocab, tok = _tokenizer_for(folder, base_url, model_name, headers, path, prompt_kind)
    hw = parse_hardware(hardware) if hardware else None
    params = active_params or (active_params_of(folder) if folder else None)
    if hw and not params:
        raise InputError("--active-params", "", "the model's active parameter count (no config.json to read it from)")

    (in_lo, in_hi), (out_lo, out_hi) = inputs[0], outputs[0]
    workload = Workload(model=model_name, input_len=in_lo, output_len=out_lo, endpoint=path, vocab_size=vocab,
                        seed=seed, input_len_max=in_hi, output_len_max=out_hi, prefix_len=prefix_len,
                        ignore_eos=ignore_eos, prompt_kind=prompt_kind)  # type: ignore[arg-type]
    if prefix_len > in_lo:
        raise InputError("--prefix-len", str(prefix_len), f"at most the input length ({in_lo})")
    kind = workload.kind(tok)
    if kind == "ids" and not vocab:
        raise InputError("--prompt", "ids", "a vocabulary size: give --tokenizer DIR (config.json or tokenizer.json)")
    slo = SLO(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)
    plausibility = (lambda level: check_level(level, hw, params)) if hw and params else None

    # The plan: (label, workload, pattern) per level.
    plan = []
    if rates:
        cap = concurrencies[0] if concurrency != "1" else None
        for r in rates:
            n = requests or max(64, int(r * (duration or 30)))
            plan.append((f"rate {r:g}/s", workload, LoadPattern(concurrency=cap, requests=n, rate=r, arrival=arrival,  # type: ignore[arg-type]
                                                                 burstiness=burstiness, duration_s=duration,
                                                                 warmup=warmup * (cap or 1))))
    else:
        matrix = len(inputs) > 1 or len(outputs) > 1
        points = grid(concurrencies, [i for i, _ in inputs], [o for o, _ in outputs]) if matrix else \
            [MatrixPoint(c, in_lo, out_lo) for c in concurrencies]
        for p in points:
            w = workload if not matrix else Workload(**{**workload.__dict__, "input_len": p.input_len,
                                                        "output_len": p.output_len, "input_len_max": None,
                                                        "output_len_max": None})
            n = requests or max(64, 4 * p.concurrency)
            label = f"c={p.concurrency}" + (f" in={p.input_len} out={p.output_len}" if matrix else "")
            plan.append((label, w, LoadPattern(concurrency=p.concurrency, requests=n, duration_s=duration,
                                               warmup=warmup * p.concurrency)))

    def n_workers(pattern: LoadPattern) -> int:
        if workers == "auto":
            streams = pattern.concurrency or 256
            return max(1, min(os.cpu_count() or 1, -(-streams // 256)))
        try:
            value = int(workers)
        except ValueError:
            raise InputError("--workers", workers, "a positive number or auto") from None
        if value < 1:
            raise InputError("--workers", workers, "a positive number or auto")
        return value

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    levels = []
    records_file = records_out.open("w") if records_out else None
    display = _Display(console, live and console.is_terminal, len(plan))
    try:
        with display:
            for label, w, pattern in plan:
                display.running(label)
                options = LevelOptions(request_timeout_s=request_timeout, level_timeout_s=level_timeout,
                                       workers=n_workers(pattern), slo=slo, headers=headers, tokenizer=tok,
                                       metrics=metrics, plausibility=plausibility)
                level, recs = measure_level(base_url, w, pattern, options)
                levels.append(level)
                display.done(label, level)
                if records_file:
                    from dataclasses import asdict
                    for rec in recs:
                        records_file.write(json.dumps({**asdict(rec), "level": len(levels) - 1}) + "\n")
    except KeyboardInterrupt:
        console.print("interrupted: writing the levels measured so far")
    finally:
        if records_file:
            records_file.close()

    document = {
        "schema": SCHEMA, "url": base_url, "model": model_name, "started_at": started, "tuner_version": __version__,
        "workload": {"endpoint": path, "input_len": in_lo, "input_len_max": in_hi, "output_len": out_lo,
                     "output_len_max": out_hi, "prefix_len": prefix_len, "prompt_kind": kind,
                     "ignore_eos": ignore_eos, "seed": seed},
        "options": {"requests": requests, "duration_s": duration, "warmup_rounds": warmup, "workers": workers,
                    "arrival": arrival if rates else None, "burstiness": burstiness if rates else None,
                    "slo": slo.as_dict(), "request_timeout_s": request_timeout, "level_timeout_s": level_timeout},
        "hardware": hw.name if hw else None, "active_params": params,
        "levels": [level.model_dump(mode="json") for level in levels],
    }
    if json_out:
        json_out.write_text(json.dumps(document, indent=2) + "\n")
    if csv_out:
        levels_frame(document["levels"]).to_csv(csv_out, index=False)
    if kind == "words":
        console.print("note: no tokenizer: prompts are random words; input lengths are the server's usage counts")
    for level in levels:
        for warning in level.warnings:
            console.print(f"[yellow]warning[/] ({_label_of(level)}): {warning}", highlight=False)


def levels_frame(levels: list[dict]):
    """One row per level, nested fields flattened with "_" (the CSV schema)."""
    import json

    import pandas as pd

    frame = pd.json_normalize(levels, sep="_")
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return frame


def _label_of(level) -> str:
    if level.mode == "open":
        return f"rate {level.request_rate:g}/s"
    return f"c={level.concurrency} in={level.input_len} out={level.output_len}"


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(option, text, "comma-separated positive integers") from None
    if not values or min(values) < 1:
        raise InputError(option, text, "comma-separated positive integers")
    return values


def _float_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(option, text, "comma-separated positive numbers") from None
    if not values or min(values) <= 0:
        raise InputError(option, text, "comma-separated positive numbers")
    return values


def _lengths(text: str, option: str) -> list[tuple[int, int | None]]:
    """'128' -> [(128, None)]; '64:256' -> [(64, 256)]; '128,512' -> [(128, None), (512, None)]."""
    if ":" in text:
        lo, _, hi = text.partition(":")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise InputError(option, text, "N, a range A:B or a list A,B of positive integers") from None
        if not 1 <= a <= b:
            raise InputError(option, text, "a range A:B with 1 <= A <= B")
        return [(a, b if b > a else None)]
    return [(v, None) for v in _int_list(text, option)]


def _served_model(base_url: str, headers: dict[str, str]) -> str:
    import httpx

    try:
        response = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10.0)
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        raise InputError("--model", "", f"a model name: {base_url}/v1/models did not list one") from None


def _tokenizer_for(folder: Path | None, base_url: str, model: str, headers: dict[str, str], path: str,
                   prompt_kind: str | None):
    """(vocabulary size, tokenizer or None). A tokenizer is only needed for text prompts (chat, --prompt text)."""
    from tuner.loadgen.tokenizer import LocalTokenizer, ServerTokenizer, TokenizerUnavailable, vocab_size_in

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
    except TokenizerUnavailable:
        if prompt_kind == "text":
            raise InputError("--prompt", "text", "a tokenizer: install `tokenizers` or use a server with "
                             "/tokenize and /detokenize") from None
        return vocab, None


class _Display:
    """A rich live table of finished levels and the one running (a terminal), else one line per level."""

    def __init__(self, console, live: bool, total: int) -> None:
        from rich.table import Table

        self.console = console
        self.live_enabled = live
        self.total = total
        self.table = Table(title="tuner bench", show_lines=False)
        for col in ("level", "ok/failed", "out tok/s", "TTFT p50/p99 ms", "ITL p50 ms", "TPOT p50 ms", "server tok",
                    "client", "check"):
            self.table.add_column(col, justify="right")
        self.status = ""
        self.live = None

    def __enter__(self):
        if self.live_enabled:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.status = ""
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        return Group(self.table, Text(self.status, style="italic cyan"))

    def running(self, label: str) -> None:
        self.status = f"measuring {label} ({len(self.table.rows) + 1}/{self.total}) ..."
        if self.live is not None:
            self.live.update(self._render())

    def done(self, label: str, level) -> None:
        f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
        server = level.server.generation_tokens if level.server and level.server.scraped else None
        client = "saturated" if level.client and level.client.saturated else "ok"
        check = "ok" if level.reliable else "[red]unreliable[/]"
        if level.plausibility is not None:
            check += f" {level.plausibility.compute_share:.1%} of peak"
        row = (label, f"{level.completed}/{level.failed}", f(level.output_throughput, 0),
               f"{f(level.ttft_ms.p50)}/{f(level.ttft_ms.p99)}", f(level.itl_ms.p50, 2), f(level.tpot_ms.p50, 2),
               f(server, 0), client, check)
        self.table.add_row(*row)
        if self.live is not None:
            self.live.update(self._render())
        else:
            self.console.print("  ".join(f"{c.header}={v}" for c, v in zip(self.table.columns, row)), highlight=False)
