"""Study-file validation: every bad input becomes one InputError naming the file, the key and what was expected."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import InputError
from tuner.inputs.spec import load_study

SPACE = """
parameters:
  seqs: {type: int, low: 4, high: 64, flag: --max-num-seqs}
"""
GOOD = """
name: s1
model: m
search_space: space.yaml
"""


def test_minimal_study_gets_defaults(tmp_study):
    study = load_study(tmp_study(GOOD, SPACE))
    assert study.spec.server.command == ["vllm", "serve"]
    assert study.spec.storage == "sqlite:///tuner.db"
    assert study.spec.load.concurrency == [1, 8, 32]
    assert study.space.parameters["seqs"].flag == "--max-num-seqs"
    assert study.spec.search_space.is_absolute() or study.spec.search_space.exists()


def test_quickstart_study_is_valid():
    study = load_study(Path(__file__).parents[2] / "studies" / "quickstart-cpu.yaml")
    assert study.spec.resources == {"CPU": 2}
    assert len(study.spec.enqueue) == 3  # two hand-tuned guesses and vLLM's defaults
    assert study.spec.enqueue[2]["max_num_seqs"] is None and study.spec.load.sampling.server_defaults


@pytest.mark.parametrize(
    "study_yaml, key, expected",
    [
        (GOOD + "bogus: 1\n", "bogus", "unknown key"),
        (GOOD + "trials: many\n", "trials", "valid integer"),
        (GOOD + "trials: 0\n", "trials", "greater than 0"),
        (GOOD + "server: {flags: {--MaxSeqs: 3}}\n", "server.flags", "--lowercase-with-dashes"),
        (GOOD + "server: {flags: {--port: 3}}\n", "server.flags", "set by tuner itself"),
        (GOOD + "server: {env: {bad-name: x}}\n", "server.env", "[A-Z_][A-Z0-9_]*"),
        (GOOD + "load: {concurrency: [8, 1]}\n", "load.concurrency", "ascending"),
        (GOOD + "load: {concurrency: [1, 64], requests_per_level: 8}\n", "load.requests_per_level", "at least as many"),
        (GOOD + "server: {flags: {--max-num-seqs: 8}}\n", "server.flags.--max-num-seqs", "also set by the search space"),
        (GOOD + "enqueue: [{seqs: 1000}]\n", "enqueue.0.seqs", "outside"),
        (GOOD + "enqueue: [{nope: 1}]\n", "enqueue.0", "unknown parameter"),
        ("name: s1\nsearch_space: space.yaml\n", "model", "required key is missing"),
        (GOOD + "objectives: [tokens, stability]\n", "objectives", "unknown objective 'tokens'"),
        (GOOD + "objectives: [output_tok_s]\n", "objectives", "at least 2"),
        (GOOD + "objectives: [output_tok_s, stability, stability]\n", "objectives", "once"),
        (GOOD + "objectives: [usd_per_m_tokens, stability]\n", "price_per_slice_hour", "needs the price"),
        (GOOD + "objectives: [tok_s_per_chip, stability]\n", "hardware", "needs the slice"),
        (GOOD + "slo: {ttft_ms: 500}\n", "slo", "ttft_p99_ms"),
        (GOOD + "slo: {ttft_p99_ms: -5}\n", "slo.ttft_p99_ms", "greater than 0"),
        (GOOD + "slo_margin: 0.5\n", "slo_margin", "less than 0.5"),
        (GOOD + "load: {shapes: [{input_len: 8, output_len: 8}], dataset: {path: d.jsonl}}\n", "load.shapes",
         "not both"),
        (GOOD + "load: {input_len: 64, input_len_max: 8}\n", "load.input_len_max", "at least input_len"),
        (GOOD + "load: {prefix_len: 200}\n", "load.prefix_len", "at most the shortest"),
        (GOOD + "confirm: {repeats: -1}\n", "confirm.repeats", "greater than or equal to 0"),
        (GOOD + "load: {rates: [4, 2], concurrency: [8]}\n", "load.rates", "ascending"),
        (GOOD + "load: {rates: [2, 4]}\n", "load.concurrency", "one value"),
        (GOOD + "load: {rates: [2], concurrency: [8], arrival: bursty}\n", "load.arrival", "poisson"),
        ("name: 'bad name'\nmodel: m\nsearch_space: space.yaml\n", "name", "pattern"),
        (GOOD + "lease: {heartbeat_s: 10, grace_s: 15}\n", "lease.grace_s", "at least twice heartbeat_s"),
        (GOOD + "lease: {heartbeat_s: 0}\n", "lease.heartbeat_s", "greater than 0"),
    ],
)
def test_bad_study_names_file_key_and_expectation(tmp_study, study_yaml, key, expected):
    path = tmp_study(study_yaml, SPACE)
    with pytest.raises(InputError) as info:
        load_study(path)
    err = info.value
    assert err.source == str(path)
    assert err.key == key
    assert expected in err.expected
    assert "\n" not in str(err)


def test_malformed_yaml_names_line(tmp_study):
    path = tmp_study("name: [unclosed\nmodel: m\n", SPACE)
    with pytest.raises(InputError, match=r"malformed YAML at line \d+"):
        load_study(path)


def test_top_level_must_be_mapping(tmp_study):
    with pytest.raises(InputError, match="mapping"):
        load_study(tmp_study("- a\n- b\n", SPACE))


def test_missing_search_space_file_is_named(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(GOOD)
    with pytest.raises(InputError) as info:
        load_study(study)
    assert info.value.source.endswith("space.yaml")
    assert "not found" in info.value.expected


def test_missing_study_file():
    with pytest.raises(InputError, match="file not found"):
        load_study(Path("/nonexistent/study.yaml"))


def test_objectives_slo_and_traffic_reach_the_goals(tmp_study):
    study = load_study(tmp_study(GOOD + "objectives: [goodput_tok_s, ttft_p99_ms, stability]\n"
                                 "slo: {ttft_p99_ms: 500, itl_p99_ms: 50}\n"
                                 "load: {shapes: [{input_len: 128, output_len: 16, weight: 3}, "
                                 "{input_len: 1024, output_len: 256}]}\n", SPACE))
    goals = study.spec.goals()
    assert goals.directions == ["maximize", "minimize", "maximize"]
    assert goals.rank_metric == "goodput_tok_s" and goals.slo == {"ttft_p99_ms": 500, "itl_p99_ms": 50}
    assert goals.slo_margin == 0.1 and goals.held_limit("ttft_p99_ms") == 450  # the default margin


def test_bad_dataset_is_one_line_before_anything_runs(tmp_study):
    from tuner.planning.traffic import resolve_traffic

    path = tmp_study(GOOD + "load: {dataset: {path: traffic.jsonl}}\n", SPACE)
    (path.parent / "traffic.jsonl").write_text('{"input_len": 8, "output_len": 8}\n{"input_len": 0, "output_len": 8}\n')
    with pytest.raises(InputError) as info:
        resolve_traffic(load_study(path))
    assert info.value.source == str(path.parent / "traffic.jsonl") and info.value.key == "line 2"


def test_dataset_path_is_relative_to_the_study_file(tmp_study):
    from tuner.planning.traffic import resolve_traffic

    path = tmp_study(GOOD + "load: {dataset: {path: traffic.jsonl, samples: 2, seed: 3}}\n", SPACE)
    (path.parent / "traffic.jsonl").write_text("".join(f'{{"input_len": {8 + i}, "output_len": 4}}\n'
                                                       for i in range(5)))
    traffic = resolve_traffic(load_study(path))
    assert len(traffic.samples) == 2 and traffic.label == "traffic.jsonl"
    assert traffic.samples == resolve_traffic(load_study(path)).samples  # reproducible


def test_goals_read_back_from_storage_are_the_study_files(tmp_study):
    """Report and export rebuild the goals from the spec stored with the study: margin and all."""
    import optuna

    from tuner.study import stored_spec
    from tuner.study.records import StudyRecord

    study = load_study(tmp_study(GOOD + "slo: {ttft_p99_ms: 500}\nslo_margin: 0.2\n", SPACE))
    stored = optuna.create_study(directions=study.spec.goals().directions)
    stored.set_user_attr("spec", stored_spec(study))
    goals = StudyRecord.of(stored).spec.goals()
    assert goals == study.spec.goals() and goals.held_limit("ttft_p99_ms") == 400


def test_gp_sampler_without_torch_says_how_to_install(tmp_study, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(InputError, match=r"sampler.name: gp needs torch and scipy: pip install 'tuner\[gp\]'"):
        load_study(tmp_study(GOOD + "sampler: {name: gp}\n", SPACE))
