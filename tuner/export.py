"""A stored trial -> a YAML file `vllm serve --config FILE` accepts unchanged, and an env file.

Keys are long option names without `--`; JSON-valued flags become mappings (vLLM turns them back into JSON);
booleans stay booleans. Environment variables cannot go into vLLM's config file, so they are written as
comments and, with --env-file, as KEY=value lines. Secrets are never written.
"""
from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml

from tuner.errors import TrialNotFound
from tuner.server.config import REDACTED
from tuner.trial_record import TrialRecord, best_by, pareto_front

SELECTORS = {"max-throughput": "throughput", "max-stability": "stability"}


def select_trial(study: optuna.Study, selector: str) -> TrialRecord:
    """A trial number, or the best feasible trial by one objective (ties broken by the other)."""
    if selector.isdigit():
        number = int(selector)
        for t in study.get_trials(deepcopy=False):
            if t.number == number:
                record = TrialRecord.of(t)
                if not (record.complete and record.feasible):
                    cls = record.failure_class or record.state.lower()
                    raise TrialNotFound(f"trial {number} is not a feasible measured trial ({cls}); see `tuner study pareto`")
                return record
        raise TrialNotFound(f"study {study.study_name!r} has no trial {number}")
    if selector not in SELECTORS:
        raise TrialNotFound(f"--trial takes a trial number, max-throughput or max-stability, not {selector!r}")
    front = pareto_front(study)
    if not front:
        raise TrialNotFound(f"study {study.study_name!r} has no feasible trial yet")
    return best_by(front, SELECTORS[selector])


def vllm_config(study: optuna.Study, record: TrialRecord) -> dict[str, Any]:
    spec = study.user_attrs.get("spec", {})
    config: dict[str, Any] = {"model": spec.get("model")}
    for flag, value in record.server_flags.items():
        if value is not None:
            config[flag[2:]] = value
    return config


def _comment_block(study: optuna.Study, record: TrialRecord) -> list[str]:
    lines = [
        f"# tuner export: study {study.study_name!r}, trial {record.number}",
        f"# measured: {record.throughput:,.1f} output tok/s (peak, at concurrency {record.peak_concurrency}),"
        f" stability {record.stability:.3f}",
    ]
    if record.stability_components:
        lines.append("# stability components: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in record.stability_components.items()))
    for level in record.levels:
        lines.append(
            f"#   concurrency {level.concurrency:>4} (run {level.repeat + 1}): {level.output_throughput:,.1f} tok/s,"
            f" ok {level.completed}/{level.requests}, TTFT p50 {_ms(level.ttft_ms.p50)},"
            f" ITL p50 {_ms(level.itl_ms.p50)}, E2EL p99 {_ms(level.e2el_ms.p99)}"
        )
    if record.env:
        lines.append("# environment (vLLM's config file cannot set these; export them or use --env-file):")
        lines += [f"#   {k}={v}" for k, v in record.env.items()]
    lines.append("# usage: vllm serve --config THIS_FILE")
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def render_config(study: optuna.Study, record: TrialRecord) -> str:
    body = yaml.safe_dump(vllm_config(study, record), sort_keys=False, default_flow_style=False)
    return "\n".join(_comment_block(study, record)) + "\n" + body


def render_env_file(record: TrialRecord) -> str:
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
