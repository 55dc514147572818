"""What a report shows, read from storage: one row per search trial, the seed's trade-off table, curves, failures
and the search's progress."""
from __future__ import annotations

from tuner.report._data import FEASIBLE, report_data


def test_one_row_per_search_trial_with_its_outcome_and_label(reviewed):
    data = report_data(reviewed.load())
    assert list(data.trials["trial"]) == [0, 1, 2]
    assert list(data.trials["outcome"]) == [FEASIBLE, FEASIBLE, "kv_capacity"]
    assert data.trials.loc[0, "label"] == "baseline: one sequence"
    assert list(data.trials["on_front"]) == [False, True, False]
    assert data.trials.loc[2, "output_tok_s"] == 0.0  # measured nothing: plotted at 0, never dropped


def test_the_tradeoff_puts_the_baseline_beside_the_peak_with_the_change(reviewed):
    data = report_data(reviewed.load())
    baseline, peak = data.tradeoff.columns
    assert baseline.startswith("baseline: baseline: one sequence: trial 0") and "trial 1" in peak
    before = float(data.tradeoff.loc["output tok/s", baseline].replace(",", ""))
    after, change = data.tradeoff.loc["output tok/s", peak].split(" ")
    assert float(after.replace(",", "")) > before and change.startswith("(+")
    assert data.tradeoff.loc["max_num_seqs" if "max_num_seqs" in data.tradeoff.index else "seqs", peak] == "4"


def test_curves_failures_and_progress(reviewed):
    data = report_data(reviewed.load())
    assert list(data.curves[1]["concurrency"]) == [1, 4]
    assert list(data.failures["trial"]) == [2] and "KV cache" in data.failures.loc[0, "detail"]
    shares = list(data.progress["share_of_final"])
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert data.recommended is not None and data.recommended.number == 1


def test_a_matrix_stored_by_study_matrix_becomes_a_heatmap(reviewed, tmp_path):
    import shutil

    import optuna

    from tuner.report._figures import all_figures

    shutil.copy(reviewed.root / "db.sqlite", tmp_path / "db.sqlite")
    study = optuna.load_study(study_name="reviewed", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    points = [{"concurrency": c, "input_len": i, "output_len": 64, "output_tok_s": float(c * i)}
              for c in (1, 8) for i in (128, 1024)]
    study.set_user_attr("matrix_trial_1", {"points": points})
    data = report_data(study)
    assert len(data.matrices[1]) == 4
    heatmap = all_figures(data)["matrix-1"].data[0]
    assert heatmap.type == "heatmap" and list(heatmap.x) == ["1", "8"]


def test_importance_ranks_the_parameters_every_launch_has_when_some_are_conditional():
    """`num_speculative_tokens` exists only where `spec_method` is set (the quickstart's space): the ranking covers
    the parameters all feasible launches share instead of failing on the missing one (a CI demo did)."""
    from tuner.contracts.outcomes import Outcome
    from tuner.report._data import _importance
    from tuner.scoring.score import Score, StabilityComponents
    from tuner.study.records import TrialRecord

    def launch(number: int, seqs: int, spec: str | None, throughput: float) -> TrialRecord:
        params = {"max_num_seqs": seqs, "spec_method": spec} | ({"num_speculative_tokens": 2} if spec else {})
        parts = StabilityComponents(survival=1, success=1, headroom=1, consistency=1)
        return TrialRecord(number=number, params=params, feasible=True,
                           score=Score(outcome=Outcome.MEASURED, values={"output_tok_s": throughput}, components=parts))

    search = [launch(0, 4, None, 100), launch(1, 16, "ngram", 300), launch(2, 64, None, 500), launch(3, 16, None, 280),
              launch(4, 64, "ngram", 520)]
    ranked = _importance(search, ("output_tok_s",))
    assert set(ranked["parameter"]) == {"max_num_seqs", "spec_method"}
    assert ranked.set_index("parameter").loc["max_num_seqs", "importance"] > 0.5
