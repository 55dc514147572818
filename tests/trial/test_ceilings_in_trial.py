"""A level above the slice's decode ceiling, end to end on the fake server (real uvicorn): flagged with the reason,
left out of the objectives (a level above a ceiling never decides), and stored with its share of both ceilings.
A fake because no real server here can be made faster than the memory it reads; the slice is made slow instead."""
from __future__ import annotations

import pytest
from tests.builders import TIMEOUTS, fake_config, load

from tuner.capacity.memory_fit import shape_from_config
from tuner.contracts.goals import Goals
from tuner.contracts.hardware import Chip, Hardware
from tuner.contracts.outcomes import Outcome
from tuner.scoring.score import score_run
from tuner.trial import run_trial
from tuner.trial.sweep_plan import SweepPlan

pytestmark = pytest.mark.usefixtures("no_server_left_behind")
SHAPE = shape_from_config({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 2048,
                           "intermediate_size": 128}, "tiny")


def slice_reading(bytes_per_s: float) -> Hardware:
    """One chip of a fast compute peak and the given memory bandwidth."""
    return Hardware(Chip("test-chip", "gpu", 1e18, bytes_per_s, 80 * 2**30, 16, 0, 1), 1)


def launch(tmp_path, hardware: Hardware):
    plan = SweepPlan(load=load(concurrency=[1, 4], input_len=8, output_len=8, repeats=1), hardware=hardware,
                     model_shape=SHAPE)
    return run_trial(fake_config(tmp_path), plan, TIMEOUTS, str(tmp_path / "server.log")).result


def test_a_level_above_the_decode_ceiling_is_flagged_with_why_and_never_decides(tmp_path):
    result = launch(tmp_path, slice_reading(1e6))  # ~1 MB/s: the tiny shape's weights allow a few steps a second
    sweep = [lv for lv in result.levels if lv.phase == "sweep"]
    # Both planned levels measured (each flagged one measured again too): the loop below checks every one of them.
    assert {lv.concurrency for lv in sweep} == {1, 4}
    assert all(not lv.reliable for lv in sweep)
    for lv in sweep:
        check = lv.plausibility
        assert check is not None and not check.valid and check.decode.share > 1.0
        assert "of the decode ceiling" in check.reason and "without speculation 1" in check.reason
        assert any(w.startswith("implausible: ") for w in lv.warnings)
    score = score_run(result, Goals(objectives=("output_tok_s",)))
    # On a busy host the client may be flagged as saturated too; implausible is always among the flags.
    assert score.outcome == Outcome.UNRELIABLE and "implausible" in score.flags
    assert score.values["output_tok_s"] == 0.0 and score.operating_point is None  # penalized, no level decided


def test_within_both_ceilings_every_level_stores_its_shares(tmp_path):
    result = launch(tmp_path, slice_reading(1e15))
    # Both planned levels measured (a level a busy host flags is measured again): the loop checks every one of them.
    assert {(lv.phase, lv.concurrency) for lv in result.levels} == {("sweep", 1), ("sweep", 4)}
    for lv in result.levels:
        check = lv.plausibility
        assert check.valid and 0 < check.decode.share < 1 and 0 < check.compute.share < 1
        assert not any(w.startswith("implausible") for w in lv.warnings)  # (a busy host may flag the client)
        assert check.decode.batch == min(lv.concurrency, 4)  # the fake's --max-num-seqs 4
