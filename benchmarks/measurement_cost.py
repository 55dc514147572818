"""What does precision instead of counts cost, and does it find the same front? The quickstart study run twice in
one invocation on the real CPU vLLM: fixed counts (`precision: null`, every level sends requests_per_level) against
the new rules (each level to `screen_precision`, the operating point's repeat to `precision`, requests_per_level the
cap), same seed, same sampler, same traffic; each in its own storage.

    .venv/bin/python benchmarks/measurement_cost.py [--study studies/quickstart-cpu.yaml] [--trials N]
                                                    [--confirm-repeats N] [--candidates N] [--fixed-requests N]
                                                    [--cap N] [--first precision|fixed] [--out DIR]

Run from the repo root after `make demo` (or `make install model`). Prints per arm: launches, slice-hours (search and
confirmation), requests sent, and the confirmed front (trial, parameters, output tok/s with its range across launches
and its precision); then the ratio of slice-hours (precision / fixed; the issue's goal: at most 0.6) and whether the
two fronts agree: the same best config by the rank objective, or, failing that, each arm's best inside the other's
range of figures (within intervals). Both arms share the host, one after the other; a host that other work keeps busy
inflates both (each launch's startup most). It exits 0 either way: it is a benchmark that prints figures.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.study.cost import study_cost  # noqa: E402
from tuner.study.front import study_front  # noqa: E402
from tuner.study.records import records  # noqa: E402


def arm_file(study: Path, arm: str, out: Path, args: argparse.Namespace) -> Path:
    """The study file of one arm, beside the original (its relative paths stay valid), storage under `out`."""
    spec = yaml.safe_load(study.read_text())
    spec["name"] = f"{spec['name']}-{arm}"
    spec["storage"] = f"sqlite:///{(out / f'{arm}.db').resolve()}"
    spec["runs_dir"] = str((out / f"{arm}-runs").resolve())
    if args.trials:
        spec["trials"] = args.trials
    confirm = spec.setdefault("confirm", {})
    if args.confirm_repeats is not None:
        confirm["repeats"] = args.confirm_repeats
    if args.candidates is not None:
        confirm["candidates"] = args.candidates
    load = spec["load"]
    if arm == "fixed":
        load.update(precision=None, screen_precision=None, requests_per_level=args.fixed_requests)
    else:
        load.update(precision=0.05, screen_precision=0.15, requests_per_level=args.cap)
    path = study.parent / f"_{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_arm(path: Path) -> float:
    began = time.monotonic()
    subprocess.run([str(ROOT / ".venv" / "bin" / "tuner"), "study", "start", str(path)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - began


def describe(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    study = optuna.load_study(study_name=spec["name"], storage=spec["storage"])
    recs = records(study)
    cost = study_cost(recs)
    front = study_front(study)
    rank = front.goals.rank_metric
    sent = sum(lv.requests for r in recs for lv in r.levels)
    print(f"\n== {spec['name']}: {len(recs)} trials, {cost.describe()}, {sent:,} requests sent")
    for c in front.configs:
        low, high = (c.rank_range or [c.values[rank], c.values[rank]])
        precision = f"+/-{c.precision:.1%}" if c.precision is not None else "no CI"
        print(f"  trial {c.trial:>3} {rank} {c.values[rank]:>8,.0f} (range {low:,.0f}-{high:,.0f}; point {precision})"
              f" runs {len(c.runs)} {c.params}")
    best = front.configs[0] if front.configs else None
    return {"slice_hours": cost.slice_hours, "best": best, "rank": rank, "front": front.configs}


def agree(a: dict, b: dict) -> str:
    best_a, best_b = a["best"], b["best"]
    if best_a is None or best_b is None:
        return "cannot compare: an arm has no front"
    if best_a.params == best_b.params:
        return "agree: the same best config"
    rank = a["rank"]

    def inside(x, arm) -> bool:
        low, high = arm["best"].rank_range or [arm["best"].values[rank]] * 2
        return low <= x.values[rank] <= high
    params_b = [c.params for c in b["front"]]
    if (best_a.params in params_b and inside(best_a, b)) or inside(best_b, a):
        return "agree within intervals: each best lies inside the other's range, or on the other's front"
    return "DISAGREE: different best configs, outside each other's ranges"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart-cpu.yaml")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--confirm-repeats", type=int, default=None)
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--fixed-requests", type=int, default=128, help="requests per level of the fixed arm")
    parser.add_argument("--cap", type=int, default=256, help="requests_per_level (the cap) of the precision arm")
    parser.add_argument("--first", choices=["precision", "fixed"], default="fixed")
    parser.add_argument("--out", type=Path, default=Path("/tmp/measurement-cost"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    arms = ["fixed", "precision"] if args.first == "fixed" else ["precision", "fixed"]
    files = {arm: arm_file(args.study.resolve(), arm, args.out, args) for arm in arms}
    try:
        for arm in arms:
            for db in args.out.glob(f"{arm}.db"):
                db.unlink()
            wall = run_arm(files[arm])
            print(f"{arm}: ran in {wall / 60:.1f} min")
        result = {arm: describe(files[arm]) for arm in ["fixed", "precision"]}
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
    ratio = result["precision"]["slice_hours"] / result["fixed"]["slice_hours"]
    print(f"\nslice-hours: precision {result['precision']['slice_hours']:.3f} / fixed"
          f" {result['fixed']['slice_hours']:.3f} = {ratio:.2f}x (goal: at most 0.6x)")
    print("fronts: " + agree(result["precision"], result["fixed"]))


if __name__ == "__main__":
    main()
