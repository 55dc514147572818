"""Is the search worth it? Samplers compared on a recorded response surface, many seeds each, in minutes.

    .venv/bin/python benchmarks/search_efficiency.py [--surface benchmarks/data/cpu-tiny-surface.json.gz]
        [--seeds 10] [--budget 24] [--strategies grid,random,tpe,nsga2,gp] [--plot search_efficiency.png]

Every strategy runs tuner's own study loop (tuner.study.StudyRunner) with `replay:` on the surface: each trial
draws one of the launches recorded for its config, so the machine's noise is replayed too, and is scored exactly as
a live trial. No confirmation runs (they are the same for every strategy).

What is compared: after n launches (duplicates and predicted configs cost none), the configs found so far are
taken at their TRUE values (per config, the median over its recorded launches of the objectives at the operating
point; feasible when at least half its launches met every constraint), and the hypervolume of their front is
divided by that of the true front (reference point: 0 throughput, 0 stability). 1.0 means the true front was
found. Median and inter-quartile range over seeds, at 8, 12, 16 and 24 launches and at a quarter of the grid's
size; then, per strategy, the launches it needed to reach 95 % (median over seeds; "-" when most seeds never did
within the budget) and in how many seeds it got there within a quarter of the grid.

optunahub's AutoSampler is not compared: optunahub downloads the sampler's code from GitHub at run time, and these
machines reach only the package registries.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT

CHECKPOINTS = (8, 12, 16, 24)
GOAL = 0.95


def hypervolume(points: list[tuple[float, float]]) -> float:
    """2-D hypervolume of maximized (x, y) points above the reference (0, 0)."""
    volume, best_y = 0.0, 0.0
    for x, y in sorted(points, reverse=True):  # by x descending: each point adds the strip above the best y so far
        if y > best_y:
            volume += x * (y - best_y)
            best_y = y
    return volume


def true_values(surface: dict, goals) -> dict[str, tuple[float, float]]:
    """Config key -> (median rank metric, median stability) of its feasible launches, for feasible configs."""
    from tuner.contracts.results import TrialResult
    from tuner.scoring.score import score_run
    from tuner.study.replay import params_key

    truth = {}
    for config in surface["configs"]:
        scores = [score_run(TrialResult.model_validate(launch["result"]), goals) for launch in config["launches"]]
        feasible = [s for s in scores if all(v <= 0 for v in s.constraints.values())]
        if scores and len(feasible) * 2 >= len(scores):
            truth[params_key(config["params"])] = (
                statistics.median(s.values[goals.rank_metric] for s in feasible),
                statistics.median(s.components.score for s in feasible))
    return truth


def study_file(folder: Path, surface_path: Path, recorded: dict, space_file: Path, strategy: str, seed: int,
               budget: int) -> Path:
    spec = {"name": f"{strategy}-{seed}", "model": "replayed", "search_space": str(space_file),
            "objectives": recorded["study"]["objectives"], "slo": recorded["study"].get("slo", {}),
            "slo_margin": recorded["study"].get("slo_margin", 0.1),
            "load": {k: v for k, v in recorded["study"]["load"].items() if k != "dataset"},
            "confirm": {"repeats": 0}, "trials": budget, "parallel": 1,
            "storage": "sqlite:///unused.db", "runs_dir": str(folder / "runs"),
            "sampler": {"name": strategy, "seed": seed}, "replay": {"surface": str(surface_path), "seed": seed}}
    path = folder / f"{strategy}-{seed}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_one(path: Path) -> list[tuple[dict, float]]:
    """One replayed study in memory; the launched search trials' params in order, each with the slice time its
    replayed launch took when it was recorded (wall_s: startup, probes, sweep, teardown)."""
    import optuna

    from tuner.inputs.spec import load_study
    from tuner.study import StudyRunner, create_or_load
    from tuner.study.records import TrialRecord

    study = load_study(path)
    optuna_study = create_or_load(study, optuna.storages.InMemoryStorage(), study.spec.name)
    StudyRunner(study, optuna_study, study.spec.trials).run()
    launched = []
    for trial in optuna_study.get_trials(deepcopy=False):
        record = TrialRecord.of(trial)
        if record.complete and record.launched and record.confirms is None:
            launched.append((dict(trial.params), record.wall_s))
    return launched


def share_after(launched: list[tuple[dict, float]], n: int, truth: dict, true_hv: float) -> float:
    from tuner.study.replay import params_key

    found = {params_key(p) for p, _ in launched[:n]}
    return hypervolume([truth[k] for k in found if k in truth]) / true_hv


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return q1, q2, q3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--surface", type=Path, default=ROOT / "benchmarks" / "data" / "cpu-tiny-surface.json.gz")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=24, help="launches per study")
    parser.add_argument("--strategies", default="grid,random,tpe,nsga2,gp")
    parser.add_argument("--plot", type=Path, default=None, help="write hypervolume share vs launches (PNG)")
    args = parser.parse_args()

    import optuna

    from tuner.contracts.goals import Goals

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from tuner.study.replay import read_table

    recorded = read_table(args.surface)
    settings = recorded["study"]
    goals = Goals(objectives=tuple(settings["objectives"]), slo=settings.get("slo", {}),
                  slo_margin=settings.get("slo_margin", 0.1))
    truth = true_values(recorded, goals)
    true_front = [v for v in truth.values() if not any(o[0] >= v[0] and o[1] >= v[1] and o != v
                                                          for o in truth.values())]
    true_hv = hypervolume(list(truth.values()))
    grid_size = len(recorded["configs"])
    print(f"surface {args.surface.name} ({recorded.get('kind', 'measured')}): {grid_size} configs,"
          f" {sum(len(c['launches']) for c in recorded['configs'])} launches, {len(truth)} feasible,"
          f" true front of {len(true_front)}")

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    quarter = max(1, round(grid_size / 4))
    checkpoints = sorted({n for n in (*CHECKPOINTS, quarter) if n <= args.budget})
    shares: dict[str, dict[int, list[float]]] = {}
    to_goal: dict[str, list[int | None]] = {}
    hours_to_goal: dict[str, list[float | None]] = {}
    grid_hours = sum(statistics.median(launch["result"].get("wall_s", 0.0) for launch in config["launches"])
                     for config in recorded["configs"] if config["launches"]) / 3600
    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp) / "space.yaml"
        space_file.write_text(yaml.safe_dump(recorded["space"]))
        for strategy in strategies:
            if strategy == "gp":
                import importlib.util

                if not all(importlib.util.find_spec(m) for m in ("torch", "scipy")):
                    print("gp: not run (needs torch and scipy: make bench-deps)")
                    continue
            started = time.perf_counter()
            shares[strategy] = {n: [] for n in checkpoints}
            to_goal[strategy] = []
            hours_to_goal[strategy] = []
            for seed in range(args.seeds):
                path = study_file(Path(tmp), args.surface.resolve(), recorded, space_file, strategy, seed,
                                  args.budget)
                launched = run_one(path)
                for n in checkpoints:
                    shares[strategy][n].append(share_after(launched, n, truth, true_hv))
                reached = next((n for n in range(1, args.budget + 1)
                                if share_after(launched, n, truth, true_hv) >= GOAL), None)
                to_goal[strategy].append(reached)
                hours_to_goal[strategy].append(None if reached is None else
                                               sum(wall for _, wall in launched[:reached]) / 3600)
            print(f"  {strategy}: {args.seeds} seeds in {time.perf_counter() - started:.0f} s", flush=True)

    print(f"\nhypervolume share of the true front after n launches: median [IQR] over {args.seeds} seeds"
          f" (grid of {grid_size} configs)")
    print(f"{'strategy':<10}" + "".join(f"{'n=' + str(n):>20}" for n in checkpoints)
          + f"{'n to 95%':>10}{'<=' + str(quarter) + ' launches':>16}")
    for strategy, by_n in shares.items():
        cells = []
        for n in checkpoints:
            q1, q2, q3 = quartiles(by_n[n])
            cells.append(f"{q2:.3f} [{q1:.2f}-{q3:.2f}]")
        reached = to_goal[strategy]
        needed = statistics.median(n if n is not None else float("inf") for n in reached)
        within = sum(1 for n in reached if n is not None and n <= quarter)
        print(f"{strategy:<10}" + "".join(f"{c:>20}" for c in cells)
              + f"{('-' if needed == float('inf') else f'{needed:g}'):>10}{f'{within} of {len(reached)} seeds':>16}")
    print(f"goal: >= {GOAL:.2f} of the true front's hypervolume within {quarter} launches (25 % of the grid),"
          " median over seeds")
    print(f"\nslice-hours to reach {GOAL:.0%}, replaying each launch's recorded time (the whole grid, every config"
          f" once at its median launch: {grid_hours:.2f} slice-h; 25 % of it: {grid_hours / 4:.2f})")
    for strategy, hours in hours_to_goal.items():
        spent = statistics.median(h if h is not None else float("inf") for h in hours)
        share = "-" if spent == float("inf") else f"{spent:.2f} slice-h ({spent / grid_hours:.0%} of the grid)"
        print(f"{strategy:<10}{share:>36}")
    if args.plot:
        plot(shares, args.plot, grid_size, args.seeds)
    return 0


def plot(shares: dict[str, dict[int, list[float]]], out: Path, grid_size: int, seeds: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (make bench-deps)")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for strategy, by_n in shares.items():
        ns = list(by_n)
        mid = [quartiles(by_n[n])[1] for n in ns]
        ax.plot(ns, mid, marker="o", label=strategy)
        ax.fill_between(ns, [quartiles(by_n[n])[0] for n in ns], [quartiles(by_n[n])[2] for n in ns], alpha=0.15)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    ax.axvline(grid_size / 4, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("launches")
    ax.set_ylabel("hypervolume share of the true front")
    ax.set_title(f"search efficiency: median and IQR over {seeds} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot written to {out}")


if __name__ == "__main__":
    sys.exit(main())
