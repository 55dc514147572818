"""Export: a stored trial becomes YAML that `vllm serve --config` takes (keys without --, JSON flags as mappings)."""
from __future__ import annotations

import optuna
import pytest
import yaml
from tests.builders import add_trial

from tuner.errors import TrialNotFound
from tuner.report.export import render_config, render_env_file, select_trial, write_atomically


@pytest.fixture
def study():
    """A study that asks for no confirmation: exports carry single-launch numbers, marked unconfirmed."""
    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("spec", {"model": "google/gemma-4-26B-A4B-it", "confirm": {"repeats": 0}})
    add_trial(s, [100.0, 0.99], -1.0, {"--max-num-seqs": 256, "--enable-prefix-caching": True,
                                       "--speculative-config": {"method": "ngram", "num_speculative_tokens": 3}},
              {"VLLM_TPU_BUCKET_PADDING_GAP": "256", "HF_TOKEN": "***"})
    add_trial(s, [200.0, 0.50], -1.0, {"--max-num-seqs": 2048})
    add_trial(s, [0.0, 0.0], 1.0, {"--max-num-seqs": 4096})
    add_trial(s, [90.0, 0.40], -1.0, {"--max-num-seqs": 8})  # dominated
    return s


def test_selectors(study):
    assert select_trial(study, "max-throughput").number == 1
    assert select_trial(study, "max-stability").number == 0
    assert select_trial(study, "3").number == 3


def test_infeasible_or_unknown_trials_refused(study):
    with pytest.raises(TrialNotFound, match="not a feasible"):
        select_trial(study, "2")
    with pytest.raises(TrialNotFound, match="no trial 99"):
        select_trial(study, "99")
    with pytest.raises(TrialNotFound, match="trial number"):
        select_trial(study, "fastest")


def test_config_yaml_is_what_vllm_config_expects(study):
    text = render_config(study, select_trial(study, "0"))
    data = yaml.safe_load(text)
    assert data == {
        "model": "google/gemma-4-26B-A4B-it",
        "max-num-seqs": 256,
        "enable-prefix-caching": True,
        "speculative-config": {"method": "ngram", "num_speculative_tokens": 3},
    }
    assert "#   VLLM_TPU_BUCKET_PADDING_GAP=256" in text
    assert "output_tok_s: 100.000" in text
    assert "UNCONFIRMED" in text


def level(concurrency, tok_s, reliable=True):
    from tuner.contracts.results import LevelResult

    return LevelResult(concurrency=concurrency, requests=10, completed=10, failed=0, duration_s=1.0,
                       output_throughput=tok_s, reliable=reliable, workload="dataset chats.jsonl: 10 samples",
                       warnings=[] if reliable else ["client_saturated: lag"]).model_dump(mode="json")


def test_confirmed_study_exports_only_confirmed_medians():
    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 2}, "slo": {"ttft_p99_ms": 500.0}})
    flags = {"--max-num-seqs": 16}
    first = add_trial(s, [100.0, 1.0], -1.0, flags, params={"seqs": 16},
                      levels=[level(16, 100.0), level(64, 900.0, reliable=False)])
    with pytest.raises(TrialNotFound, match="no confirmed config yet"):
        select_trial(s, "max-throughput")
    add_trial(s, [110.0, 1.0], -1.0, flags, params={"seqs": 16}, confirms=first)
    add_trial(s, [90.0, 1.0], -1.0, flags, params={"seqs": 16}, confirms=first)
    chosen = select_trial(s, "max-throughput")
    assert chosen.number == first and chosen.summary.runs == [0, 1, 2]
    text = render_config(s, chosen)
    assert "confirmed: median of 3 launches" in text
    assert "output_tok_s: 100.000" in text  # the median, not the best launch
    assert "workload: dataset chats.jsonl" in text
    assert "SLOs ttft_p99_ms <= 500: met in 3 of 3 launches" in text
    assert "[flagged, not used]" in text  # the saturated level is shown, and said to be left out
    # The median's distribution-free interval across launches; the launch's own level (stored before intervals).
    assert "range 90-110 across 3 launches (holds the median with 75 % confidence)" in text
    assert "this launch at concurrency 64: 900 output tok/s, no interval recorded" in text and "[flagged]" in text


def test_the_header_gives_the_operating_point_with_its_intervals():
    from tuner.contracts.results import Interval, LatencyStats, LevelResult

    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 0}})
    measured = LevelResult(
        concurrency=64, requests=120, completed=120, failed=0, duration_s=10.0, output_throughput=7498.0,
        output_throughput_ci=Interval(low=7120.0, high=7880.0, relative=0.0507, samples=8, method="batch means"),
        ttft_ms=LatencyStats(p99=410.0, p99_ci=Interval(low=300.0, reason="too few requests for an upper bound of"
                                                         " the p99: 120 sent, about 460 needed")),
    ).model_dump(mode="json")
    add_trial(s, [7498.0, 1.0], -1.0, {"--max-num-seqs": 64}, levels=[measured])
    text = render_config(s, select_trial(s, "max-throughput"))
    assert ("#   this launch at concurrency 64: 7,498 output tok/s, 95 % CI 7,120-7,880 tok/s; TTFT p99 410.0 ms,"
            " 95 % CI from 300 ms, no upper bound (too few requests for an upper bound of the p99: 120 sent, about"
            " 460 needed)") in text
    assert "7,498.0 tok/s (+/-5.1%)" in text


def test_env_file_never_contains_secrets(study):
    text = render_env_file(select_trial(study, "0"))

    assert "export VLLM_TPU_BUCKET_PADDING_GAP=256" in text
    assert "HF_TOKEN is a secret" in text and "***" not in text


def test_write_atomically_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "best.yaml"
    write_atomically(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["best.yaml"]



def test_the_header_says_which_sampling_measured_it_and_how_drafts_fared(tmp_path):
    from tuner.contracts.results import LevelResult, Speculation
    from tuner.contracts.sampling import SamplingInForce, ServerDefaults
    from tuner.report.export import launch_command

    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 0},
                             "server": {"command": [".venv-vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]}})
    sampling = SamplingInForce(defaults=ServerDefaults(values={"temperature": 1.0, "top_p": 0.95},
                                                       source="generation_config"))
    drafts = Speculation(drafts=100, draft_tokens=300, accepted_tokens=90, acceptance_rate=0.3,
                         accepted_per_draft=0.9, per_position=[0.5, 0.25, 0.15])
    measured = LevelResult(concurrency=64, requests=10, completed=10, failed=0, duration_s=1.0, output_throughput=1.0,
                           sampling=sampling, speculation=drafts).model_dump(mode="json")
    add_trial(s, [100.0, 1.0], -1.0, {"--max-num-seqs": 16}, levels=[measured])
    text = render_config(s, select_trial(s, "max-throughput"))
    assert "# measured with temperature 1, top_p 0.95: the model's defaults" in text
    assert "# drafts accepted at concurrency 64: 50% at the first draft, then 25%, 15% (1.90 tokens per step)" in text
    old = optuna.create_study(directions=["maximize", "maximize"])
    old.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 0}})
    add_trial(old, [100.0, 1.0], -1.0, {"--max-num-seqs": 16}, levels=[level(16, 100.0)])
    assert "# measured with temperature 0 (greedy)" in render_config(old, select_trial(old, "max-throughput"))
    assert launch_command(s, tmp_path / "best.yaml", tmp_path / "best.env").endswith(
        f".venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --config {tmp_path / 'best.yaml'}")
    assert launch_command(old, tmp_path / "b.yaml") == f"vllm serve --config {tmp_path / 'b.yaml'}"
