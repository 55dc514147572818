"""`tuner bench URL ...`: benchmark any running OpenAI-compatible server with tuner's load generator.

The command parses its options into a typed BenchSpec; tuner/load/bench.py plans the levels, runs them and builds the
documents (schema there and in docs/bench.md). This module only parses, displays and writes.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tuner.cli._app import app, user_errors
from tuner.contracts.results import LoadMode
from tuner.errors import InputError

if TYPE_CHECKING:
    from tuner.contracts.sampling import Sampling


@app.command("bench")
@user_errors
def bench_command(
    url: str = typer.Argument(..., help="Base URL of a running server, e.g. http://127.0.0.1:8000"),
    concurrency: str = typer.Option("1", "--concurrency", "-c",
                                    help="Streams per level, comma-separated for a sweep (open loop: cap in flight)."),
    requests: int | None = typer.Option(None, "--requests", "-n", min=1,
                                           help="Requests per level (default: 4 x concurrency, at least 64)."),
    precision: float | None = typer.Option(None, "--precision", min=0.001, max=0.999,
                                           help="Measure each level until its output tok/s is known to this relative"
                                                " half-width of its 95 % CI (0.05: +/-5 %); --requests is then the"
                                                " cap (default: 4 x concurrency, at least 64)."),
    duration: float | None = typer.Option(None, "--duration", min=0.1,
                                             help="End each level after this many seconds (requests then a cap)."),
    input_len: str = typer.Option("128", "--input-len", help="Prompt tokens: N, a range A:B, or a list A,B for a matrix."),
    output_len: str = typer.Option("128", "--output-len", help="Output tokens: N, a range A:B, or a list A,B."),
    model: str | None = typer.Option(None, "--model", help="Model name to request (default: the server's first)."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Folder with the model's tokenizer/config."),
    endpoint: str = typer.Option("completions", "--endpoint", help="completions or chat (or a path)."),
    prefix_len: int = typer.Option(0, "--prefix-len", min=0, help="Tokens of a prefix shared by every prompt."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Your own traffic: JSONL of prompts or of input/"
                                           "output token lengths, or ShareGPT conversations (tuner/load/dataset.py);"
                                           " each request draws one entry (replaces --input-len/--output-len)."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="Draw this many entries of --dataset "
                                          "(reproducibly, by --seed)."),
    rate: str | None = typer.Option(None, "--rate", help="Open loop: requests/s, comma-separated for a sweep."),
    arrival: str = typer.Option("poisson", "--arrival", help="poisson, gamma or constant (open loop)."),
    burstiness: float = typer.Option(1.0, "--burstiness", min=0.01, help="Gamma shape (1 = Poisson)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up rounds of `concurrency` requests, not measured."),
    workers: str = typer.Option("auto", "--workers", help="Client processes: a number, or auto (1 per 256 streams)."),
    slo_ttft_ms: float | None = typer.Option(None, "--slo-ttft-ms", help="Goodput SLO on TTFT."),
    slo_tpot_ms: float | None = typer.Option(None, "--slo-tpot-ms", help="Goodput SLO on TPOT."),
    slo_e2el_ms: float | None = typer.Option(None, "--slo-e2el-ms", help="Goodput SLO on E2E latency."),
    hardware: str | None = typer.Option(None, "--hardware", help="Chips serving, e.g. v6e-4 or h100x8 (or cpu, "
                                           "measured here): each level's share of their compute and memory-bandwidth"
                                           " ceilings."),
    active_params: float | None = typer.Option(None, "--active-params", help="Active parameters per token "
                                                  "(default: from the model folder's config.json)."),
    ignore_eos: bool = typer.Option(True, "--ignore-eos/--no-ignore-eos", help="Exact output lengths."),
    prompt_kind: str | None = typer.Option(None, "--prompt", help="ids, text or words (default: best available)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompts and arrival times (same seed, same requests)."),
    sampling: str = typer.Option("defaults", "--sampling", help="Sampling sent with every request: 'defaults' (none"
                                 " sent: the server applies the model's generation config, as `vllm bench serve`"
                                 " does), 'greedy', or fields like 'temperature=0.7,top_p=0.95'."),
    request_timeout: float = typer.Option(120.0, "--request-timeout", min=0.1,
                                          help="Seconds before one request counts as failed."),
    level_timeout: float = typer.Option(600.0, "--level-timeout", min=1.0,
                                        help="Seconds a level may take; requests still running then end as failures."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY", show_envvar=False,
                                          help="Bearer token (default: $OPENAI_API_KEY)."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Cross-check with the server's /metrics."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON (schema in docs/bench.md)."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write one CSV row per level."),
    records_out: Path | None = typer.Option(None, "--records", help="Write every request's record (JSON lines)."),
    live: bool = typer.Option(True, "--live/--no-live", help="Live table on a terminal."),
) -> None:
    """Benchmark a running OpenAI-compatible server (vLLM or any other) like `vllm bench serve`, checked against
    the server's own counters, the client's own health and the hardware's ceiling."""
    from rich.console import Console

    from tuner.load.bench import BenchSpec, bench_document, now_iso, plan_bench, write_outputs
    from tuner.load.stats import SLO

    console = Console()
    if not console.is_terminal:  # logs and pipes: one line per level, unwrapped
        console = Console(width=200)
    concurrencies = _int_list(concurrency, "--concurrency")
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
    spec = BenchSpec(
        url=url, concurrencies=concurrencies, inputs=_lengths(input_len, "--input-len"),
        outputs=_lengths(output_len, "--output-len"), requests=requests, duration_s=duration, precision=precision,
        rates=rates,
        cap_in_flight=concurrencies[0] if rates and concurrency != "1" else None, model=model, tokenizer=tokenizer,
        endpoint=path, prefix_len=prefix_len, arrival=arrival, burstiness=burstiness,  # type: ignore[arg-type]
        warmup_rounds=warmup, workers=_workers(workers), slo=SLO(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms),
        hardware=hardware, active_params=active_params, ignore_eos=ignore_eos,
        prompt_kind=prompt_kind, seed=seed, request_timeout_s=request_timeout,  # type: ignore[arg-type]
        level_timeout_s=level_timeout, api_key=api_key, metrics=metrics, dataset=dataset, dataset_samples=samples,
        sampling=_sampling(sampling))
    plan = plan_bench(spec)
    started = now_iso()
    levels = _run_with_display(plan, console, live, records_out)
    if len(levels) < len(plan.levels):
        console.print("interrupted: writing the levels measured so far")
    write_outputs(bench_document(plan, levels, started), json_out, csv_out)
    if plan.prompt_kind == "words":
        console.print("note: no tokenizer: prompts are random words; input lengths are the server's usage counts")
    for level in levels:
        for warning in level.warnings:
            console.print(f"[yellow]warning[/] ({_label_of(level)}): {warning}", highlight=False)


def _sampling(text: str) -> Sampling:
    from tuner.contracts.sampling import parse_sampling

    try:
        return parse_sampling(text)
    except ValueError as exc:
        raise InputError("--sampling", text, str(exc)) from None


def _run_with_display(plan: Any, console: Any, live: bool, records_out: Path | None) -> list[Any]:
    """Run the planned levels with the live table (or a line per level), streaming request records to a file."""
    from tuner.load.bench import record_lines, run_bench

    display = _Display(console, live and console.is_terminal, len(plan.levels))
    done = 0
    with open(records_out, "w") if records_out else contextlib.nullcontext() as records_file:
        def on_done(level: Any, result: Any, records: Any) -> None:
            nonlocal done
            display.done(level.label, result)
            if records_file:
                records_file.write(record_lines(records, done))
            done += 1

        with display:
            return list(run_bench(plan, on_start=lambda level: display.running(level.label), on_done=on_done))


def _workers(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError("--workers", text, "a positive number or auto") from None
    if value < 1:
        raise InputError("--workers", text, "a positive number or auto")
    return value


def _label_of(level) -> str:
    if level.mode == LoadMode.OPEN:
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


class _Display:
    """A rich live table of finished levels and the one running (a terminal), else one line per level."""

    def __init__(self, console, live: bool, total: int) -> None:
        from rich.table import Table

        self.console = console
        self.live_enabled = live
        self.live: Any = None  # a rich Live while the table is shown
        self.total = total
        self.table = Table(title="tuner bench", show_lines=False)
        for col in ("level", "ok/failed", "out tok/s", "TTFT p50/p99 ms", "ITL p50 ms", "TPOT p50 ms", "server tok",
                    "client", "check"):
            self.table.add_column(col, justify="right")
        self.status = ""

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
            check += " " + level.plausibility.shares()
        ci = level.output_throughput_ci
        precision = f" ±{ci.relative:.0%}" if ci is not None and ci.relative is not None else " (no CI)"
        if level.ended_by is not None and level.ended_by.value != "count":
            precision += f" [{level.requests} req: {level.ended_by.value}]"
        row = (label, f"{level.completed}/{level.failed}", f(level.output_throughput, 0) + precision,
               f"{f(level.ttft_ms.p50)}/{f(level.ttft_ms.p99)}", f(level.itl_ms.p50, 2), f(level.tpot_ms.p50, 2),
               f(server, 0), client, check)
        self.table.add_row(*row)
        if self.live is not None:
            self.live.update(self._render())
        else:
            self.console.print("  ".join(f"{c.header}={v}" for c, v in zip(self.table.columns, row)), highlight=False)
