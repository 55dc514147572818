"""`tuner compare`: the verdict's statistics, the three ways to name a side, and the command against the fake server
(a config against itself is WITHIN NOISE on every metric; a config that serves 8 streams at once against one that
serves 1 is IMPROVED)."""
from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from tests.builders import write_study
from typer.testing import CliRunner

from tuner.cli import app
from tuner.compare import resolve_side
from tuner.compare.run import alternating
from tuner.compare.store import COMPARE_STUDY_FILE, STUDY_ATTR_VERDICT, CompareStore, is_comparison
from tuner.compare.verdict import Verdict, judge
from tuner.errors import InputError
from tuner.inputs.spec import load_study


def test_launches_alternate_so_that_drift_favours_neither():
    assert alternating(2) == [0, 1, 1, 0]
    assert alternating(3) == [0, 1, 1, 0, 0, 1]
    assert alternating(2, sides=3) == [0, 1, 2, 2, 1, 0]


def test_the_same_figures_are_within_noise():
    same = judge("output_tok_s", [1000.0, 1010.0, 990.0], [1000.0, 1005.0, 995.0], noise=0.02)
    assert same.verdict == Verdict.WITHIN_NOISE and same.low <= 1.0 <= same.high


def test_a_clear_gain_is_improved_and_a_clear_loss_a_regression():
    gain = judge("output_tok_s", [1000.0, 1020.0, 990.0], [1500.0, 1480.0, 1530.0], noise=0.02)
    assert gain.verdict == Verdict.IMPROVED and gain.low > 1.02
    slower_first_token = judge("ttft_p99_ms", [100.0, 104.0, 98.0], [150.0, 155.0, 148.0], noise=0.02)
    assert slower_first_token.verdict == Verdict.REGRESSION  # a latency: higher is worse


def test_an_undecided_difference_says_how_many_launches_would_decide_it():
    noisy = judge("output_tok_s", [1000.0, 1300.0], [1150.0, 1400.0], noise=0.02)
    assert noisy.verdict == Verdict.WITHIN_NOISE and noisy.to_decide is not None and noisy.to_decide > 2
    once = judge("output_tok_s", [1000.0], [2000.0], noise=0.02)
    assert once.verdict == Verdict.WITHIN_NOISE and once.low is None and "one launch" in once.note


def test_shares_are_compared_as_differences():
    died = judge("stability", [1.0, 1.0], [0.0, 0.0], noise=0.02)
    assert died.scale == "difference" and died.verdict == Verdict.REGRESSION and died.estimate == -1.0


def test_a_side_from_an_exported_yaml_a_command_line_or_a_trial(tmp_path):
    study = load_study(write_study(tmp_path))
    exported = tmp_path / "best.yaml"
    exported.write_text(yaml.safe_dump({"model": "fake", "max-num-seqs": 4, "enforce-eager": True}))
    side = resolve_side(str(exported), study)
    assert side.config.flags == {"--max-num-seqs": 4, "--enforce-eager": True} and side.config.model == "fake"
    command = resolve_side("vllm serve other --max-num-seqs 8 --enforce-eager --kv-cache-dtype=fp8", study)
    assert command.config.model == "other"
    assert command.config.flags == {"--max-num-seqs": "8", "--enforce-eager": True, "--kv-cache-dtype": "fp8"}
    assert command.config.command == tuple(study.spec.server.command)  # the study's server runs it
    other = resolve_side(str(exported), study, server_command="/opt/vllm-next/bin/vllm serve")
    assert other.config.command == ("/opt/vllm-next/bin/vllm", "serve")
    with pytest.raises(InputError, match="no study 'api'"):  # the study file's study, never started
        resolve_side("api:7", study)
    with pytest.raises(InputError, match="a config YAML"):
        resolve_side("nonsense", study)


def test_a_side_from_a_trial_of_the_study(tmp_path):
    import optuna

    study = load_study(write_study(tmp_path))
    stored = optuna.create_study(study_name="api", storage=study.spec.storage)
    stored.add_trial(optuna.trial.create_trial(
        params={"seqs": 4}, distributions={"seqs": optuna.distributions.CategoricalDistribution([1, 4])}, value=1.0))
    for text in ("0", "api:0"):
        assert resolve_side(text, study).config.flags["--max-num-seqs"] == 4
    with pytest.raises(InputError, match="no trial 7"):
        resolve_side("api:7", study)


@pytest.fixture
def fake_study(tmp_path):
    path = write_study(tmp_path, load={"concurrency": [8], "requests_per_level": 32, "warmup_rounds": 1,
                                       "input_len": 8, "output_len": 16, "repeats": 2, "request_timeout_s": 20,
                                       "level_timeout_s": 60, "precision": None, "screen_precision": None})
    # Tokens paced 10 ms apart: the fake's throughput then follows the config (streams at once), not how busy the
    # host's two cores happen to be during one launch (at 1 ms a token, the fake and the client are CPU-bound).
    spec = yaml.safe_load(path.read_text())
    spec["server"]["env"]["FAKE_VLLM_TOKEN_MS"] = "10"
    path.write_text(yaml.safe_dump(spec))
    for seqs in (1, 8):
        (tmp_path / f"seqs{seqs}.yaml").write_text(yaml.safe_dump({"model": "fake", "max-num-seqs": seqs}))
    return path


@pytest.mark.usefixtures("no_server_left_behind")
def test_a_config_against_itself_is_within_noise_on_every_metric(tmp_path, fake_study):
    out = tmp_path / "verdict.json"
    result = CliRunner().invoke(app, ["compare", str(fake_study), str(tmp_path / "seqs8.yaml"),
                                      str(tmp_path / "seqs8.yaml"), "--launches", "2", "--json", str(out),
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output  # nothing improved: B may not replace A
    doc = json.loads(out.read_text())
    assert doc["launches"] == [2, 2] and not doc["may_replace"]
    assert {m["name"]: m["verdict"] for m in doc["metrics"]} == {
        "output_tok_s": "WITHIN NOISE", "success": "WITHIN NOISE", "stability": "WITHIN NOISE"}, doc
    store = stored_comparison(tmp_path / "runs", fake_study)
    assert [launch.side for launch in store.launches()] == ["A", "B", "B", "A"]
    assert is_comparison(store.study) and "WITHIN NOISE" in store.study.user_attrs[STUDY_ATTR_VERDICT]
    assert all(t.state == TrialState.COMPLETE and t.values[0] > 0 for t in store.study.trials)


def stored_comparison(out_dir, study_file):
    """The comparison study `out_dir` names, loaded from the study file's storage as `tuner dashboard` would."""
    storage = load_study(study_file).spec.storage
    name = (out_dir / COMPARE_STUDY_FILE).read_text().strip()
    return CompareStore(optuna.load_study(study_name=name, storage=storage))


@pytest.mark.usefixtures("no_server_left_behind")
def test_eight_streams_at_once_beat_one_and_the_markdown_says_so(tmp_path, fake_study):
    result = CliRunner().invoke(app, ["compare", str(fake_study), str(tmp_path / "seqs1.yaml"),
                                      str(tmp_path / "seqs8.yaml"), "--launches", "2", "--format", "md",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "| output_tok_s |" in result.output and "IMPROVED" in result.output
    assert "**B may replace A" in result.output and "|---|" in result.output


@pytest.mark.usefixtures("no_server_left_behind")
def test_several_candidates_are_each_judged_against_a(tmp_path, fake_study):
    out = tmp_path / "verdict.json"
    result = CliRunner().invoke(app, ["compare", str(fake_study), str(tmp_path / "seqs8.yaml"),
                                      str(tmp_path / "seqs1.yaml"), str(tmp_path / "seqs8.yaml"), "--launches", "1",
                                      "--json", str(out), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output  # one launch a side decides nothing
    assert "C vs A" in result.output and "C may not replace A" in result.output
    doc = json.loads(out.read_text())
    assert [(c["b_name"], c["b_label"]) for c in doc["comparisons"]] == [("B", "seqs1.yaml"), ("C", "seqs8.yaml")]
    store = stored_comparison(tmp_path / "runs", fake_study)
    assert [(launch.side, launch.label) for launch in store.launches()] == [
        ("A", "seqs8.yaml"), ("B", "seqs1.yaml"), ("C", "seqs8.yaml")]
    assert CliRunner().invoke(app, ["compare", str(fake_study), "0", *["1"] * 6]).exit_code == 2  # at most 5


def test_bad_input_is_one_line_and_exit_2(tmp_path, fake_study):
    result = CliRunner().invoke(app, ["compare", str(fake_study), str(tmp_path / "missing.yaml"), "3"])
    assert result.exit_code == 2 and "missing.yaml: no such file" in result.output


@pytest.mark.usefixtures("no_server_left_behind")
def test_a_config_that_answers_wrongly_regresses_on_quality_and_may_not_replace(tmp_path):
    """The study's quality guard on: A's first launch answers the probes as the reference, B's are judged against
    them (the fake answers wrongly below 128 batched tokens, a padded-shape bug no real server shows on demand)."""
    from tests.study.test_quality_guard import write_study as guarded_study

    path = guarded_study(tmp_path, "wrong-below-batch:128")
    for batched in (32, 128):
        (tmp_path / f"b{batched}.yaml").write_text(yaml.safe_dump(
            {"model": "fake", "max-model-len": 256, "max-num-batched-tokens": batched}))
    out = tmp_path / "verdict.json"
    args = ["compare", str(path), str(tmp_path / "b128.yaml"), str(tmp_path / "b32.yaml"), "--launches", "1",
            "--json", str(out), "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    quality = next(m for m in json.loads(out.read_text())["metrics"] if m["name"] == "quality")
    assert quality["a"] == [1.0] and quality["b"][0] < 1.0
    # Run again with two launches a side: the two already written are kept, two more launched.
    again = CliRunner().invoke(app, [*args[:5], "2", *args[6:]])
    assert "resuming: 2 launches already" in again.output
    store = stored_comparison(tmp_path / "runs", path)
    assert [(launch.launch, launch.side) for launch in store.launches()] == [(1, "A"), (2, "B"), (3, "B"), (4, "A")]
    quality = next(m for m in json.loads(out.read_text())["metrics"] if m["name"] == "quality")
    assert quality["verdict"] == "REGRESSION" and quality["a"] == [1.0, 1.0]
    # The same --out for another pair of configs would mix two comparisons: refused, nothing launched.
    other = CliRunner().invoke(app, [*args[:2], str(tmp_path / "b32.yaml"), str(tmp_path / "b128.yaml"),
                                     *args[4:]])
    assert other.exit_code == 2 and "holds the comparison of A='b128.yaml'" in other.output
    assert len(store.launches()) == 4
    # optuna-dashboard shows it: each launch's note, and the verdict as the study's note.
    from optuna_dashboard import get_note

    from tuner.report import publish_to_dashboard
    from tuner.study._optuna import live_trial

    assert publish_to_dashboard(store.study) == 5
    assert "REGRESSION" in get_note(store.study) and "b32.yaml" in get_note(store.study)
    first = get_note(live_trial(store.study, store.study.trials[0]))
    assert first.startswith("## Launch 1: side A (b128.yaml)") and "| sweep |" in first
