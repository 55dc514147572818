"""Where trials run: a Ray task per attempt, reserving the study's resources on whichever node has them free.

An executor knows nothing of Optuna: submit an attempt, wait for finished ones, cancel the rest (the `Executor`
protocol). RayExecutor is the study's; LocalExecutor runs attempts in threads of this process (tests, and a
machine without Ray); tuner.study.replay's answers from a recorded surface. Whatever
happens on the worker comes back as a TrialOutcome: Ray's own failures are mapped here to a failure class (a lost
worker or node is infrastructure; an exception that escaped `run_trial` is tuner's own bug).
"""
from __future__ import annotations

import itertools
import os
import queue
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from tuner.contracts.outcomes import FailureClass, failure_of_exception
from tuner.contracts.phases import LaunchPhase, PhaseReport, PhaseSink
from tuner.contracts.results import TrialResult
from tuner.study._ray_guard import OrphanGuard
from tuner.trial.sweep_plan import LaunchRequest, TrialOutcome

Key = TypeVar("Key")


class Task(Protocol):
    """What runs one attempt on a worker: tuner.trial.launch, or a test's wrapper of it."""

    def __call__(self, request: LaunchRequest, *, phases: PhaseSink) -> TrialOutcome: ...


class Executor(Protocol[Key]):
    """What the study loop needs of whatever runs its attempts. A context manager: entering starts its workers,
    leaving ends them (and every server they started)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    @property
    def running(self) -> list[Key]: ...

    def submit(self, key: Key, request: LaunchRequest) -> None: ...

    def wait(self, timeout_s: float) -> list[tuple[Key, TrialOutcome]]: ...

    def cancel_all(self) -> list[Key]: ...

    def phase_reports(self) -> list[tuple[Key, PhaseReport]]:
        """The phases running attempts entered since the last call (the live display), oldest first."""
        ...


class _PhaseChannel(Protocol):
    def put_nowait(self, item: Any) -> None: ...


@dataclass(frozen=True)
class PhaseFeed:
    """What a worker calls as each phase of its launch begins (run_trial's `phases`): a queue the driver drains,
    a Ray queue actor across processes and nodes, a plain queue in threads. Picklable, so it rides in the task's
    arguments; tagged with the attempt's token, since the queue is shared by every attempt."""

    channel: _PhaseChannel
    token: int

    def __call__(self, report: PhaseReport) -> None:
        self.channel.put_nowait((self.token, report.phase.value, report.detail, report.live))


class _Feeds(Generic[Key]):
    """Tokens for attempts, and the reports that came back for the ones still running."""

    def __init__(self) -> None:
        self._tokens: dict[int, Key] = {}
        self._next = itertools.count()

    def feed(self, channel: _PhaseChannel, key: Key) -> PhaseFeed:
        token = next(self._next)
        self._tokens[token] = key
        return PhaseFeed(channel, token)

    def forget(self, key: Key) -> None:
        self._tokens = {t: k for t, k in self._tokens.items() if k is not key}

    def reports(self, items: list[tuple[int, str, str, bool]]) -> list[tuple[Key, PhaseReport]]:
        return [(self._tokens[token], PhaseReport(LaunchPhase(phase), detail, live))
                for token, phase, detail, live in items if token in self._tokens]

# Ray SIGKILLs a worker's child processes when the worker exits; that would kill tuner.server._reaper before it can end
# the server's process group (the server lives in its own session, beyond Ray's reach) and orphan the server.
# The reaper ends the group itself when its worker goes away, with a grace period vLLM needs to free devices.
WORKER_ENV = {"RAY_kill_child_processes_on_worker_exit": "0"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ray_options(resources: dict[str, float], accelerator_type: str | None = None) -> dict[str, Any]:
    """Ray task options reserving one trial's slice: CPU/GPU map to Ray's own, anything else (TPU) is custom."""
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
        if isinstance(cause, BaseException):
            failure, detail = failure_of_exception(cause)
            return failure, detail[:300], text
        return FailureClass.TUNER_ERROR, lines[-1][:300], text
    return FailureClass.INFRA, f"worker lost: {type(exc).__name__}: {lines[0][:200]}", ""


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


class RayExecutor(Generic[Key]):
    """Runs `task(request)` as Ray tasks, one per submitted key. Use as a context manager: it starts (or joins) Ray
    and, when it started a local cluster, shuts it down and guards its processes against a killed driver."""

    def __init__(self, task: Task, resources: dict[str, float],
                 accelerator_type: str | None = None, address: str | None = None) -> None:
        self._task = task
        self._options = ray_options(resources, accelerator_type)
        self._address = address
        self._refs: dict[Any, Key] = {}
        self._owns_ray = False
        self._guard: OrphanGuard | None = None
        self._remote: Any = None
        self._feeds: _Feeds[Key] = _Feeds()
        self._phases: Any = None  # a ray.util.queue.Queue: its actor holds no CPU a trial could use

    def __enter__(self) -> RayExecutor[Key]:
        import ray

        self._owns_ray = start_ray(self._address)
        self._guard = OrphanGuard() if self._owns_ray else None
        self._phases = self._phase_queue()
        self._refresh_guard()
        self._remote = ray.remote(self._task).options(**self._options)  # type: ignore[arg-type]  # ray types its remote functions by arity
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._owns_ray:
            ray.shutdown()
        if self._guard:
            self._guard.close()

    @property
    def running(self) -> list[Key]:
        return list(self._refs.values())

    def submit(self, key: Key, request: LaunchRequest) -> None:
        self._refs[self._remote.remote(request, phases=self._feeds.feed(self._phases, key))] = key
        self._refresh_guard()  # the task may have started new Ray worker processes

    def phase_reports(self) -> list[tuple[Key, PhaseReport]]:
        """Best effort: a queue lost with its node (the driver's node is asked for, not promised) costs the live
        display its reports, never the study; later attempts report to a new one."""
        import ray

        try:
            waiting = self._phases.qsize()
            return self._feeds.reports(self._phases.get_nowait_batch(waiting)) if waiting else []
        except ray.exceptions.RayError:
            self._phases = self._phase_queue()
            return []

    @staticmethod
    def _phase_queue() -> Any:
        """A Ray queue actor for the workers' phase reports, on the driver's own node where it can be (a node
        lost mid-study then takes trials with it, not the display), holding no CPU a trial could use."""
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

    def wait(self, timeout_s: float) -> list[tuple[Key, TrialOutcome]]:
        """Attempts that finished within `timeout_s` (at most one per call, so results are handled in order)."""
        import ray

        if not self._refs:
            return []
        done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout_s)
        finished = [(self._refs.pop(ref), self._outcome(ref)) for ref in done]
        for key, _outcome in finished:
            self._feeds.forget(key)
        return finished

    def cancel_all(self) -> list[Key]:
        """Stop every running attempt (force: the worker dies, and its reaper tears the server down)."""
        import ray

        keys = list(self._refs.values())
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        self._feeds = _Feeds()
        return keys

    def _outcome(self, ref: Any) -> TrialOutcome:
        import ray

        try:
            return ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:
            failure_class, detail, trace = outcome_of_ray_error(exc)
            return TrialOutcome(TrialResult(argv=[], env={}, failure_class=failure_class, failure_detail=detail,
                                            traceback=trace))

    def _refresh_guard(self) -> None:
        if self._guard:
            self._guard.refresh()


class LocalExecutor(Generic[Key]):
    """Runs `task(request)` in threads of this process, at most `parallel` at once: no Ray, no resource accounting.
    Cancelling cannot stop a thread: `cancel_all` hands the attempts back at once, and leaving the context waits
    for their tasks to end (run_trial always tears its server down), so no server outlives the executor."""

    def __init__(self, task: Task, parallel: int = 1) -> None:
        self._task = task
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="tuner-trial")
        self._futures: dict[Future[TrialOutcome], Key] = {}
        self._lock = threading.Lock()
        self._feeds: _Feeds[Key] = _Feeds()
        self._phases: queue.SimpleQueue[tuple[int, str, str, bool]] = queue.SimpleQueue()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> list[Key]:
        return list(self._futures.values())

    def submit(self, key: Key, request: LaunchRequest) -> None:
        self._futures[self._pool.submit(self._task, request, phases=self._feeds.feed(self._phases, key))] = key

    def phase_reports(self) -> list[tuple[Key, PhaseReport]]:
        items = []
        while not self._phases.empty():
            items.append(self._phases.get_nowait())
        return self._feeds.reports(items)

    def wait(self, timeout_s: float) -> list[tuple[Key, TrialOutcome]]:
        """At most one finished attempt per call, like RayExecutor, so results are handled in order."""
        if not self._futures:
            return []
        done, _ = wait_futures(list(self._futures), timeout=timeout_s, return_when="FIRST_COMPLETED")
        if not done:
            return []
        future = next(iter(done))
        key = self._futures.pop(future)
        self._feeds.forget(key)
        return [(key, self._outcome(future))]

    def cancel_all(self) -> list[Key]:
        keys = list(self._futures.values())
        for future in self._futures:
            future.cancel()  # those not started yet never start
        self._futures.clear()
        self._feeds = _Feeds()
        return keys

    @staticmethod
    def _outcome(future: Future[TrialOutcome]) -> TrialOutcome:
        exc = future.exception()
        if exc is None:
            return future.result()
        # run_trial never raises for the trial's own events: what escapes it is tuner's bug (failure_of_exception).
        failure, detail = failure_of_exception(exc)
        return TrialOutcome(TrialResult(argv=[], env={}, failure_class=failure, failure_detail=detail[:300]))
