"""Study-file validation: every bad input becomes one InputError naming the file, the key and what was expected."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import InputError
from tuner.spec import load_study

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
    study = load_study(Path(__file__).parent.parent / "studies" / "quickstart-cpu.yaml")
    assert study.spec.resources == {"CPU": 2}
    assert len(study.spec.enqueue) == 2


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
        ("name: 'bad name'\nmodel: m\nsearch_space: space.yaml\n", "name", "pattern"),
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
