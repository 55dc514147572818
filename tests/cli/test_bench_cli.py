"""`tuner bench` end to end against the scheduled test server (no vLLM needed)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tuner.cli import app

_spec = importlib.util.spec_from_file_location("scheduled_server", Path(__file__).parents[1] / "fakes" / "scheduled_server.py")
scheduled = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(scheduled)  # type: ignore[union-attr]
TINY = Path(__file__).resolve().parents[2] / ".models" / "tiny-llama"


@pytest.fixture(scope="module")
def server_url():
    with scheduled.launch(ttft_ms=20, itl_ms=2, fail_every=10) as url:
        yield url


def test_sweep_writes_json_and_csv(server_url, tmp_path):
    out, csv = tmp_path / "b.json", tmp_path / "b.csv"
    result = CliRunner().invoke(app, ["bench", server_url, "-c", "1,4", "-n", "20", "--input-len", "8",
                                      "--output-len", "6", "--model", "m", "--json", str(out), "--csv", str(csv),
                                      "--slo-ttft-ms", "500", "--hardware", "v6e-4", "--active-params", "3.8e9",
                                      "--no-live", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tuner.load.bench/1" and doc["workload"]["prompt_kind"] == "words"
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 4]
    for lv in doc["levels"]:
        assert lv["requests"] == 20 and lv["failed"] == 2 and lv["completed"] == 18  # every 10th request is a 500
        assert lv["output_tokens"] == 18 * 6 and lv["output_throughput"] > 0
        for metric in ("ttft_ms", "itl_ms", "e2el_ms", "tpot_ms"):
            assert set(lv[metric]) == {"mean", "p50", "p90", "p99", "p99_ci"}
        # 18 answered requests: no upper bound for a p99, and the level says so instead of pretending
        assert lv["ttft_ms"]["p99_ci"]["high"] is None and "too few requests" in lv["ttft_ms"]["p99_ci"]["reason"]
        assert lv["output_throughput_ci"] is not None
        assert lv["goodput"] is not None and lv["plausibility"]["valid"] and lv["client"]["workers"] == 1
    frame = pd.read_csv(csv)
    assert list(frame["concurrency"]) == [1, 4] and "ttft_ms_p99" in frame and "server_generation_tokens" in frame
    assert "no tokenizer" in result.output


def test_precision_ends_a_level_before_its_cap(tmp_path):
    out = tmp_path / "b.json"
    with scheduled.launch(ttft_ms=20, itl_ms=2) as url:
        result = CliRunner().invoke(app, ["bench", url, "-c", "4", "-n", "3000", "--precision", "0.1",
                                          "--input-len", "8", "--output-len", "6", "--model", "m", "--json", str(out),
                                          "--no-live", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    [level] = json.loads(out.read_text())["levels"]
    assert level["ended_by"] == "precision" and level["precision_target"] == 0.1
    assert 8 <= level["requests"] < 3000 and level["failed"] == 0 and level["unsent"] == 3000 - level["requests"]
    assert "precision]" in result.output


def test_open_loop_matrix_and_chat(server_url, tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["bench", server_url, "-c", "2", "-n", "6", "--input-len", "8,16",
                                      "--output-len", "4", "--endpoint", "chat", "--json", str(out), "--no-live",
                                      "--warmup", "0", "--no-metrics"])
    assert result.exit_code == 0, result.output
    levels = json.loads(out.read_text())["levels"]
    assert [(lv["input_len"], lv["output_len"]) for lv in levels] == [(8, 4), (16, 4)]
    result = CliRunner().invoke(app, ["bench", server_url, "--rate", "50", "-n", "10", "--input-len", "8",
                                      "--output-len", "4", "--tokenizer", str(TINY), "--json", str(out),
                                      "--no-live", "--arrival", "gamma", "--burstiness", "2"])
    assert result.exit_code == 0, result.output
    level = json.loads(out.read_text())["levels"][0]
    assert level["mode"] == "open" and level["request_rate"] == 50 and level["requests"] == 10


@pytest.mark.parametrize("args", [["-c", "0"], ["--input-len", "x"], ["--input-len", "9:3"], ["--rate", "-1"],
                                  ["--hardware", "b200"], ["--arrival", "uniform"], ["--prefix-len", "200"],
                                  ["--workers", "zero"]])
def test_bad_input_is_one_line_and_exit_2(server_url, args):
    result = CliRunner().invoke(app, ["bench", server_url, "--model", "m", "-n", "2", "--no-live", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_bad_url_is_an_input_error():
    result = CliRunner().invoke(app, ["bench", "localhost:8000", "--model", "m"])
    assert result.exit_code == 2 and "http://" in result.output


# -- the plan, offline: a given model and word prompts ask the server nothing ----------------------------------
def _plan(**options):
    from tuner.load.bench import BenchSpec, plan_bench

    spec = dict(url="http://127.0.0.1:9", concurrencies=[1], inputs=[(128, None)], outputs=[(64, None)], model="m",
                prompt_kind="words")
    return plan_bench(BenchSpec(**{**spec, **options}))


def test_plan_of_a_sweep_is_one_level_per_concurrency():
    plan = _plan(concurrencies=[1, 32], inputs=[(100, 200)], warmup_rounds=2)
    assert [level.label for level in plan.levels] == ["c=1", "c=32"]
    assert [level.pattern.requests for level in plan.levels] == [64, 128]  # 4 x concurrency, at least 64
    assert [level.pattern.warmup for level in plan.levels] == [2, 64]
    assert all(level.workload == plan.workload and level.workers == 1 for level in plan.levels)
    assert plan.workload.input_len_max == 200  # one shape: the range is drawn per request


def test_plan_of_a_matrix_takes_each_points_workload_from_the_loadgen_matrix():
    from tuner.load.matrix import grid, workload_for

    plan = _plan(concurrencies=[1, 4], inputs=[(128, None), (16, None)], outputs=[(8, None)], prefix_len=64)
    points = grid([1, 4], [128, 16], [8])
    assert [level.label for level in plan.levels] == [f"c={p.concurrency} in={p.input_len} out={p.output_len}"
                                                      for p in points]
    assert [level.workload for level in plan.levels] == [workload_for(p, plan.workload) for p in points]
    assert plan.levels[-1].workload.prefix_len == 16  # a shared prefix never exceeds the point's prompt


def test_plan_of_an_open_loop_is_one_level_per_rate():
    plan = _plan(rates=[2.0, 0.5], cap_in_flight=8, duration_s=10, workers=3, arrival="gamma", burstiness=2.0)
    assert [level.label for level in plan.levels] == ["rate 2/s", "rate 0.5/s"]
    assert [level.pattern.requests for level in plan.levels] == [64, 64]
    first = plan.levels[0].pattern
    assert (first.rate, first.concurrency, first.arrival, first.burstiness, first.warmup) == (2.0, 8, "gamma", 2.0, 8)
    assert all(level.workers == 3 for level in plan.levels)


def test_document_of_a_plan_keeps_the_options_as_typed():
    from tuner.load.bench import bench_document

    assert bench_document(_plan(), [], "t")["options"]["workers"] == "auto"
    document = bench_document(_plan(workers=4, rates=[1.0]), [], "t")
    assert document["options"]["workers"] == "4" and document["options"]["arrival"] == "poisson"
    assert document["workload"]["prompt_kind"] == "words" and document["levels"] == []


def test_the_sampling_sent_is_in_the_document_and_every_level(server_url, tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["bench", server_url, "-c", "2", "-n", "6", "--input-len", "8", "--output-len",
                                      "4", "--model", "m", "--json", str(out), "--no-live", "--warmup", "0",
                                      "--sampling", "temperature=0.5,top_k=20", "--tokenizer", str(TINY)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["workload"]["sampling"] == {"temperature": 0.5, "top_k": 20}
    assert doc["levels"][0]["sampling"]["sent"]["temperature"] == 0.5
    bad = CliRunner().invoke(app, ["bench", server_url, "--sampling", "hot", "--no-live"])
    assert bad.exit_code == 2 and "--sampling: hot:" in bad.output
