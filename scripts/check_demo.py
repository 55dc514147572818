"""Checks what `make demo` left behind, as CI does: every trial measured, a Pareto table printed, best.yaml written.

    python scripts/check_demo.py --log demo-output.txt

Exit 0 when the demo did its job; otherwise one line per problem and exit 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
import yaml

from tuner.trial_record import records


def problems(log_text: str, storage: str, study_name: str, best_yaml: Path) -> list[str]:
    found = []
    if "Pareto" not in log_text:
        found.append("the demo printed no Pareto table")
    if not best_yaml.is_file() or not isinstance(yaml.safe_load(best_yaml.read_text()), dict):
        found.append(f"{best_yaml} was not written as a YAML mapping")
    trials = records(optuna.load_study(study_name=study_name, storage=storage))
    for r in trials:
        if r.state == "FAIL":  # infra failures and tuner errors end as FAIL: the demo must have none
            found.append(f"trial {r.number} was not measured: {r.failure_class}: {r.failure_detail[:200]}")
    feasible = [r for r in trials if r.complete and r.launched and r.feasible]
    if not feasible:
        found.append("no trial produced a feasible measurement")
    for r in feasible:
        for level in r.levels:
            if level.failed:
                found.append(f"trial {r.number}: {level.failed} failed requests at concurrency {level.concurrency}:"
                             f" {level.errors}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, required=True, help="what `make demo` printed")
    parser.add_argument("--storage", default="sqlite:///tuner.db")
    parser.add_argument("--study", default="quickstart-cpu")
    parser.add_argument("--best", type=Path, default=Path("best.yaml"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = problems(args.log.read_text(errors="replace"), args.storage, args.study, args.best)
    for line in found:
        print(f"demo check: {line}", file=sys.stderr)
    if not found:
        print("demo check: every trial measured, Pareto table printed, best.yaml written")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
