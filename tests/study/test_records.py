"""The storage boundary: what the study stores is read back through typed records, and storages written by
earlier versions of tuner (as their attributes were written then) still load."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from tuner.contracts.outcomes import FailureClass, Outcome
from tuner.scoring.confirmation import ConfigSummary
from tuner.scoring.score import Evidence, Score, StabilityComponents
from tuner.study import records as rec
from tuner.study.records import StudyRecord, TrialCounts, TrialRecord

# A trial's `score` as tuner wrote it before the records were typed (dataclasses.asdict + components.score).
OLD_SCORE = {
    "outcome": "died_under_load", "detail": "exit code 1 at concurrency 4",
    "values": {"output_tok_s": 120.5, "stability": 0.0},
    "constraints": {"config_failure": -1.0, "slo": -1.0, "measurement": -1.0},
    "components": {"survival": 0.0, "success": 0.9, "headroom": 1.0, "consistency": 1.0, "score": 0.0},
    "evidence": {"phases_planned": 2, "phases_lived": 1, "survived": False, "requests": 40, "completed": 36,
                 "preemptions": 0.0, "peak_kv_usage": None, "repeat_spread": None},
    "operating_point": "c=1", "operating_concurrency": 1, "operating_rate": None, "flags": [],
}


def frozen(attrs: dict, values=(120.5, 0.0), constraints=None) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(directions=["maximize", "maximize"])
    trial = optuna.trial.create_trial(params={"seqs": 4}, distributions={"seqs": CategoricalDistribution([4])},
                                      values=list(values), user_attrs=attrs, constraints=constraints)
    study.add_trial(trial)
    return study.trials[0]


def test_a_score_stored_by_an_earlier_version_reads_as_typed_models():
    record = TrialRecord.of(frozen({"score": OLD_SCORE, "failure_class": "died_under_load"},
                                   constraints={"config_failure": -1.0, "slo": -1.0, "measurement": -1.0}))
    assert isinstance(record.score, Score) and record.outcome is FailureClass.DIED_UNDER_LOAD
    assert record.failure_class is FailureClass.DIED_UNDER_LOAD
    assert record.score.components == StabilityComponents(survival=0.0, success=0.9, headroom=1.0)
    assert record.score.evidence.lived_through is False and record.operating_concurrency == 1
    assert record.stability == 0.0 and record.run_value("output_tok_s") == 120.5


def test_older_still_no_survived_no_score_and_the_legacy_constraint_attribute():
    before_survived = json.loads(json.dumps(OLD_SCORE))
    del before_survived["evidence"]["survived"]
    assert not TrialRecord.of(frozen({"score": before_survived})).score.evidence.lived_through  # 1 of 2 phases
    unscored = TrialRecord.of(frozen({"score": {}, "constraint": 0.0}))  # before scores and Optuna constraints
    assert unscored.score is None and unscored.feasible and unscored.outcome is Outcome.MEASURED
    assert unscored.throughput == 120.5 and unscored.stability == 0.0  # the values, as those studies stored them


def test_what_the_record_writes_is_what_it_reads():
    score = Score(outcome=Outcome.MEASURED, values={"output_tok_s": 10.0},
                  components=StabilityComponents(survival=1.0, success=1.0, headroom=0.5),
                  evidence=Evidence(phases_planned=1, phases_lived=1, survived=True, requests=4, completed=4))
    written = TrialRecord(score=score, failure_class=None, confirms=3, prompts_s=0.25, prompts_built=12)
    attrs = written.user_attrs()
    json.dumps(attrs)  # plain JSON: optuna-dashboard shows it as is
    assert attrs[rec.ATTR_SCORE]["components"]["score"] == 0.5  # kept for readers of the raw attribute
    assert rec.ATTR_DUPLICATE_OF not in attrs and attrs[rec.ATTR_CONFIRMS] == 3
    back = TrialRecord.of(frozen(attrs, constraints={"config_failure": -1.0}))
    assert back.score == score and back.confirms == 3 and back.prompts_built == 12


def test_the_study_record_reads_every_study_attribute_an_earlier_version_wrote():
    study = optuna.create_study(directions=["maximize", "maximize"])
    summary = {"trial": 2, "params": {"seqs": 4}, "runs": [2, 5, 6], "confirmed": True, "feasible": True,
               "values": {"output_tok_s": 100.0}, "spread": 0.01, "operating_concurrency": 4, "slo_met_runs": 3,
               "components": {"survival": 1.0, "success": 1.0, "headroom": 1.0, "consistency": 1.0, "score": 1.0},
               "outcomes": ["measured", "measured", "oom"]}
    for key, value in {"study_file": "studies/x.yaml", "artifact_dir": "/runs/artifacts", "sampler": "tpe",
                       "spec": {"model": "m", "objectives": ["output_tok_s", "stability"], "confirm": {"repeats": 2},
                                "replay": {"surface": "s.json", "seed": 1}, "hardware": {"name": "tpu-v6e-4"},
                                "something_newer": 1},
                       "confirmed_trial_2": summary, "confirmed_front": [2],
                       "matrix_trial_2": {"points": [{"concurrency": 1}]}, "search_stopped": "patience"}.items():
        study.set_user_attr(key, value)
    record = StudyRecord.of(study)
    assert record.spec.model == "m" and record.spec.confirm.repeats == 2 and record.spec.replay.surface == "s.json"
    assert record.spec.goals().chips == 4 and record.spec.goals().objectives == ("output_tok_s", "stability")
    assert record.confirmed_front == [2] and isinstance(record.confirmed[2], ConfigSummary)
    assert record.confirmed[2].outcomes[-1] is FailureClass.OOM and record.matrices[2].points == [{"concurrency": 1}]
    assert record.sampler == "tpe" and record.search_stopped == "patience" and record.artifact_dir == "/runs/artifacts"


def test_a_study_without_attributes_has_the_defaults_studies_had():
    record = StudyRecord.of(optuna.create_study())
    assert record.spec.confirm.repeats == 0 and record.spec.goals().objectives == ("output_tok_s", "stability")
    assert record.confirmed == {} and record.spec.replay is None


def test_writers_round_trip_through_the_record():
    study = optuna.create_study(directions=["maximize", "maximize"])
    summary = ConfigSummary(trial=0, params={}, runs=[0, 1], confirmed=True, feasible=True, values={"a": 1.0},
                            spread=None, components=StabilityComponents(survival=1.0, success=1.0, headroom=1.0),
                            operating_concurrency=8, outcomes=[Outcome.MEASURED, FailureClass.OOM])
    rec.write_confirmed(study, [summary], [0])
    rec.write_matrix(study, 0, [{"concurrency": 8}])
    rec.write_search_stopped(study, "why")
    back = StudyRecord.of(study)
    assert back.confirmed == {0: summary} and back.confirmed_front == [0] and back.search_stopped == "why"
    assert back.matrices[0].points == [{"concurrency": 8}]


@pytest.mark.parametrize("running", [False, True])
def test_a_duplicate_is_answered_from_the_earlier_trial_only_when_it_finished(running):
    earlier = frozen({"score": OLD_SCORE, "failure_class": "died_under_load", "failure_detail": "d"})
    if running:
        earlier = optuna.trial.FrozenTrial(**{**{k.lstrip("_"): getattr(earlier, k) for k in (
            "number", "state", "values", "datetime_start", "datetime_complete", "params", "distributions",
            "user_attrs", "system_attrs", "intermediate_values")}, "state": optuna.trial.TrialState.RUNNING,
            "values": None, "datetime_complete": None, "trial_id": 0, "value": None})
    attrs = rec.duplicate_attrs(earlier)
    assert attrs[rec.ATTR_DUPLICATE_OF] == 0 and attrs[rec.ATTR_LAUNCHED] is False
    assert (rec.ATTR_SCORE in attrs) is not running


def test_counts_are_the_same_for_the_loop_and_the_status_table():
    search = TrialRecord(number=0, feasible=True, score=None)
    predicted = TrialRecord(number=1, launched=False, predicted=True)
    confirmation = TrialRecord(number=2, feasible=True, confirms=0)
    answered = TrialRecord(number=3, duplicate_of=0, launched=False)
    counts = TrialCounts.of([search, predicted, confirmation, answered])
    assert counts.search == [search, predicted] and counts.launched == [search] and counts.predicted == [predicted]
    assert counts.confirmations == [confirmation] and counts.answered == [answered]


def test_a_record_has_one_origin_and_contradicting_markers_are_refused():
    from pydantic import ValidationError

    from tuner.study.records import TrialOrigin

    assert TrialRecord(number=1).origin == TrialOrigin.SEARCH
    assert TrialRecord(number=2, launched=False, predicted=True).origin == TrialOrigin.PREDICTED
    assert TrialRecord(number=3, launched=False, duplicate_of=1).origin == TrialOrigin.ANSWERED
    assert TrialRecord(number=4, launched=False, warm_start_from="other#7").origin == TrialOrigin.WARM_START
    assert TrialRecord(number=5, confirms=1).origin == TrialOrigin.CONFIRMATION
    assert TrialRecord(number=6, rerecords_reference=True).origin == TrialOrigin.REFERENCE
    with pytest.raises(ValidationError, match="both predicted"):
        TrialRecord(number=7, launched=True, predicted=True)
    with pytest.raises(ValidationError, match="state"):
        TrialRecord(number=8, state="DONE")
