"""Checks what `make demo` left behind, as CI does: every trial measured, every launch's slice time split by phase and
the live phases printed, every launch that served with a quality figure, every sweep level measured to a precision
(and saying what ended it) and every level with its share of both
ceilings (the CPU host's bandwidth measured), the front printed and confirmed, best.yaml written from confirmed numbers with the quality evidence, and (with --report) the HTML report rendered in headless Chromium with no console
error and one point per search trial (screenshot: test-artifacts/demo-report.png).

    python scripts/check_demo.py --log demo-output.txt [--report report.html]

Exit 0 when the demo did its job; otherwise one line per problem and exit 1.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import optuna
import yaml

from tuner.study.front import study_front
from tuner.study.records import records


def problems(log_text: str, storage: str, study_name: str, best_yaml: Path) -> list[str]:
    found = []
    if "front of" not in log_text:
        found.append("the demo printed no front")
    if not best_yaml.is_file() or not isinstance(yaml.safe_load(best_yaml.read_text()), dict):
        found.append(f"{best_yaml} was not written as a YAML mapping")
    elif "# confirmed: median of" not in best_yaml.read_text():
        found.append(f"{best_yaml} does not carry confirmed numbers")
    elif "# quality: greedy answers" not in best_yaml.read_text():
        found.append(f"{best_yaml} does not state the quality evidence")
    elif "the model's defaults" not in next((line for line in best_yaml.read_text().splitlines()
                                             if line.startswith("# measured with ")), ""):
        found.append(f"{best_yaml} does not say it was measured with the model's default sampling")
    elif not re.search(r"^#   this launch at concurrency \d+: .*(95 % CI|no 95 % CI)", best_yaml.read_text(),
                       re.M):
        found.append(f"{best_yaml} does not give its operating point's throughput with its interval (or why none)")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not study_front(study).confirmed:
        found.append("the front was not confirmed")
    trials = records(study)
    for r in trials:
        if r.state == "FAIL":  # infra failures and tuner errors end as FAIL: the demo must have none
            found.append(f"trial {r.number} was not measured: {r.failure_class}: {r.failure_detail[:200]}")
    if "slice-h" not in log_text:
        found.append("the demo's progress lines show no slice time")
    for r in trials:
        if r.launched and r.wall_s and not r.phases:
            found.append(f"trial {r.number} held a slice but its time is not split by phase")
    if r"probes" not in log_text or "c=64" not in log_text:
        found.append("the demo printed no live phase of a running trial (probes, levels)")
    served = [r for r in trials if r.complete and r.launched and r.levels]
    for r in served:  # the quality guard is on in the quickstart: every launch that served answered the probes
        if r.score is None or r.score.quality is None:
            found.append(f"trial {r.number} served but has no quality figure")
    for r in served:  # the slice's two ceilings (tuner/capacity/roofline.py): every level stores its share of each
        for level in r.levels:
            check = level.plausibility
            if check is None or check.compute is None or check.decode is None:
                found.append(f"trial {r.number}: level c={level.concurrency} ({level.phase}) has no share of both"
                             f" ceilings: {check.off if check else 'not checked'}")
            elif "measured on this host" not in check.decode.bandwidth_source:
                found.append(f"trial {r.number}: the CPU host's bandwidth is not said to be measured")
    for r in served:  # precision, not counts: every sweep level says what ended it (tuner/load/stopping.py)
        for level in r.levels:
            if level.phase == "sweep" and (level.ended_by is None or level.precision_target is None):
                found.append(f"trial {r.number}: level c={level.concurrency} was not measured to a precision")
    feasible = [r for r in trials if r.complete and r.launched and r.feasible]
    if not feasible:
        found.append("no trial produced a feasible measurement")
    for r in feasible:
        for level in r.levels:
            if level.failed:
                found.append(f"trial {r.number}: {level.failed} failed requests at concurrency {level.concurrency}:"
                             f" {level.errors}")
    return found


def report_problems(report: Path, storage: str, study_name: str) -> list[str]:
    """Render the report as a person would open it (tests/browser.py drives Debian's Chromium)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.browser import chromium, open_page, report_points

    if not report.is_file():
        return [f"{report} was not written"]
    study = optuna.load_study(study_name=study_name, storage=storage)
    expected = sum(1 for r in records(study) if r.search_launch)
    with chromium() as driver:
        page = open_page(driver, report.resolve().as_uri(), "document.querySelectorAll('.js-plotly-plot .main-svg')"
                         ".length > 0", "demo-report")
        points = report_points(driver, "front")
    found = [f"{report}: console error: {line[:300]}" for line in page.console_errors]
    if points != expected:
        found.append(f"{report}: the front plot shows {points} points for {expected} search trials")
    if "Physical limits" not in report.read_text():
        found.append(f"{report}: no Physical limits table (each level against the slice's ceilings)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, required=True, help="what `make demo` printed")
    parser.add_argument("--storage", default="sqlite:///tuner.db")
    parser.add_argument("--study", default="quickstart-cpu")
    parser.add_argument("--best", type=Path, default=Path("best.yaml"))
    parser.add_argument("--report", type=Path, default=None, help="the demo's report.html, checked in Chromium")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = problems(args.log.read_text(errors="replace"), args.storage, args.study, args.best)
    if args.report is not None:
        found += report_problems(args.report, args.storage, args.study)
    for line in found:
        print(f"demo check: {line}", file=sys.stderr)
    if not found:
        print("demo check: every trial measured, confirmed front printed, best.yaml written from confirmed numbers"
              + (f", {args.report} rendered in Chromium without errors" if args.report else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
