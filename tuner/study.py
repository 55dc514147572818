"""The study: Optuna asks for flag combinations, Ray workers measure them, the driver tells Optuna the scores.

The driver is the only writer to storage. A trial's budget counts COMPLETE trials (penalized ones included):
infra failures are not the configuration's fault, so the same parameters are run again instead of counting.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from tuner._ray_guard import OrphanGuard
from tuner.errors import InfrastructureError, TunerBug
from tuner.failures import FailureClass
from tuner.results import TrialResult
from tuner.scoring import OBJECTIVE_NAMES, score_trial
from tuner.server_config import ServerConfig, build_server_config, redact_env
from tuner.plan import model_context, pre_launch, prompt_vocab_size
from tuner.spec import Study
from tuner.startup import with_compile_cache
from tuner.worker import TrialOutcome, run_trial

DUPLICATE_LIMIT = 50  # consecutive proposals already measured before the space counts as exhausted
INFRA_GIVE_UP_LIMIT = 3  # trials in a row that exhausted their infra retries: the cluster, not a config, is broken


@dataclass
class Running:
    trial: optuna.Trial
    params: dict[str, Any]
    config: ServerConfig
    attempt: int
    started: float = field(default_factory=time.monotonic)


@dataclass
class Snapshot:
    """What the progress display shows."""

    total: int
    complete: int = 0
    penalized: int = 0
    predicted: int = 0  # penalized by prediction (rules, memory fit), never launched, not counted in the budget
    infra_retries: int = 0
    running: dict[int, float] = field(default_factory=dict)  # trial number -> seconds running
    best_throughput: tuple[int, float] | None = None
    best_stability: tuple[int, float] | None = None
    last_event: str = ""


def make_sampler(study: Study, seed_offset: int) -> optuna.samplers.BaseSampler:
    s = study.spec.sampler
    seed = None if s.seed is None else s.seed + seed_offset
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    startup = s.startup_trials or max(3, min(10, study.spec.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)


def create_or_load(study: Study, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    sampler = make_sampler(study, seed_offset=existing.get(name, 0))
    optuna_study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                       directions=["maximize", "maximize"], load_if_exists=True)
    if name not in existing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna_study.set_metric_names(OBJECTIVE_NAMES)
        optuna_study.set_user_attr("study_file", str(study.path))
        optuna_study.set_user_attr("spec", stored_spec(study))
        optuna_study.set_user_attr("artifact_dir", str(artifact_dir(study.spec.runs_dir).absolute()))
        for params in study.spec.enqueue:
            optuna_study.enqueue_trial(params, user_attrs={"enqueued": True})
    return optuna_study


def stored_spec(study: Study) -> dict[str, Any]:
    """The study spec as kept in storage: secret env values (HF_TOKEN, API keys) never leave the machine."""
    spec = json.loads(study.spec.model_dump_json())
    spec["server"]["env"] = redact_env(spec["server"]["env"])
    return spec


def artifact_dir(runs_dir: Path | str) -> Path:
    return Path(runs_dir) / "artifacts"


def open_artifact_store(runs_dir: Path | str) -> optuna.artifacts.FileSystemArtifactStore:
    path = artifact_dir(runs_dir)
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


def recover_interrupted(optuna_study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a driver that was killed: mark them failed (infra) and queue their parameters again."""
    storage = optuna_study._storage
    recovered = []
    for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "failure_class", FailureClass.INFRA.value)
        storage.set_trial_user_attr(t._trial_id, "failure_detail", "the tuner stopped while this trial ran")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params:
            optuna_study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        recovered.append(t.number)
    return recovered


# Ray SIGKILLs a worker's child processes when the worker exits; that would kill tuner._reaper before it can end
# the server's process group (the server lives in its own session, beyond Ray's reach) and orphan the server.
# The reaper ends the group itself when its worker goes away, with a grace period vLLM needs to free devices.
WORKER_ENV = {"RAY_kill_child_processes_on_worker_exit": "0"}


def ray_options(resources: dict[str, float], accelerator_type: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": 0, "max_retries": 0, "runtime_env": {"env_vars": WORKER_ENV}}
    if accelerator_type:
        options["accelerator_type"] = accelerator_type
    custom = {}
    for name, amount in resources.items():
        if name == "CPU":
            options["num_cpus"] = amount
        elif name == "GPU":
            options["num_gpus"] = amount
        else:
            custom[name] = amount
    if custom:
        options["resources"] = custom
    return options


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def outcome_of_ray_error(exc: BaseException) -> tuple[str, str, str]:
    """(failure class, one-line detail, traceback) for an exception `ray.get` raised instead of a TrialOutcome.

    Only a lost worker, node or object store is infrastructure. A RayTaskError means an exception escaped
    `run_trial` itself: tuner's own code, a bug, never the cluster's fault.
    """
    import ray.exceptions as rex

    text = _ANSI.sub("", str(exc))
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        detail = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else lines[-1]
        return FailureClass.TUNER_ERROR.value, detail[:300], text
    return FailureClass.INFRA.value, f"worker lost: {type(exc).__name__}: {lines[0][:200]}", ""


def start_ray(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call did it, so the caller also shuts it down."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.update(WORKER_ENV)
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # A private local cluster; its dashboard is not started and nothing listens beyond 127.0.0.1.
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
    return True


class StudyRunner:
    def __init__(self, study: Study, optuna_study: optuna.Study, total_trials: int,
                 on_progress: Callable[[Snapshot], None] = lambda s: None, ray_address: str | None = None) -> None:
        self.study = study
        self.spec = study.spec
        self.optuna_study = optuna_study
        self.total = total_trials
        self.on_progress = on_progress
        self.ray_address = ray_address
        self.running: dict[Any, Running] = {}
        self.snapshot = Snapshot(total=total_trials)
        self.infra_give_ups_in_a_row = 0
        self._guard: OrphanGuard | None = None
        self.fit_context = model_context(study) if self.spec.prescreen else None
        self.runs_dir = Path(self.spec.runs_dir) / optuna_study.study_name
        self.artifact_store = open_artifact_store(self.spec.runs_dir)
        self.vocab_size = prompt_vocab_size(study)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> Snapshot:
        import ray

        recovered = recover_interrupted(self.optuna_study)
        if recovered:
            self._event(f"re-queued trials left running by an earlier run: {recovered}")
        self._refresh_counts()
        if self._complete() >= self.total:
            return self.snapshot
        owns_ray = start_ray(self.ray_address)
        self._guard = OrphanGuard() if owns_ray else None
        self._refresh_guard()
        self._remote = ray.remote(run_trial).options(**ray_options(self.spec.resources, self.spec.accelerator_type))
        try:
            while True:
                self._launch_up_to_limit()
                if not self.running:
                    break
                done, _ = ray.wait(list(self.running), num_returns=1, timeout=0.5)
                for ref in done:
                    self._finish(ref)
                self._publish()
        except BaseException:
            self._abandon_running()
            raise
        finally:
            if owns_ray:
                ray.shutdown()
            if self._guard:
                self._guard.close()
        return self.snapshot

    def _launch_up_to_limit(self) -> None:
        not_launched = 0  # proposals in a row that cost no launch: duplicates, rule breakers, predicted non-fits
        while len(self.running) < self.spec.parallel and self._complete() + len(self.running) < self.total:
            if not_launched >= DUPLICATE_LIMIT:
                self._event(f"stopping: the last {DUPLICATE_LIMIT} proposals were all measured before or not launchable")
                self.total = self._complete() + len(self.running)
                return
            trial = self.optuna_study.ask()
            params = self.study.space.sample(trial)
            earlier = self._already_measured(params, trial.number)
            if earlier is not None:
                trial.set_user_attr("duplicate_of", earlier)
                self.optuna_study.tell(trial, state=TrialState.PRUNED)
                not_launched += 1
                continue
            config = with_compile_cache(build_server_config(self.spec, self.study.space, params),
                                        self.spec.compile_cache_dir)
            verdict = pre_launch(self.study, params, config, self.fit_context)
            if not verdict.launch:  # a rule breaker or a predicted non-fit: penalized, never launched
                for key, value in verdict.user_attrs().items():
                    trial.set_user_attr(key, value)
                result = self._unlaunched_result(config, verdict.failure_class, verdict.detail)
                self._tell(Running(trial=trial, params=params, config=config, attempt=0), result)
                not_launched += 1
                continue
            self._submit(Running(trial=trial, params=params, config=config, attempt=1))

    def _attempt_path(self, run: Running, suffix: str) -> Path:
        return self.runs_dir / f"trial-{run.trial.number:04d}-attempt-{run.attempt}{suffix}"

    def _submit(self, run: Running) -> None:
        log_path = self._attempt_path(run, ".log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        ref = self._remote.remote(run.config, self.spec.load, self.spec.timeouts, str(log_path.absolute()),
                                  self.spec.server.host, self.vocab_size)
        self.running[ref] = run
        self._event(f"trial {run.trial.number} started (attempt {run.attempt})")
        self._refresh_guard()

    def _finish(self, ref: Any) -> None:
        import ray

        run = self.running.pop(ref)
        try:
            outcome: TrialOutcome = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:
            failure_class, detail, trace = outcome_of_ray_error(exc)
            result = self._unlaunched_result(run.config, failure_class, detail)
            result.traceback = trace
            outcome = TrialOutcome(result)
        self._keep_artifacts(run, outcome)
        if outcome.result.failure_class == FailureClass.INFRA.value:
            self._retry_or_give_up(run, outcome.result)
        elif outcome.result.failure_class == FailureClass.TUNER_ERROR.value:
            self._stop_on_bug(run, outcome.result)
        else:
            self._tell(run, outcome.result)

    def _unlaunched_result(self, config: ServerConfig, failure_class: str | None, detail: str) -> TrialResult:
        """A result with no measurement: the worker was lost, or the config was never launched."""
        return TrialResult(argv=config.argv(self.spec.server.host, 0), env=config.redacted_env(),
                           failure_class=failure_class, failure_detail=detail)

    def _retry_or_give_up(self, run: Running, result: TrialResult) -> None:
        if run.attempt <= self.spec.max_infra_retries:
            self.snapshot.infra_retries += 1
            self._event(f"trial {run.trial.number}: infra failure ({result.failure_detail[:80]}); retrying")
            self._submit(Running(trial=run.trial, params=run.params, config=run.config, attempt=run.attempt + 1))
            return
        self._store_attrs(run, result)
        self.optuna_study.tell(run.trial, state=TrialState.FAIL)
        self._event(f"trial {run.trial.number}: infra failure after {run.attempt} attempts; not counted")
        self.infra_give_ups_in_a_row += 1
        if self.infra_give_ups_in_a_row >= INFRA_GIVE_UP_LIMIT:
            raise InfrastructureError(
                f"{self.infra_give_ups_in_a_row} trials in a row failed for infrastructure reasons, the last with: "
                f"{result.failure_detail[:200]} (see `tuner study status`); fix the cluster and run the same command")

    def _stop_on_bug(self, run: Running, result: TrialResult) -> None:
        """tuner's own code failed: record it, keep the config for the next run, and stop the study (the caller's
        error path stops the other trials and tears their servers down). Never retried as infra, never penalized."""
        self._store_attrs(run, result)
        self.optuna_study.tell(run.trial, state=TrialState.FAIL)
        self.optuna_study.enqueue_trial(run.params, user_attrs={"requeued_from": run.trial.number})
        trace_path = None
        if result.traceback:
            trace_path = self._attempt_path(run, ".traceback.txt")
            trace_path.write_text(result.traceback)
        self._event(f"trial {run.trial.number}: tuner error: {result.failure_detail[:160]}")
        raise TunerBug(run.trial.number, result.failure_detail, result.traceback, trace_path)

    def _tell(self, run: Running, result: TrialResult) -> None:
        self.infra_give_ups_in_a_row = 0
        score = score_trial(result)
        self._store_attrs(run, result)
        # Optuna's constraint-aware samplers (TPE, NSGA-II, GP) read this: > 0 means infeasible.
        run.trial.set_constraint("config_failure", score.constraint)
        run.trial.set_user_attr("constraint", score.constraint)
        run.trial.set_user_attr("stability_components", score.components_dict())
        run.trial.set_user_attr("peak_concurrency", score.peak_concurrency)
        self.optuna_study.tell(run.trial, score.values)
        self._refresh_counts()
        verdict = (f"{score.throughput:,.0f} tok/s, stability {score.stability:.2f}" if score.feasible
                   else f"penalized: {result.failure_class}")
        self._event(f"trial {run.trial.number} done: {verdict}")

    def _store_attrs(self, run: Running, result: TrialResult) -> None:
        t = run.trial
        t.set_user_attr("argv", result.argv)
        t.set_user_attr("env", result.env)
        t.set_user_attr("server_flags", run.config.flags)
        t.set_user_attr("failure_class", result.failure_class)
        t.set_user_attr("failure_detail", result.failure_detail)
        t.set_user_attr("startup_s", result.startup_s)
        t.set_user_attr("levels", [level.model_dump(mode="json") for level in result.levels])
        t.set_user_attr("log_tail", result.log_tail)
        t.set_user_attr("log_path", result.log_path)
        t.set_user_attr("hostname", result.hostname)
        t.set_user_attr("attempts", run.attempt)
        t.set_user_attr("wall_s", result.wall_s)
        for key, value in result.startup.items():
            t.set_user_attr(key, value)

    def _keep_artifacts(self, run: Running, outcome: TrialOutcome) -> None:
        """Server log and raw per-request records of every attempt, linked from the trial (shown by the dashboard)."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in outcome.artifacts().items():
                if not text:
                    continue
                path = Path(tmp) / f"trial-{run.trial.number}-attempt-{run.attempt}-{name}"
                path.write_text(text)
                mimetype = "application/jsonl" if name.endswith(".jsonl") else "text/plain"
                optuna.artifacts.upload_artifact(artifact_store=self.artifact_store, file_path=str(path),
                                                 study_or_trial=run.trial, mimetype=mimetype, encoding="utf-8")

    def _abandon_running(self) -> None:
        """On Ctrl-C or an error: stop running trials (their servers die with their workers) and re-queue them."""
        import ray

        for ref, run in list(self.running.items()):
            ray.cancel(ref, force=True)
            run.trial.set_user_attr("failure_class", FailureClass.INFRA.value)
            run.trial.set_user_attr("failure_detail", "interrupted; re-queued for the next run")
            self.optuna_study.tell(run.trial, state=TrialState.FAIL)
            self.optuna_study.enqueue_trial(run.params, user_attrs={"requeued_from": run.trial.number})
        self.running.clear()

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def _refresh_guard(self) -> None:
        if self._guard:
            self._guard.refresh()

    def _already_measured(self, params: dict[str, Any], number: int) -> int | None:
        for t in self.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number != number and t.params == params:
                return t.number
        return None

    def _complete(self) -> int:
        return self.snapshot.complete

    def _refresh_counts(self) -> None:
        complete = self.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # The budget counts launched trials: a config penalized without a launch (a rule breaker, a predicted
        # non-fit) cost no accelerator time.
        self.snapshot.complete = sum(1 for t in complete if t.user_attrs.get("launched", True))
        self.snapshot.predicted = len(complete) - self.snapshot.complete
        feasible = [t for t in complete if t.user_attrs.get("constraint", 1.0) <= 0]
        self.snapshot.penalized = len(complete) - len(feasible)
        if feasible:
            best_t = max(feasible, key=lambda t: t.values[0])
            best_s = max(feasible, key=lambda t: (t.values[1], t.values[0]))
            self.snapshot.best_throughput = (best_t.number, best_t.values[0])
            self.snapshot.best_stability = (best_s.number, best_s.values[1])

    def _event(self, message: str) -> None:
        self.snapshot.last_event = message
        self._publish()

    def _publish(self) -> None:
        now = time.monotonic()
        self.snapshot.running = {r.trial.number: now - r.started for r in self.running.values()}
        self.on_progress(self.snapshot)
