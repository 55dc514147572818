"""scripts/check_demo.py, what CI runs after `make demo`: it must fail on an unmeasured trial or a missing table."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna

_spec = importlib.util.spec_from_file_location("check_demo", Path(__file__).parents[2] / "scripts" / "check_demo.py")
check_demo = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(check_demo)  # type: ignore[union-attr]


def make_storage(tmp_path: Path, with_infra_failure: bool) -> str:
    from tests.builders import add_trial

    storage = f"sqlite:///{tmp_path / 'demo.db'}"
    study = optuna.create_study(study_name="quickstart-cpu", storage=storage, directions=["maximize", "maximize"])
    study.set_user_attr("spec", {"model": "m", "confirm": {"repeats": 1}})
    first = add_trial(study, [1000.0, 0.9], -1.0, {}, params={"seqs": 4})
    add_trial(study, [1010.0, 0.9], -1.0, {}, params={"seqs": 4}, confirms=first)
    if with_infra_failure:
        bad = study.ask()
        bad.set_user_attr("failure_class", "infra")
        study.tell(bad, state=optuna.trial.TrialState.FAIL)
    return storage


GOOD_LOG = ("[0/1 done, 1 running, 0 penalized, 0.00 slice-h] trial 0: probes: 21 probes\n"
            "[0/1 done, 1 running, 0 penalized, 0.00 slice-h] trial 0: sweep: c=64: 128 requests\nfront of quickstart-cpu")
GOOD_HEADER = ("# confirmed: median of 2 launches (trials 0, 1)\n# measured with temperature 1, top_p 0.95: the model's"
               " defaults\n# quality: greedy answers agree with the reference on"
               " 21 of 21 probes, first token 100%, logprob divergence 0.000 vs noise 0.000\n"
               "#   this launch at concurrency 16: 1,839 output tok/s, 95 % CI 1,790-1,888 tok/s; TTFT p99 410.0 ms,"
               " 95 % CI from 300 ms, no upper bound (too few requests)\nmodel: m\n")


def test_a_good_demo_passes(tmp_path):
    (tmp_path / "best.yaml").write_text(GOOD_HEADER)
    assert check_demo.problems(GOOD_LOG, make_storage(tmp_path, False), "quickstart-cpu",
                               tmp_path / "best.yaml") == []


def test_unmeasured_trials_and_missing_outputs_are_problems(tmp_path):
    found = check_demo.problems("no table here", make_storage(tmp_path, True), "quickstart-cpu", tmp_path / "best.yaml")
    assert any("no front" in p for p in found) and any("best.yaml" in p for p in found)
    assert any("trial 2 was not measured: infra" in p for p in found)


def test_an_unconfirmed_export_is_a_problem(tmp_path):
    (tmp_path / "best.yaml").write_text("# UNCONFIRMED: one launch\nmodel: m\n")
    found = check_demo.problems(GOOD_LOG, make_storage(tmp_path, False), "quickstart-cpu",
                                tmp_path / "best.yaml")
    assert found == ["best.yaml".join([str(tmp_path) + "/", " does not carry confirmed numbers"])]


def test_an_export_without_quality_evidence_is_a_problem(tmp_path):
    (tmp_path / "best.yaml").write_text("# confirmed: median of 2 launches (trials 0, 1)\nmodel: m\n")
    found = check_demo.problems(GOOD_LOG, make_storage(tmp_path, False), "quickstart-cpu",
                                tmp_path / "best.yaml")
    assert found == [f"{tmp_path / 'best.yaml'} does not state the quality evidence"]


def test_a_launch_that_served_without_a_quality_figure_is_a_problem(tmp_path):
    from tests.builders import add_trial, level

    storage = make_storage(tmp_path, False)
    study = optuna.load_study(study_name="quickstart-cpu", storage=storage)
    unjudged = add_trial(study, [900.0, 0.9], -1.0, {}, params={"seqs": 8}, levels=[level(output_throughput=900.0)])
    (tmp_path / "best.yaml").write_text(GOOD_HEADER)
    found = check_demo.problems(GOOD_LOG, storage, "quickstart-cpu", tmp_path / "best.yaml")
    assert found == [f"trial {unjudged} served but has no quality figure",
                     f"trial {unjudged}: level c=1 (sweep) has no share of both ceilings: not checked",
                     f"trial {unjudged}: level c=1 was not measured to a precision"]


def test_every_sweep_level_of_the_demo_says_what_ended_it(tmp_path):
    from tests.builders import add_trial, level

    from tuner.contracts.results import LevelEnd

    storage = make_storage(tmp_path, False)
    study = optuna.load_study(study_name="quickstart-cpu", storage=storage)
    (tmp_path / "best.yaml").write_text(GOOD_HEADER)
    measured = level(output_throughput=900.0)
    measured.ended_by, measured.precision_target = LevelEnd.PRECISION, 0.15
    counted = add_trial(study, [900.0, 0.9], -1.0, {}, params={"seqs": 8}, levels=[level(output_throughput=900.0)])
    precise = add_trial(study, [900.0, 0.9], -1.0, {}, params={"seqs": 4}, levels=[measured])
    found = [p for p in check_demo.problems(GOOD_LOG, storage, "quickstart-cpu", tmp_path / "best.yaml")
             if "precision" in p]
    assert found == [f"trial {counted}: level c=1 was not measured to a precision"]
    assert precise != counted


def test_every_level_of_the_demo_must_carry_its_share_of_both_ceilings_measured_on_the_host(tmp_path):
    from tests.builders import add_trial, level

    from tuner.capacity.memory_fit import shape_from_config
    from tuner.capacity.roofline import Roofline, ServingKnobs, SliceLimits, slice_limits
    from tuner.contracts.hardware import parse_hardware

    shape = shape_from_config({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "vocab_size": 2048, "intermediate_size": 128}, "tiny")
    storage = make_storage(tmp_path, False)
    study = optuna.load_study(study_name="quickstart-cpu", storage=storage)
    (tmp_path / "best.yaml").write_text(GOOD_HEADER)
    for limits, expected in ((slice_limits(parse_hardware("cpu")), []),
                             (SliceLimits("cpu", 1e11, "catalog", 1e10, "a catalog figure"),
                              ["the CPU host's bandwidth is not said to be measured"])):
        lv = level(output_throughput=900.0)
        lv.plausibility = Roofline(shape, limits, ServingKnobs()).check(lv)
        number = add_trial(study, [900.0, 0.9], -1.0, {}, params={"seqs": 8}, levels=[lv])
        found = [p for p in check_demo.problems(GOOD_LOG, storage, "quickstart-cpu", tmp_path / "best.yaml")
                 if "ceiling" in p or "bandwidth" in p]
        assert found == [f"trial {number}: {e}" for e in expected]


def test_a_demo_that_showed_no_live_phase_or_slice_time_is_a_problem(tmp_path):
    (tmp_path / "best.yaml").write_text(GOOD_HEADER)
    found = check_demo.problems("front of quickstart-cpu", make_storage(tmp_path, False), "quickstart-cpu",
                                tmp_path / "best.yaml")
    assert found == ["the demo's progress lines show no slice time",
                     "the demo printed no live phase of a running trial (probes, levels)"]


def test_a_demo_measured_with_greedy_requests_is_a_problem(tmp_path):
    greedy = GOOD_HEADER.replace("temperature 1, top_p 0.95: the model's defaults", "temperature 0 (greedy): set by"
                                 " the study")
    (tmp_path / "best.yaml").write_text(greedy)
    found = check_demo.problems(GOOD_LOG, make_storage(tmp_path, True), "quickstart-cpu", tmp_path / "best.yaml")
    assert any("the model's default sampling" in p for p in found)


def test_an_export_without_its_interval_is_a_problem(tmp_path):
    bare = "".join(line for line in GOOD_HEADER.splitlines(keepends=True) if "this launch at" not in line)
    (tmp_path / "best.yaml").write_text(bare)
    found = check_demo.problems(GOOD_LOG, make_storage(tmp_path, False), "quickstart-cpu", tmp_path / "best.yaml")
    assert found == [f"{tmp_path / 'best.yaml'} does not give its operating point's throughput with its interval"
                     " (or why none)"]
