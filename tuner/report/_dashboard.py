"""What optuna-dashboard shows of a tuner study beyond Optuna's own views: a note a person can read on every trial
(the command, the outcome in one sentence, the levels table, why it was penalized or flagged), a note on the study,
and the report's figures saved with the study. Written at the end of `tuner study start` and when `tuner
dashboard` opens; a note that did not change is not written again."""
from __future__ import annotations

import shlex

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial, TrialState

from tuner.compare.store import (
    STUDY_ATTR_COMPARED_FOR,
    STUDY_ATTR_SIDES,
    STUDY_ATTR_VERDICT,
    CompareLaunch,
    is_comparison,
)
from tuner.contracts.outcomes import Outcome
from tuner.contracts.results import LevelResult, LevelRole
from tuner.contracts.sampling import describe_sampling
from tuner.report._data import FEASIBLE, acceptance_cell, ceiling_cell, outcome_of, report_data
from tuner.report._figures import all_figures
from tuner.report._render import cost_sentence
from tuner.study._optuna import live_trial
from tuner.study.records import TrialRecord


def publish(study: optuna.Study) -> int:
    """Write every finished trial's note, the study's note and the figures; returns how many notes changed."""
    if is_comparison(study):
        return _publish_comparison(study)
    changed = 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        trial = live_trial(study, frozen)
        changed += _save_if_changed(trial, trial_note(TrialRecord.of(frozen)))
    data = report_data(study)
    changed += _save_if_changed(study, study_note(data))
    for figure_id, figure in all_figures(data).items():
        optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=f"tuner-{figure_id}")
    return changed


def _save_if_changed(target, body: str) -> int:
    if optuna_dashboard.get_note(target) == body:
        return 0
    optuna_dashboard.save_note(target, body)
    return 1


def _publish_comparison(study: optuna.Study) -> int:
    """A comparison study (tuner compare): each launch's note, and the verdict table as the study's note."""
    changed = 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        launch = CompareLaunch.of(frozen)
        changed += _save_if_changed(live_trial(study, frozen), trial_note(
            _launch_record(frozen, launch), title=f"Launch {launch.launch}: side {launch.side} ({launch.label})"))
    attrs = study.user_attrs
    verdict = attrs.get(STUDY_ATTR_VERDICT) or "No verdict yet: the comparison has not finished.\n"
    sides = attrs.get(STUDY_ATTR_SIDES, {})
    named = ", ".join(f"{name} = `{label}`" for name, label in sides.items())
    head = [f"## {study.study_name}", "", f"`tuner compare` for study {attrs.get(STUDY_ATTR_COMPARED_FOR, '?')}:"
            f" {named}; one trial per launch (parameter `side`).", ""]
    return changed + _save_if_changed(study, "\n".join(head) + "\n" + verdict)


def _launch_record(frozen: FrozenTrial, launch: CompareLaunch) -> TrialRecord:
    """A comparison launch read as a trial record, so its note reads as a study trial's does."""
    return TrialRecord.of_result(launch.result, number=frozen.number, state=frozen.state.name, values=frozen.values,
                                 feasible=frozen.state == TrialState.COMPLETE)


def outcome_sentence(record: TrialRecord) -> str:
    outcome = outcome_of(record)
    if record.warm_start_from:
        return f"Added by warm start from trial {record.warm_start_from}: not launched or measured by this study."
    if record.answered:
        return f"Same parameters as trial {record.duplicate_of}: answered from it, not launched."
    if record.state == TrialState.FAIL.name:
        return (f"Not measured ({record.failure_class or 'failed'}): {record.failure_detail or 'no detail'}. Not"
                " counted in the budget; its parameters were queued again when the cause was the cluster.")
    if record.predicted or not record.launched:
        return f"Penalized without a launch ({outcome}): {record.prediction or record.failure_detail}."
    if outcome == FEASIBLE:
        level = record.peak_level
        where = f" at concurrency {level.concurrency}" if level else ""
        return (f"Feasible: {record.throughput or 0:,.0f} output tok/s{where}, stability "
                f"{record.stability or 0:.3f}.")
    if outcome == "slo_miss":
        return f"Measured, but no load level met every SLO: penalized as slo_miss. {record.failure_detail}".rstrip()
    if record.outcome == "unreliable":
        return "Measured, but too many levels were flagged (client saturated, token mismatch): not scored."
    if record.outcome == Outcome.WRONG_OUTPUT:
        return f"Measured, but its answers differ from the reference's beyond its noise: penalized. {record.score.detail if record.score else ''}".rstrip()
    return f"Penalized: {outcome} — {record.failure_detail or 'see the server log artifact'}."


def quality_lines(record: TrialRecord) -> list[str]:
    """The quality figure and, for a probe that diverged, its answer beside the reference's."""
    quality = record.score.quality if record.score is not None else None
    if quality is None:
        return []
    lines = [f"**Quality** {quality.figure:.3f}: {quality.describe()}.", ""]
    if quality.diverged:
        first = quality.diverged[0]
        where = "its first token" if first.diverged_at == 0 else f"token {first.diverged_at}"
        lines += [f"First divergent probe `{first.probe}` (at {where}):", "",
                  "| reference | this trial |", "|---|---|",
                  f"| {first.reference_text.replace('|', '/')} | {first.answer_text.replace('|', '/')} |", ""]
    return lines


def limits_sources(levels: list[LevelResult]) -> list[str]:
    """Where the ceilings' figures came from (catalog or measured on the host), and any that were off."""
    checked = next((lv.plausibility for lv in levels if lv.plausibility is not None), None)
    if checked is None:
        return []
    said = [f"compute: {checked.compute.peak_source}" if checked.compute else "",
            f"bandwidth: {checked.decode.bandwidth_source}" if checked.decode else "", *checked.off]
    return ["Ceilings of " + checked.hardware + ": " + "; ".join(s for s in said if s) + ".", ""]


def trial_note(record: TrialRecord, title: str = "") -> str:
    role = (f"confirmation run of trial {record.confirms}" if record.confirms is not None else "search trial")
    lines = [f"## {title or f'Trial {record.number} ({role})'}", "", outcome_sentence(record), ""]
    if record.argv:
        lines += ["**Command**", "", "```sh", " ".join(shlex.quote(a) for a in record.argv), "```", ""]
    if record.env:
        lines += ["**Environment**: " + ", ".join(f"`{k}={v}`" for k, v in record.env.items()), ""]
    if record.hostname:
        startup = f" (startup {record.startup_s:.0f} s)" if record.startup_s is not None else ""
        attempts = f", {record.attempts} attempts" if record.attempts > 1 else ""
        node = f" (Ray node `{record.node_id[:12]}`)" if record.node_id else ""
        lines += [f"Ran on `{record.hostname}`{node} in {record.wall_s:.0f} s{startup}{attempts}.", ""]
    if record.relaunched_after:
        lines += [f"**Relaunched once**: a signal killed its first launch before it served ({record.relaunched_after});"
                  " that death counts against survival.", ""]
    if record.phases:
        split = ", ".join(f"{name.replace('_', ' ')} {seconds:,.0f} s" for name, seconds in record.phases.items())
        lines += [f"**Slice time** {record.wall_s:,.0f} s: {split}.", ""]
    if record.levels:
        sweep = next((lv for lv in record.levels if lv.phase == LevelRole.SWEEP), record.levels[0])
        lines += [f"**Sampling**: {describe_sampling(sweep.sampling)}.", ""]
        lines += ["| phase | concurrency | output tok/s (95 % CI) | TTFT p50 / p99 ms | ITL p99 ms | failed | ceilings |"
                  " drafts accepted | checks |", "|---|---|---|---|---|---|---|---|---|"]
        for lv in record.levels:
            checks = "ok" if lv.reliable and not lv.warnings else ("FLAGGED: " if not lv.reliable else "") + \
                "; ".join(lv.warnings)
            ci = lv.output_throughput_ci
            within = f" ±{ci.relative:.0%}" if ci is not None and ci.relative is not None else ""
            lines.append(f"| {lv.phase} | {lv.concurrency} | {lv.output_throughput:,.0f}{within} | "
                         f"{_ms(lv.ttft_ms.p50)} / {_ms(lv.ttft_ms.p99)} | {_ms(lv.itl_ms.p99)} | "
                         f"{lv.failed} of {lv.describe_end()} | {ceiling_cell(lv)} | {acceptance_cell(lv)} |"
                         f" {checks.replace('|', '/')} |")
        lines.append("")
        lines += limits_sources(record.levels)
    if record.sweep_stopped:
        lines += [f"The sweep stopped early: {record.sweep_stopped}.", ""]
    lines += quality_lines(record)
    if record.log_tail:
        lines += ["The server log and raw per-request records are this trial's artifacts (below)."]
    return "\n".join(lines).rstrip() + "\n"


def study_note(data) -> str:
    lines = [f"## {data.study_name}", "", f"{data.title_note}; objectives: {', '.join(data.objectives)}.", ""]
    if data.traffic:
        lines += [f"Measured with {data.traffic}.", ""]
    if len(data.tradeoff):
        lines += ["### Trade-off", "", data.tradeoff.to_markdown(), ""]
    if data.recommended is not None:
        lines += [f"Recommended: trial {data.recommended.number} — `tuner study export {data.study_name} --trial "
                  f"{data.recommended.number} -o best.yaml`.", ""]
    else:
        lines += [data.recommended_why, ""]
    lines += [f"**Cost**: {cost_sentence(data)}", ""]
    lines += ["Plots made by tuner are below the charts (ids `tuner-*`); `tuner study report` writes them as one"
              " HTML file."]
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
