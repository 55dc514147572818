"""The matrix report: concurrency x input length x output length for one chosen trial, and the seed-vs-best summary.

    row_from_level(point, level) / write_matrix(rows, ...)   a measured point as a row; matrix_benchmark_<name>.csv
                                                             and .json (the launch itself: tuner.trial.matrix,
                                                             driven by `tuner study matrix` in tuner/cli/study.py)
    read_matrix(path)                                        read such a CSV or JSON back ("run or read")
    summary_rows(optuna_study, spec) / render_summary(rows)  the enqueued seed configs next to the best found

The CSV/JSON mirror the seed's matrix_benchmark_*.csv/.json: one row per point with throughput and latency, plus
what the seed's files lacked: failed requests, the server's own preemption counter and the load generator's
warnings (a point the tuner does not trust says why). The commands (`tuner study matrix`, `tuner study summary`)
are in tuner/cli/study.py.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tuner.contracts.matrix import MatrixPoint, grid
from tuner.errors import InputError

if TYPE_CHECKING:
    import optuna

    from tuner.contracts.results import LevelResult
    from tuner.inputs.spec import StudySpec
    from tuner.study.records import TrialRecord

# The seed's sweep had 144 points; this grid has the same size and covers its 2048-user peak and 2K-context spike.
SEED_CONCURRENCY = (1, 16, 64, 256, 1024, 2048)
SEED_INPUT_LENS = (128, 1024, 2048, 8192)
SEED_OUTPUT_LENS = (16, 128, 256, 512, 1024, 2048)


def seed_grid(concurrency: Iterable[int] = SEED_CONCURRENCY, input_lens: Iterable[int] = SEED_INPUT_LENS,
              output_lens: Iterable[int] = SEED_OUTPUT_LENS) -> list[MatrixPoint]:
    """Every combination, input length outermost and concurrency innermost (low load first for each shape)."""
    return grid(concurrency, input_lens, output_lens)


class MatrixRow(BaseModel):
    concurrency: int
    input_len: int
    output_len: int
    requests: int
    completed: int
    failed: int
    duration_s: float
    output_tok_s: float
    total_tok_s: float
    requests_per_s: float
    ttft_ms_p50: float | None = None
    ttft_ms_p99: float | None = None
    tpot_ms_p50: float | None = None
    tpot_ms_p99: float | None = None
    itl_ms_p50: float | None = None
    e2el_ms_p50: float | None = None
    e2el_ms_p99: float | None = None
    preemptions: float | None = None
    warnings: str = ""


COLUMNS = list(MatrixRow.model_fields)


def row_from_level(point: MatrixPoint, level: LevelResult) -> MatrixRow:
    return MatrixRow(
        concurrency=point.concurrency, input_len=point.input_len, output_len=point.output_len,
        requests=level.requests, completed=level.completed, failed=level.failed, duration_s=level.duration_s,
        output_tok_s=level.output_throughput, total_tok_s=level.total_token_throughput,
        requests_per_s=level.request_throughput, ttft_ms_p50=level.ttft_ms.p50, ttft_ms_p99=level.ttft_ms.p99,
        tpot_ms_p50=level.tpot_ms.p50, tpot_ms_p99=level.tpot_ms.p99, itl_ms_p50=level.itl_ms.p50,
        e2el_ms_p50=level.e2el_ms.p50, e2el_ms_p99=level.e2el_ms.p99,
        preemptions=level.server.preemptions if level.server else None, warnings="; ".join(level.warnings),
    )


def write_matrix(rows: Sequence[MatrixRow], out_dir: Path, name: str, meta: dict[str, Any] | None = None
                 ) -> tuple[Path, Path]:
    """Write matrix_benchmark_<name>.csv and .json; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"matrix_benchmark_{name}.csv"
    json_path = out_dir / f"matrix_benchmark_{name}.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.model_dump().items()})
    json_path.write_text(json.dumps({"meta": meta or {}, "points": [r.model_dump() for r in rows]}, indent=1) + "\n")
    return csv_path, json_path


def read_matrix(path: Path) -> list[MatrixRow]:
    """Read a matrix written by write_matrix (CSV or JSON)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(str(path), "", "matrix file not found") from None
    try:
        if path.suffix == ".json":
            return [MatrixRow.model_validate(p) for p in json.loads(text)["points"]]
        return [MatrixRow.model_validate({k: (None if v == "" and k != "warnings" else v) for k, v in r.items()})
                for r in csv.DictReader(text.splitlines())]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(str(path), "", f"not a matrix_benchmark file ({str(exc).splitlines()[0]})") from None


# -- seed configs versus the best found ---------------------------------------------------------------------------
class SummaryRow(BaseModel):
    label: str
    trial: int
    params: dict[str, Any]
    throughput: float | None = None  # peak output tok/s of the sweep (objective 0)
    stability: float | None = None  # objective 1
    peak_concurrency: int | None = None
    startup_s: float | None = None
    outcome: str = ""  # "ok", a failure class, "predicted <class>" or "not run yet"


def summary_rows(optuna_study: optuna.Study, spec: StudySpec) -> list[SummaryRow]:
    """The enqueued seed configs, in the study file's order, then the best trial by throughput and by stability."""
    from tuner.study.records import best_by, records

    trials = records(optuna_study)
    rows: list[SummaryRow] = []
    for i, wanted in enumerate(spec.enqueue):
        label = spec.enqueue_labels[i] if i < len(spec.enqueue_labels) else f"enqueued #{i + 1}"
        match = [r for r in trials if r.complete and r.enqueued
                 and all(r.params.get(k) == v for k, v in wanted.items() if v is not None)]
        rows.append(_row(label, match[0]) if match else SummaryRow(label=label, trial=-1, params=wanted,
                                                                    outcome="not run yet"))
    feasible = [r for r in trials if r.complete and r.feasible]
    if feasible:
        rows.append(_row("best throughput", best_by(feasible, "throughput")))
        rows.append(_row("best stability", best_by(feasible, "stability")))
    return rows


def _row(label: str, r: TrialRecord) -> SummaryRow:
    if r.predicted:
        outcome = f"predicted {r.failure_class}"
    elif r.failure_class and not r.feasible:
        outcome = str(r.failure_class)
    else:
        outcome = "ok" if not r.failure_class else f"ok until {r.failure_class}"
    return SummaryRow(label=label, trial=r.number, params=dict(r.params), throughput=r.throughput,
                      stability=r.stability, peak_concurrency=r.peak_concurrency, startup_s=r.startup_s,
                      outcome=outcome)


def render_summary(rows: Sequence[SummaryRow], keys: Sequence[str] = ("max_num_seqs", "max_model_len",
                   "max_num_batched_tokens", "kv_cache_dtype", "spec_method", "num_speculative_tokens",
                   "padding_gap")) -> str:
    """A Markdown table: one line per row, the key parameters as columns."""
    present = [k for k in keys if any(k in r.params for r in rows)]
    head = ["config", "trial", "outcome", "peak tok/s", "stability", "at users", "startup s", *present]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, "-" if r.trial < 0 else str(r.trial), r.outcome,
                 "-" if r.throughput is None else f"{r.throughput:,.0f}",
                 "-" if r.stability is None else f"{r.stability:.2f}",
                 "-" if r.peak_concurrency is None else str(r.peak_concurrency),
                 "-" if r.startup_s is None else f"{r.startup_s:,.0f}",
                 *[str(r.params.get(k, "-")) for k in present]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
