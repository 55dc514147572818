"""What a report shows, read from the study's storage alone: plain tables (pandas) that the HTML, Markdown and
dashboard renderers draw. Nothing here draws.

    trials      one row per search trial: outcome, the numbers it measured, its flags, the label of an enqueued one
    tradeoff    the seed's table: baseline, peak and balanced configs side by side, with the change over the baseline
    curves      per chosen config, its sweep levels: throughput, TTFT and ITL against concurrency
    failures    where in the space configs failed and why
    progress    the front's hypervolume after each launched trial (is the search still improving?)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from tuner.contracts.goals import direction_of
from tuner.contracts.phases import LaunchPhase
from tuner.contracts.results import LevelResult, LevelRole
from tuner.contracts.sampling import describe_sampling
from tuner.errors import TunerError
from tuner.scoring.confirmation import ConfigSummary
from tuner.study._optuna import hypervolume
from tuner.study.cost import StudyCost, costs_slice_time, grid_size, study_cost
from tuner.study.front import StudyFront, best_of, study_front
from tuner.study.records import StudyRecord, TrialRecord, records

# How each outcome is named in a report's legend. Penalized trials are named by their failure class.
FEASIBLE = "feasible"
SLO_MISS = "slo_miss"
FLAGGED = "unreliable (flagged levels)"


@dataclass
class Chosen:
    """A config the report explains: its role (baseline, peak, balanced), search trial and combined numbers."""

    role: str
    record: TrialRecord
    summary: ConfigSummary | None  # None: the baseline when it was not feasible


@dataclass
class ReportData:
    study: optuna.Study  # the numbers' source (the export renders the recommended config from it)
    study_name: str
    title_note: str  # "confirmed medians", "UNCONFIRMED single launches", "REPLAYED ..."
    objectives: tuple[str, ...]
    slo: dict[str, float]
    trials: pd.DataFrame
    front: StudyFront
    chosen: list[Chosen]
    tradeoff: pd.DataFrame
    curves: dict[int, pd.DataFrame]  # search trial -> its sweep levels
    failures: pd.DataFrame
    progress: pd.DataFrame
    param_names: list[str]
    importance: pd.DataFrame  # objective, parameter, importance (PED-ANOVA, feasible launches); empty if too few
    recommended: Any = None  # tuner.report.export.Selection of the recommended config, or None (why: recommended_why)
    recommended_why: str = ""
    matrices: dict[int, pd.DataFrame] = field(default_factory=dict)  # trial -> `tuner study matrix` points
    cost: StudyCost | None = None  # slice time spent, by phase (tuner.study.cost)
    launches: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per launch: its slice time by phase
    limits: pd.DataFrame = field(default_factory=pd.DataFrame)  # the chosen configs' levels against the ceilings
    traffic: str = ""  # "traffic: dataset chat.jsonl ...; sampling: temperature 0.8, top_p 0.95: the model's defaults"


def outcome_of(record: TrialRecord) -> str:
    outcome = record.outcome
    if outcome == "measured":
        return FEASIBLE
    if outcome == "unreliable":
        return FLAGGED
    if record.predicted or not record.launched:
        return f"{outcome} (predicted)"
    return outcome


def report_data(study: optuna.Study, recommend: str = "max-throughput") -> ReportData:
    recs = records(study)
    search = [r for r in recs if r.search_launch]
    front = study_front(study)
    labels = _enqueue_labels(study, recs)
    param_names = sorted({name for r in search for name in r.params})
    chosen = _chosen(search, front, labels)
    recommended, why = _recommended(study, recommend)
    return ReportData(
        study=study, study_name=study.study_name, title_note=_title_note(study, front), objectives=front.goals.objectives,
        slo=dict(front.goals.slo), trials=_trials_table(search, front, labels, param_names), front=front,
        chosen=chosen, tradeoff=_tradeoff(chosen, param_names), curves={c.record.number: _curve(c.record)
                                                                           for c in chosen},
        failures=_failures(search, param_names), progress=_progress(search, front.goals.objectives),
        param_names=param_names, importance=_importance(search, front.goals.objectives),
        recommended=recommended, recommended_why=why, matrices=_matrices(study),
        cost=study_cost(recs, StudyRecord.of(study).spec.price_per_slice_hour, grid_of(study)),
        launches=_launches(recs), limits=limits_table(chosen), traffic=traffic_sentence(search))


def traffic_sentence(search: list[TrialRecord]) -> str:
    """What every level was measured with: the traffic and its sampling (which decides whether drafts pay)."""
    level = next((lv for r in search for lv in r.levels if lv.phase == LevelRole.SWEEP), None)
    if level is None:
        return ""
    return f"traffic: {level.workload or 'unrecorded'}; sampling: {describe_sampling(level.sampling)}"


def grid_of(study: optuna.Study) -> int | None:
    """The configs of the searched space, from the distributions Optuna stored with the trials (None: a
    continuous parameter; conditional ones counted as always set, an upper bound)."""
    sizes: dict[str, int | None] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                size: int | None = len(dist.choices)
            elif isinstance(dist, optuna.distributions.IntDistribution) and not dist.log:
                size = (dist.high - dist.low) // dist.step + 1
            elif isinstance(dist, optuna.distributions.IntDistribution):
                size = dist.high - dist.low + 1
            else:
                size = None
            known = sizes.get(name, 0)
            sizes[name] = None if size is None or (name in sizes and known is None) else max(size, known or 0)
    if not sizes or any(v is None for v in sizes.values()):
        return None
    return grid_size({name: [0] * (size or 1) for name, size in sizes.items()})


def _launches(recs: list[TrialRecord]) -> pd.DataFrame:
    """Every launch that held a slice: its role, minutes of slice time and seconds per phase."""
    rows = []
    for r in recs:
        if not costs_slice_time(r):
            continue
        role = f"confirms {r.confirms}" if r.confirms is not None else "search"
        rows.append({"trial": r.number, "role": role, "outcome": outcome_of(r), "slice_min": round(r.wall_s / 60, 2),
                     "startup_s": round(r.startup_s, 1) if r.startup_s is not None else None,
                     "compile_cache": str(r.startup.get("startup_compile_cache") or "unknown"),
                     **{f"{name}_s": round(seconds, 1) for name, seconds in (r.phases or {"other": r.wall_s}).items()}})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    phase_columns = [c for c in frame.columns if c.endswith("_s") and c != "startup_s"]
    frame[phase_columns] = frame[phase_columns].fillna(0.0)
    phases = [f"{p.value}_s" for p in LaunchPhase if f"{p.value}_s" in frame.columns]
    return frame[["trial", "role", "outcome", "slice_min", "startup_s", "compile_cache", *phases]]


def _title_note(study: optuna.Study, front: StudyFront) -> str:
    note = "confirmed medians" if front.confirmed else "UNCONFIRMED single launches"
    return f"REPLAYED, NOT MEASURED; {note}" if StudyRecord.of(study).spec.replay else note


def _enqueue_labels(study: optuna.Study, recs: list[TrialRecord]) -> dict[int, str]:
    """Search trial -> its label from the study file's enqueue_labels (in the order the entries were listed)."""
    names = StudyRecord.of(study).spec.enqueue_labels
    enqueued = [r for r in recs if r.enqueued and r.search_launch]
    labels = {r.number: (names[i] if i < len(names) else f"enqueued #{i + 1}") for i, r in enumerate(enqueued)}
    return labels


def _operating_level(record: TrialRecord):
    """The level a trial's numbers come from: its operating point, or else its fastest reliable sweep level."""
    level = record.peak_level
    if level is not None:
        return level
    sweep = [lv for lv in record.levels if lv.phase == LevelRole.SWEEP and lv.reliable and lv.completed]
    return max(sweep, key=lambda lv: lv.output_throughput, default=None)


def _shown(params: dict[str, Any], name: str) -> Any:
    """A parameter's value as a table cell: a chosen null (no speculative decoding) reads "null"; a parameter the
    trial does not have (a conditional one whose condition is off) stays empty."""
    if name in params and params[name] is None:
        return "null"
    return params.get(name)


def _trials_table(search: list[TrialRecord], front: StudyFront, labels: dict[int, str],
                  param_names: list[str]) -> pd.DataFrame:
    on_front = {c.trial for c in front.configs}
    rows = []
    for r in search:
        level = _operating_level(r)
        rows.append({
            "trial": r.number, "outcome": outcome_of(r), "label": labels.get(r.number, ""),
            "on_front": r.number in on_front,
            "output_tok_s": level.output_throughput if level else 0.0,
            "output_ci_tok_s": _half_width(level),
            "stability": r.stability if r.stability is not None else (r.score.components.score if r.score else 0.0),
            "ttft_p99_ms": level.ttft_ms.p99 if level else None, "itl_p99_ms": level.itl_ms.p99 if level else None,
            "concurrency": level.concurrency if level else None,
            "failure": r.failure_class or "", "detail": (r.failure_detail or r.prediction or (r.score.detail if r.score else ""))[:200],
            "flagged_levels": sum(1 for lv in r.levels if not lv.reliable),
            "quality": r.score.quality.figure if r.score is not None and r.score.quality is not None else None,
            "sweep_stopped": r.sweep_stopped, "hostname": r.hostname, "node_id": r.node_id[:12],
            **{f"param:{n}": _shown(r.params, n) for n in param_names},
        })
    guarded = any(row["quality"] is not None for row in rows)  # the quality guard was on
    columns = ["trial", "outcome", "label", "on_front", "output_tok_s", "output_ci_tok_s", "stability", "ttft_p99_ms", "itl_p99_ms",
               "concurrency", "failure", "detail", "flagged_levels", *(["quality"] if guarded else []),
               "sweep_stopped", "hostname", "node_id", *(f"param:{n}" for n in param_names)]
    return pd.DataFrame(rows, columns=columns)


def _chosen(search: list[TrialRecord], front: StudyFront, labels: dict[int, str]) -> list[Chosen]:
    by_number = {r.number: r for r in search}
    chosen: list[Chosen] = []
    if labels:
        first = min(labels)
        summary = next((c for c in front.configs if c.trial == first), None)
        chosen.append(Chosen(f"baseline: {labels[first]}", by_number[first], summary))
    if front.configs:
        rank = front.goals.rank_metric
        peak = best_of(front, rank)
        balanced = best_of(front, "stability") if "stability" in front.goals.objectives else None
        for role, summary in ((f"peak ({rank})", peak), ("balanced (most stable on the front)", balanced)):
            if summary is None:
                continue
            same = next((c for c in chosen if c.record.number == summary.trial), None)
            if same is not None:  # one config plays both roles: one column, named for both
                same.role += f" = {role}"
                same.summary = summary
            else:
                chosen.append(Chosen(role, by_number[summary.trial], summary))
    return chosen


def _tradeoff(chosen: list[Chosen], param_names: list[str]) -> pd.DataFrame:
    """Metrics as rows, configs as columns (the seed's layout); each cell beyond the baseline says its change."""
    if not chosen:
        return pd.DataFrame()
    columns: dict[str, dict[str, str]] = {}
    base = chosen[0] if chosen[0].role.startswith("baseline") else None
    for c in chosen:
        metrics = _metrics(c)
        cells = {}
        for name, value in metrics.items():
            cells[name] = f"{value:.3f}" if name in ("stability", "survival") and value is not None else _fmt(value)
            if base is not None and c is not base and isinstance(value, float):
                base_value = _metrics(base).get(name)
                if isinstance(base_value, float) and base_value:
                    cells[name] += f" ({(value - base_value) / abs(base_value):+.0%})"
        for n in param_names:
            cells[n] = _fmt(_shown(c.record.params, n) if n in c.record.params else "-")
        columns[f"{c.role}: trial {c.record.number}"] = cells
    return pd.DataFrame(columns)


def _metrics(c: Chosen) -> dict[str, Any]:
    s = c.summary
    level = _operating_level(c.record)
    metrics: dict[str, Any] = {}
    metrics["output tok/s"] = float(s.values.get("output_tok_s", level.output_throughput if level else 0.0)) \
        if s else (float(level.output_throughput) if level else None)
    metrics["stability"] = s.components.score if s else None
    metrics["TTFT p99 (ms)"] = float(level.ttft_ms.p99) if level and level.ttft_ms.p99 is not None else None
    metrics["ITL p99 (ms)"] = float(level.itl_ms.p99) if level and level.itl_ms.p99 is not None else None
    metrics["at concurrency"] = s.operating_concurrency if s else (level.concurrency if level else None)
    metrics["launches"] = len(s.runs) if s else 1
    metrics["survival"] = s.components.survival if s else None
    metrics["drafts accepted"] = acceptance_cell(level) if level and level.speculation else None
    metrics["status"] = ("on the front" if s else outcome_of(c.record))
    return metrics


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


CURVE_COLUMNS = ["concurrency", "repeat", "output_tok_s", "output_ci_tok_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms",
                 "failed", "reliable", "warnings", "decode_ceiling_tok_s", "compute_ceiling_tok_s", "ceilings",
                 "drafts_accepted"]


def _curve(record: TrialRecord) -> pd.DataFrame:
    """A config's sweep levels, each with the slice's two ceilings at that level (as output tok/s)."""
    rows = [{"concurrency": lv.concurrency, "repeat": lv.repeat, "output_tok_s": lv.output_throughput,
             "output_ci_tok_s": _half_width(lv),
             "ttft_p50_ms": lv.ttft_ms.p50, "ttft_p99_ms": lv.ttft_ms.p99, "itl_p50_ms": lv.itl_ms.p50,
             "itl_p99_ms": lv.itl_ms.p99, "failed": lv.failed, "reliable": lv.reliable,
             "warnings": "; ".join(lv.warnings), **_ceilings(lv)}
            for lv in record.levels if lv.phase == LevelRole.SWEEP]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _half_width(level: LevelResult | None) -> float | None:
    """The half-width of the level's 95 % throughput interval in tok/s (the error bar); None without one."""
    if level is None or level.output_throughput_ci is None or level.output_throughput_ci.relative is None:
        return None
    return level.output_throughput * level.output_throughput_ci.relative


def ceiling_cell(level: LevelResult) -> str:
    """The level's share of the slice's compute and decode (bandwidth) ceilings (tuner/capacity/roofline.py)."""
    return "-" if level.plausibility is None else level.plausibility.shares()


def acceptance_cell(level: LevelResult) -> str:
    """Speculative decoding as the server counted it, under the level's sampling: acceptance by draft position
    ("48% / 22% / 9% / 4%": the first decides whether drafting pays) and the tokens per step it bought."""
    spec = level.speculation
    if spec is None:
        return "-"
    rates = " / ".join(f"{p:.0%}" for p in spec.per_position) or f"{spec.acceptance_rate:.0%}"
    return f"{rates} ({1 + spec.accepted_per_draft:.2f} tokens/step)"


def _ceilings(level: LevelResult) -> dict[str, Any]:
    """The level's ceilings as output tok/s: decode directly; compute as the output rate at which everything the
    level computed would reach 100% of peak (its output tok/s / compute share)."""
    check = level.plausibility
    decode = check.decode.ceiling_tok_s if check and check.decode else None
    compute = (level.output_throughput / check.compute.share if check and check.compute and check.compute.share > 0
               else None)
    return {"decode_ceiling_tok_s": decode, "compute_ceiling_tok_s": compute, "ceilings": ceiling_cell(level),
            "drafts_accepted": acceptance_cell(level)}


def limits_table(chosen: list[Chosen]) -> pd.DataFrame:
    """Every sweep level of the chosen configs against the slice's ceilings: what the report's "Physical limits"
    table shows."""
    rows = []
    for c in chosen:
        for lv in c.record.levels:
            if lv.phase != LevelRole.SWEEP:
                continue
            cells = _ceilings(lv)
            rows.append({"config": c.role, "trial": c.record.number, "concurrency": lv.concurrency,
                         "repeat": lv.repeat, "output tok/s": round(lv.output_throughput),
                         "decode ceiling tok/s": None if cells["decode_ceiling_tok_s"] is None
                         else round(cells["decode_ceiling_tok_s"]),
                         "share of ceilings": cells["ceilings"], "drafts accepted": cells["drafts_accepted"],
                         "within": "yes" if lv.plausibility is None or lv.plausibility.valid else "NO"})
    return pd.DataFrame(rows)


def _failures(search: list[TrialRecord], param_names: list[str]) -> pd.DataFrame:
    rows = [{"trial": r.number, "outcome": outcome_of(r), "detail": (r.failure_detail or r.prediction or "")[:160],
             **{n: r.params.get(n) for n in param_names}}
            for r in search if outcome_of(r) != FEASIBLE]
    return pd.DataFrame(rows, columns=["trial", "outcome", "detail", *param_names])


def _progress(search: list[TrialRecord], objectives: tuple[str, ...]) -> pd.DataFrame:
    """The front's hypervolume after each launched search trial, in launch order, and as a share of the final one.
    Optuna's hypervolume minimizes, so maximized objectives are negated; the reference point is 0 for them and 10 %
    past the worst value any feasible launch gave for minimized ones (latency, cost), fixed over the whole history."""
    signs = [1.0 if direction_of(name) == "maximize" else -1.0 for name in objectives]
    launched = sorted((r for r in search if r.launched), key=lambda r: r.number)
    losses: list[list[float] | None] = []
    for r in launched:
        values = [r.run_value(name) for name in objectives]
        feasible = r.feasible and all(v is not None for v in values)
        losses.append([-s * float(v or 0.0) for s, v in zip(signs, values)] if feasible else None)
    seen = [loss for loss in losses if loss is not None]
    reference = [0.0 if s > 0 else max((loss[i] for loss in seen), default=0.0) * 1.1 + 1e-9
                 for i, s in enumerate(signs)]
    rows, front = [], []
    for i, (r, loss) in enumerate(zip(launched, losses), start=1):
        if loss is not None:
            front.append(loss)
        volume = hypervolume(front, reference) if front else 0.0
        rows.append({"launch": i, "trial": r.number, "hypervolume": volume})
    frame = pd.DataFrame(rows, columns=["launch", "trial", "hypervolume"])
    final = frame["hypervolume"].iloc[-1] if len(frame) else 0.0
    frame["share_of_final"] = frame["hypervolume"] / final if final else 0.0
    return frame


def _importance(search: list[TrialRecord], objectives: tuple[str, ...]) -> pd.DataFrame:
    """How much each parameter explains each objective, over the feasible launches (Optuna's PED-ANOVA evaluator,
    which needs no scikit-learn, on an in-memory copy: penalized trials carry no measured value of their own).

    Only parameters every feasible launch has are ranked: a conditional one (`num_speculative_tokens`, set only
    when `spec_method` is) is absent from some launches, and its parent's importance already covers whether it is
    set at all."""
    columns = ["objective", "parameter", "importance"]
    feasible = [r for r in search if r.launched and r.feasible and r.params]
    names = sorted(set.intersection(*(set(r.params) for r in feasible))) if feasible else []
    if len(feasible) < 3 or not names:
        return pd.DataFrame(columns=columns)
    distributions = {n: _distribution_of([r.params[n] for r in feasible]) for n in names}
    rows = []
    for name in objectives:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory" per objective
        copy = optuna.create_study(direction=direction_of(name))
        for r in feasible:
            value = r.run_value(name)
            if value is not None:
                params = {n: r.params[n] for n in names}
                copy.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
        try:
            found = optuna.importance.get_param_importances(copy, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError):  # too few distinct configs to split on
            continue
        rows += [{"objective": name, "parameter": p, "importance": v} for p, v in found.items()]
    return pd.DataFrame(rows, columns=columns)


def _distribution_of(values: list[Any]) -> optuna.distributions.BaseDistribution:
    """A distribution holding every value seen (the stored study's own distributions are not needed for fANOVA)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        if all(isinstance(v, int) for v in values):
            return optuna.distributions.IntDistribution(low, max(high, low + 1))
        return optuna.distributions.FloatDistribution(low, max(high, low + 1e-9))
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))


def _recommended(study: optuna.Study, selector: str):
    from tuner.report.export import select_trial

    try:
        return select_trial(study, selector), ""
    except TunerError as exc:
        return None, str(exc)


def _matrices(study: optuna.Study) -> dict[int, pd.DataFrame]:
    """Matrices `tuner study matrix` stored with the study: trial number -> its points."""
    return {number: pd.DataFrame(run.points) for number, run in StudyRecord.of(study).matrices.items()}
