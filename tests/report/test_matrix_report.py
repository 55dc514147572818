"""The matrix report: a small matrix measured against the fake server, written as CSV and JSON and read back;
the summary table of enqueued seed configs versus the best trials."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from tuner.contracts.matrix import MatrixPoint as Point
from tuner.contracts.outcomes import FailureClass
from tuner.errors import InputError
from tuner.inputs.spec import LoadSpec, StudySpec, Timeouts
from tuner.report.matrix import (
    COLUMNS,
    SummaryRow,
    read_matrix,
    render_summary,
    row_from_level,
    seed_grid,
    summary_rows,
    write_matrix,
)
from tuner.server.config import ServerConfig
from tuner.trial.matrix import run_matrix_launch

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
MATRIX_LOAD = LoadSpec(concurrency=[1], requests_per_level=8, warmup_rounds=0, request_timeout_s=10,
                       level_timeout_s=30)
TIMEOUTS = Timeouts(startup_s=120, shutdown_grace_s=2)


def test_seed_grid_has_the_seeds_144_points():
    points = seed_grid()
    assert len(points) == 144 and len(set(points)) == 144
    assert points[0] == Point(1, 128, 16) and max(p.concurrency for p in points) == 2048


def test_matrix_against_a_server_round_trips_through_csv_and_json(tmp_path):
    config = ServerConfig(command=(sys.executable, FAKE), model="fake", env={"FAKE_VLLM_MODE": "ok"})
    points = [Point(c, i, o) for i in (8, 32) for o in (4,) for c in (1, 4)]
    seen = []
    outcome, measured = run_matrix_launch(config, points, MATRIX_LOAD, TIMEOUTS, str(tmp_path / "s.log"),
                                          requests_per_point=8, on_point=lambda p, level: seen.append(p))
    assert outcome.result.failure_class is None and seen == points
    rows = [row_from_level(point, level) for point, level in measured]
    assert [(r.concurrency, r.input_len, r.output_len) for r in rows] == [(p.concurrency, p.input_len, p.output_len)
                                                                         for p in points]
    assert all(r.completed == 8 and r.failed == 0 and r.output_tok_s > 0 for r in rows)
    csv_path, json_path = write_matrix(rows, tmp_path / "out", "trial-7", meta={"trial": 7})
    assert csv_path.name == "matrix_benchmark_trial-7.csv" and json_path.name == "matrix_benchmark_trial-7.json"
    assert csv_path.read_text().splitlines()[0].split(",") == COLUMNS
    assert json.loads(json_path.read_text())["meta"] == {"trial": 7}
    assert read_matrix(csv_path) == rows
    assert read_matrix(json_path) == rows


def test_a_matrix_relaunch_that_dies_is_classified_like_any_trial(tmp_path):
    config = ServerConfig(command=(sys.executable, FAKE), model="fake", env={"FAKE_VLLM_MODE": "die-after:12"})
    points = [Point(4, 8, 4), Point(4, 16, 4), Point(4, 32, 4)]
    outcome, measured = run_matrix_launch(config, points, MATRIX_LOAD, TIMEOUTS, str(tmp_path / "s.log"),
                                          requests_per_point=8)
    assert outcome.result.failure_class == FailureClass.DIED_UNDER_LOAD, outcome.result.failure_detail
    assert len(measured) == 2  # the point it died in is kept (its failures counted), the one after never runs
    assert measured[-1][1].failed > 0 and outcome.result.log_tail


def test_reading_something_else_is_an_input_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(InputError, match="not a matrix_benchmark file"):
        read_matrix(bad)
    with pytest.raises(InputError, match="not found"):
        read_matrix(tmp_path / "missing.csv")


def _add(study: optuna.Study, params: dict, values: list[float], **attrs) -> None:
    dists = {k: CategoricalDistribution([v]) for k, v in params.items()}
    trial = optuna.trial.create_trial(params=params, distributions=dists, values=values, user_attrs=attrs)
    study.add_trial(trial)


def test_summary_puts_seed_configs_next_to_the_best():
    spec = StudySpec(name="s", model="m", search_space=Path("x.yaml"),
                     enqueue=[{"max_num_seqs": 256, "max_model_len": 16384}, {"max_num_seqs": 2048, "max_model_len": 32768},
                              {"max_num_seqs": 64, "max_model_len": 4096}],
                     enqueue_labels=["seed: gold standard", "seed: production peak"])
    study = optuna.create_study(directions=["maximize", "maximize"])
    _add(study, {"max_num_seqs": 256, "max_model_len": 16384}, [30000.0, 0.9], enqueued=True, constraint=0.0,
         peak_concurrency=1024, startup_s=1800.0)
    _add(study, {"max_num_seqs": 2048, "max_model_len": 32768}, [0.0, 0.0], enqueued=True, constraint=1.0,
         failure_class="oom")
    _add(study, {"max_num_seqs": 512, "max_model_len": 8192}, [41000.0, 0.7], constraint=0.0, peak_concurrency=2048)
    _add(study, {"max_num_seqs": 128, "max_model_len": 8192}, [0.0, 0.0], constraint=1.0, failure_class="kv_capacity",
         predicted=True)
    rows = summary_rows(study, spec)
    assert [r.label for r in rows] == ["seed: gold standard", "seed: production peak", "enqueued #3",
                                       "best throughput", "best stability"]
    gold, peak, third, best_t, best_s = rows
    assert gold.throughput == 30000.0 and gold.outcome == "ok"
    assert peak.outcome == "oom" and peak.throughput is None
    assert third.outcome == "not run yet" and third.trial == -1
    assert best_t.trial == 2 and best_s.trial == 0
    table = render_summary(rows)
    assert table.splitlines()[0].startswith("| config | trial | outcome | peak tok/s")
    assert "| seed: production peak | 1 | oom | - |" in table
    assert "41,000" in table


def test_predicted_failures_are_labelled_predicted():
    from tuner.report.matrix import _row
    from tuner.study.records import TrialRecord

    study = optuna.create_study(directions=["maximize", "maximize"])
    _add(study, {"max_num_seqs": 128}, [0.0, 0.0], constraint=1.0, failure_class="kv_capacity", predicted=True)
    assert _row("x", TrialRecord.of(study.trials[0])).outcome == "predicted kv_capacity"


def test_render_summary_of_nothing_is_just_the_header():
    assert len(render_summary([SummaryRow(label="a", trial=-1, params={})]).splitlines()) == 3


def test_summary_command_reads_the_study_storage(tmp_path):
    from typer.testing import CliRunner

    from tuner.cli import app

    root = Path(__file__).resolve().parents[2]
    study_file = root / "studies" / "gemma4-26b-v6e-4.yaml"
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    optuna_study = optuna.create_study(study_name="gemma4-26b-v6e-4", storage=storage,
                                       directions=["maximize", "maximize"])
    from tuner.inputs.spec import load_study

    gold = load_study(study_file).spec.enqueue[0]
    _add(optuna_study, {k: v for k, v in gold.items() if v is not None}, [25000.0, 0.95], enqueued=True,
         constraint=0.0)
    out = tmp_path / "summary.md"
    result = CliRunner().invoke(app, ["study", "summary", str(study_file), "--storage", storage, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "| seed: gold standard (balanced) | 0 | ok | 25,000 |" in result.output
    assert "| seed: production peak | - | not run yet |" in result.output
    assert out.read_text().startswith("| config |")


def test_bad_grid_option_is_an_input_error():
    from tuner.cli.study import _ints

    with pytest.raises(InputError):
        _ints("1,x", "--concurrency")
    assert _ints("1, 16,64", "--concurrency") == [1, 16, 64]
