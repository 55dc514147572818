"""Record a response surface: every config of a search space measured by tuner's own study, several launches each.

    .venv/bin/python benchmarks/record_surface.py [--space search_spaces/cpu-tiny.yaml] [--launches 3]
                                                  [--work surface-work] [--out benchmarks/data/cpu-tiny-surface.json.gz]

The search benchmark (issue 11) replays such a table instead of launching servers: a strategy's trial is answered
by one of the recorded launches of that config, so the machine's noise is replayed too.

How: the whole grid of the space (categorical choices only) is enqueued in one study per launch round
(`<name>-r0`, `-r1`, ...), each run by `tuner study start` on the real CPU vLLM with the quickstart's server and
traffic, shorter levels, and no confirmation. Every launch is a normal trial (exact command, log, failure class).
Resumable: run it again with the same --work folder and it goes on where it stopped. At the end the table is
written as JSON: per config, per launch, the outcome, the objectives at the operating point, the stability
components and every level's throughput and latencies.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import itertools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, TUNER_PY

# The quickstart's server and traffic (studies/quickstart-cpu.yaml), with levels short enough to record the grid
# several times within about an hour on 2 cores.
STUDY = {
    "model": str(ROOT / ".models" / "tiny-llama"),
    "server": {"command": [str(ROOT / ".venv-vllm" / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"],
               "flags": {"--kv-cache-memory-bytes": 8388608, "--enforce-eager": True},
               "env": {"HF_HUB_OFFLINE": "1"}},
    "objectives": ["output_tok_s", "stability"],
    "slo": {"ttft_p99_ms": 2000},
    "load": {"concurrency": [8, 32, 64], "requests_per_level": 64, "warmup_rounds": 1, "repeats": 1,
             "remeasure_flagged": 1, "request_timeout_s": 60, "level_timeout_s": 120,
             "dataset": {"path": str(ROOT / "studies" / "traffic" / "quickstart-chat.jsonl")}},
    "confirm": {"repeats": 0},
    "resources": {"CPU": 2},
    "parallel": 1,
    "timeouts": {"startup_s": 180, "shutdown_grace_s": 10},
    "sampler": {"name": "random", "seed": 0},
    "predict_from_failures": False,  # every config launched, none predicted from another's kv_capacity failure
}


def grid(space_file: Path) -> list[dict]:
    from tuner.inputs.search_space import load_search_space

    space = load_search_space(space_file)
    names, choices = [], []
    for name, p in space.parameters.items():
        if p.type != "categorical":
            raise SystemExit(f"{space_file}: {name} is {p.type}; a recorded grid needs categorical choices")
        names.append(name)
        choices.append(p.choices)
    return [dict(zip(names, values)) for values in itertools.product(*choices)]


def run_round(name: str, space_file: Path, configs: list[dict], work: Path) -> None:
    study = {**STUDY, "name": name, "search_space": str(space_file.resolve()), "trials": len(configs),
             "storage": f"sqlite:///{(work / 'surface.db').resolve()}", "runs_dir": str((work / "runs").resolve()),
             "enqueue": configs}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    subprocess.run([TUNER_PY, "-m", "tuner.cli", "study", "start", str(path)], check=True, cwd=work)


def launch_row(record) -> dict:
    """One launch: a summary for people, and the worker's TrialResult as it came back (levels in full), which a
    replay hands to the study loop so that scoring runs on it exactly as on a live trial."""
    result = {"argv": record.argv, "env": record.env, "failure_class": record.failure_class,
              "failure_detail": record.failure_detail, "startup_s": record.startup_s, "wall_s": record.wall_s,
              "hostname": record.hostname, "startup": record.startup,
              "levels": [lv.model_dump(mode="json") for lv in record.levels]}
    return {"trial": record.number, "outcome": record.outcome, "feasible": record.run_feasible,
            "values": record.score.get("values", {}), "operating_concurrency": record.operating_concurrency,
            "result": result}


def dump(names: list[str], configs: list[dict], space_file: Path, work: Path, out: Path, argv: list[str]) -> None:
    import optuna

    from tuner.study.records import TrialRecord

    storage = f"sqlite:///{(work / 'surface.db').resolve()}"
    known = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    rows = {json.dumps(c, sort_keys=True): {"params": c, "launches": []} for c in configs}
    for name in (n for n in names if n in known):
        for trial in optuna.load_study(study_name=name, storage=storage).trials:
            record = TrialRecord.of(trial)
            if record.complete:
                rows[json.dumps(dict(trial.params), sort_keys=True)]["launches"].append(launch_row(record))
    table = {
        "kind": "measured",
        "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/record_surface.py", *argv]),
        "host": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
        "study": {k: v for k, v in STUDY.items() if k not in ("server",)} | {"server_flags": STUDY["server"]["flags"]},
        "space": yaml.safe_load(space_file.read_text()),
        "configs": list(rows.values()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table) + "\n"
    out.write_bytes(gzip.compress(text.encode(), mtime=0) if out.suffix == ".gz" else text.encode())
    launches = sum(len(r["launches"]) for r in table["configs"])
    print(f"wrote {out}: {len(configs)} configs, {launches} launches")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "cpu-tiny.yaml")
    parser.add_argument("--launches", type=int, default=3, help="launches of every config (rounds of the grid)")
    parser.add_argument("--work", type=Path, default=ROOT / "surface-work", help="storage and logs (resumable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "cpu-tiny-surface.json.gz")
    parser.add_argument("--name", default="cpu-tiny-surface")
    parser.add_argument("--dump-only", action="store_true", help="write the table from what is recorded so far")
    args = parser.parse_args()

    configs = grid(args.space)
    args.work.mkdir(parents=True, exist_ok=True)
    names = [f"{args.name}-r{i}" for i in range(args.launches)]
    if not args.dump_only:
        for name in names:
            print(f"--- {name}: {len(configs)} configs", flush=True)
            run_round(name, args.space, configs, args.work)
    dump(names, configs, args.space, args.work, args.out, sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
