"""Checks what `make demo` left behind, as CI does: every trial measured, the front printed and confirmed, best.yaml
written from confirmed numbers.

    python scripts/check_demo.py --log demo-output.txt

Exit 0 when the demo did its job; otherwise one line per problem and exit 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
import yaml

from tuner.confirmation import study_front
from tuner.trial_record import records


def problems(log_text: str, storage: str, study_name: str, best_yaml: Path) -> list[str]:
    found = []
    if "front of" not in log_text:
        found.append("the demo printed no front")
    if not best_yaml.is_file() or not isinstance(yaml.safe_load(best_yaml.read_text()), dict):
        found.append(f"{best_yaml} was not written as a YAML mapping")
    elif "# confirmed: median of" not in best_yaml.read_text():
        found.append(f"{best_yaml} does not carry confirmed numbers")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not study_front(study).confirmed:
        found.append("the front was not confirmed")
    trials = records(study)
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
        print("demo check: every trial measured, confirmed front printed, best.yaml written from confirmed numbers")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
