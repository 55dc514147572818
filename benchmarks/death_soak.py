"""Does a server's death ever end a study as "a bug in tuner"? Many short studies against a server that dies at
random points under load; prints how each ended and the count of tuner errors (the goal: zero).

    .venv/bin/python benchmarks/death_soak.py [--studies 50] [--trials 3] [--share 0.5]

Each study runs the whole loop (Optuna, a local Ray, the worker, the real load client) against the fake vLLM
(tests/fakes/fake_vllm.py, real uvicorn) in mode die-anywhere: in `--share` of the launches the process exits at
once in the middle of a stream, at a completion and token drawn per launch, while other streams are in flight,
so the load client meets every way a dying server closes sockets (idle in the pool, between responses, mid-send,
mid-stream, refused on reconnect). A study that stops with TunerBug is counted as a tuner error, with its
message. Not in CI: it takes minutes; its figure is in the closing notes and the README.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAKE = str(ROOT / "tests" / "fakes" / "fake_vllm.py")


def study_file(folder: Path, index: int, trials: int, share: float) -> Path:
    (folder / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [1, 2, 3, 4],"
                                       " flag: --max-num-seqs}\n")
    spec = {
        "name": f"soak-{index}", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE],
                   "env": {"FAKE_VLLM_MODE": f"die-anywhere:{share}:24:{folder / 'launches'}",
                           "FAKE_VLLM_TOKEN_MS": "2", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1"}},
        "load": {"concurrency": [2, 8], "requests_per_level": 16, "warmup_rounds": 1, "input_len": 8,
                 "output_len": 8, "repeats": 1, "request_timeout_s": 10, "level_timeout_s": 30, "worst_case": False},
        "resources": {"CPU": 1}, "trials": trials, "storage": f"sqlite:///{folder / 'db.sqlite'}",
        "runs_dir": str(folder / "runs"), "timeouts": {"startup_s": 120, "shutdown_grace_s": 2},
        "sampler": {"name": "random", "seed": index}, "confirm": {"repeats": 0},
    }
    # Each study starts its launch count elsewhere, so the studies draw different launches to die and death points.
    (folder / "launches").write_text(str(index * trials * 4))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def one_study(path: Path) -> tuple[str, collections.Counter]:
    from tuner.errors import TunerBug
    from tuner.inputs.spec import load_study
    from tuner.study import StudyRunner, create_or_load
    from tuner.study.storage import open_storage

    study = load_study(path)
    optuna_study = create_or_load(study, open_storage(study.spec.storage), study.spec.name)
    try:
        StudyRunner(study, optuna_study, study.spec.trials).run()
        ended = "ok"
    except TunerBug as bug:
        ended = f"TUNER ERROR: {str(bug)[:160]}"
    classes = collections.Counter(t.user_attrs.get("failure_class") or "served" for t in optuna_study.get_trials()
                                  if t.user_attrs.get("launched", True) and t.state.name != "WAITING")
    return ended, classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.5, help="share of launches whose server dies")
    args = parser.parse_args()

    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1",
             num_cpus=2)
    errors, totals, began = [], collections.Counter(), time.monotonic()
    try:
        for i in range(args.studies):
            with tempfile.TemporaryDirectory(prefix="death-soak-") as tmp:
                ended, classes = one_study(study_file(Path(tmp), i, args.trials, args.share))
                launches = int((Path(tmp) / "launches").read_text() or 0) - i * args.trials * 4
            totals.update(classes)
            if ended != "ok":
                errors.append((i, ended))
            print(f"study {i + 1:>3}/{args.studies}: {ended}; {launches} launches; trials: {dict(classes)}", flush=True)
    finally:
        ray.shutdown()
    print(f"\n{args.studies} studies in {time.monotonic() - began:,.0f} s; trials by outcome: {dict(totals)}")
    print(f"studies stopped as a tuner error: {len(errors)} of {args.studies}")
    for i, ended in errors:
        print(f"  study {i}: {ended}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
