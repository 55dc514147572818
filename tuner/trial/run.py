"""One trial on one slice: launch the server, run the load sweep, always tear the server down.

`run_trial` is a plain function; the study runs it inside a Ray task that reserves the study's resources.
It never raises for anything that happens inside the trial: every outcome comes back as a TrialOutcome with a
failure class — the server's failure (the config's fault, or infra), or `tuner_error` with the full traceback when
tuner's own code raised — plus the server log and the raw per-request records (secrets redacted) for the driver to
keep as artifacts.
"""
from __future__ import annotations

import enum
import json
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tuner.capacity.roofline import Roofline, ServingKnobs, slice_limits
from tuner.contracts.goals import Goals
from tuner.contracts.outcomes import FailureClass, failure_of_exception
from tuner.contracts.phases import LaunchPhase, PhaseSink, no_reports
from tuner.contracts.results import LevelResult, LevelRole, Plausibility, TrialResult, WarningKind, level_warning
from tuner.contracts.sampling import SamplingInForce, server_defaults
from tuner.contracts.serving import ServingFlags
from tuner.errors import ServerGone, ServerStartupFailed
from tuner.inputs.spec import LoadSpec, Timeouts
from tuner.load import RequestRecord, Workload, vocab_size_of
from tuner.load.runner import (
    SWEEP_METRICS_INTERVAL_S,
    LevelOptions,
    LoadPattern,
    PreparedLevel,
    measure_level,
    prepare_level,
)
from tuner.load.server_counters import LevelProgress
from tuner.load.tokenizer import ServerTokenizer, Tokenizer
from tuner.load.workload import PromptFactory, Sample
from tuner.scoring.objectives import operating_point, slo_excess
from tuner.server.client import server_client, server_version
from tuner.server.config import ServerConfig, redact_text
from tuner.server.failures import killing_signal
from tuner.server.process import ServerProcess, last_lines
from tuner.server.startup import prepare_compile_cache, startup_attrs
from tuner.trial.clock import PhaseClock
from tuner.trial.dominance import dominated_by
from tuner.trial.probes import answer_probes
from tuner.trial.sweep_plan import (
    LaunchRequest,
    SweepPlan,
    TrialOutcome,
    prepared_levels,
    repeat_pattern,
    sweep_points,
)
from tuner.trial.watch import EXIT_WAIT_S, ServerWatch, failure_after_level

LOG_TAIL_LINES = 60
MAX_ARTIFACT_BYTES = 8 * 1024 * 1024  # a server log beyond this keeps only its end


class Seam(enum.StrEnum):
    """The points between a trial's phases, in order. An observer handed to run_trial is called at each (the
    fault tests end the server at an exact one; nothing in the study needs one)."""

    READY = "ready"  # /health answered 200; nothing built or sent yet
    PROMPTS_BUILT = "prompts_built"  # every planned level's requests are built; nothing sent yet
    LEVEL_DONE = "level_done"  # a sweep level was measured and its server checked
    SWEEP_DONE = "sweep_done"  # the sweep is over; the repeats of its top level are next
    BEFORE_SOAK = "before_soak"  # a confirmation run's soak is next


Observer = Callable[[Seam, "ServerProcess"], None]


def _where(level: LevelResult) -> str:
    return f"{level.request_rate:g} req/s" if level.mode == "open" else f"concurrency {level.concurrency}"


def stop_reason(levels: list[LevelResult], goals: Goals | None, plateau_gain: float) -> str | None:
    """Why the sweep need not go higher after its last level, or None. Decided on reliable levels only:
      - the level misses an SLO: more load only adds latency, so no higher level can be the operating point;
      - its throughput is within `plateau_gain` of the best lower level's: the server is saturated."""
    last = levels[-1]
    if not last.reliable:
        return None
    if goals is not None and goals.slo and slo_excess(last, goals) > 0:
        return f"SLOs missed at {_where(last)}: higher load was not measured"
    lower = [lv.output_throughput for lv in levels[:-1] if lv.reliable and lv.phase == "sweep" and lv.repeat == 0]
    if lower and last.output_throughput <= (1.0 + plateau_gain) * max(lower):
        return (f"throughput plateaued at {_where(last)} ({last.output_throughput:,.0f} tok/s, within"
                f" {plateau_gain:.0%} of {max(lower):,.0f} at a lower load): higher load was not measured")
    return None


def ray_node_id() -> str:
    """The Ray node this process runs on, or "" outside a Ray worker. Several nodes can share a host name (one host
    per node is not a rule), so the node id is what tells where a trial ran."""
    ray = sys.modules.get("ray")  # never imported here: run_trial also runs outside Ray (tuner study matrix)
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


LaunchBody = Callable[[ServerProcess, TrialResult, list[str]], None]


def launch(request: LaunchRequest, phases: PhaseSink = no_reports, observer: Observer | None = None) -> TrialOutcome:
    """The worker's entry point (a Ray task, or a thread of LocalExecutor): one attempt the driver asked for."""
    return run_trial(request.config, request.plan, request.timeouts, request.log_path, request.host,
                     request.vocab_size, observer=observer, phases=phases)


def run_trial(config: ServerConfig, plan: SweepPlan, timeouts: Timeouts, log_path: str, host: str = "127.0.0.1",
              vocab_size: int | None = None, observer: Observer | None = None,
              phases: PhaseSink = no_reports) -> TrialOutcome:
    """Launch `config`, measure its sweep, tear it down. `vocab_size`: for token-id prompts (else the server's
    /tokenize). `observer`: called at each Seam (tests). `phases`: told each phase as it begins (the live display)."""
    clock = PhaseClock(phases)

    def sweep(server: ServerProcess, result: TrialResult, records: list[str]) -> None:
        _Sweep(server, config, plan, result, records, observer or _unobserved, clock).run(vocab_size)

    return run_launch(config, timeouts, log_path, host, plan.phases, sweep, clock)


def run_launch(config: ServerConfig, timeouts: Timeouts, log_path: str, host: str, levels_planned: int,
               body: LaunchBody, clock: PhaseClock | None = None) -> TrialOutcome:
    """One launch of `config` with `body` run against the ready server (the sweep, or a matrix), classified the
    same way whatever the body: a startup failure, a server gone silent, a setup problem, or tuner's own bug; the
    server always torn down, its log kept. `clock` times the phases (a body that sets none counts as the sweep)."""
    clock = clock or PhaseClock()
    started = time.monotonic()
    server = ServerProcess(config, Path(log_path), timeouts, host=host)
    result = TrialResult(argv=[redact_text(a, config.env) for a in server.argv], env=config.redacted_env(),
                         log_path=log_path, levels_planned=levels_planned, hostname=socket.gethostname(),
                         node_id=ray_node_id())
    records: list[str] = []
    cache_before = None
    try:
        cache_before = prepare_compile_cache(config)
        clock.enter(LaunchPhase.STARTING, "starting the server")
        server.start()
        result.startup_s = server.wait_ready(on_lines=clock.startup_lines)
        clock.stop()
        result.server_version = server_version(server.base_url)
        clock.enter(LaunchPhase.SWEEP, "building the requests")
        body(server, result, records)
    except ServerGone as exc:  # the server stopped answering one of tuner's own calls: the server's outcome
        result.failure_class, result.failure_detail = _outcome_of_silence(server, exc, result)
    except Exception as exc:  # startup failed, the setup cannot serve the study, or a bug in tuner
        result.failure_class, result.failure_detail = failure_of_exception(exc)
        if result.failure_class == FailureClass.TUNER_ERROR:
            result.traceback = redact_text(traceback.format_exc(), config.env)
    finally:
        clock.enter(LaunchPhase.TEARDOWN)
        server.stop()
        clock.stop()
        log = redact_text(server.log_text(MAX_ARTIFACT_BYTES), config.env)
        result.log_tail = last_lines(log, LOG_TAIL_LINES)
        result.startup = startup_attrs(config, log, result.startup_s, cache_before)
        result.failure_detail = redact_text(result.failure_detail, config.env)
        if result.failure_class in (FailureClass.CRASH, FailureClass.DIED_UNDER_LOAD):
            result.killed_by = killing_signal(server.exit_code(), log)
        result.wall_s = time.monotonic() - started
        result.phases = clock.split(_float(result.startup.get("startup_load_s")),
                                    _float(result.startup.get("startup_compile_s")), result.wall_s)
    return TrialOutcome(result=result, server_log=log, records_jsonl="".join(records))


def _unobserved(seam: Seam, server: ServerProcess) -> None:
    return None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _outcome_of_silence(server: ServerProcess, exc: ServerGone, result: TrialResult) -> tuple[FailureClass, str]:
    """A call to the server went unanswered: it died (classified from its log), or it lives and does not answer."""
    where = f"after {_where(result.levels[-1])}" if result.levels else "before the first level"
    code = server.wait_exit(EXIT_WAIT_S)
    if code is not None:
        cause = server.diagnose(code)
        return FailureClass.DIED_UNDER_LOAD, f"exit code {code} {where}: {cause.detail} ({exc.call}: {exc.kind})"
    return FailureClass.UNRESPONSIVE, f"{exc} {where}, though the process is still running"


@dataclass(frozen=True)
class _Level:
    """One planned level: what is sent and how it is labelled."""

    pattern: LoadPattern
    repeat: int
    workload: Workload
    phase: LevelRole


class _Sweep:
    """The measured part of one launch: every planned level's requests built first, then the sweep, the repeats of
    its top level, and a confirmation run's soak."""

    def __init__(self, server: ServerProcess, config: ServerConfig, plan: SweepPlan, result: TrialResult,
                 records_out: list[str], observer: Observer, clock: PhaseClock) -> None:
        self.server, self.config, self.plan, self.result = server, config, plan, result
        self.records_out = records_out
        self.observer = observer
        self.clock = clock
        self.prepared: dict[tuple[LoadPattern, int, str], PreparedLevel] = {}

    def run(self, vocab_size: int | None) -> None:
        load = self.plan.load
        try:  # until the first request is answered, a server that dies has failed to start
            self.observer(Seam.READY, self.server)
            workload, tokenizer = _workload(self.server, self.config, self.plan, vocab_size)
            # Read here, on the worker: the model folder is a path in the worker's environment.
            self.sampling = SamplingInForce(sent=load.sampling, per_request=workload.own_sampling,
                                            defaults=server_defaults(self.config.model, self.config.flags))
            first = PromptFactory(replace(workload, cycle=True), tokenizer).body()  # request 0: the first sample
            self._prepare(workload, tokenizer)
            self.observer(Seam.PROMPTS_BUILT, self.server)
            self._first_request(workload.endpoint, first)
        except ServerGone as exc:
            self._failed_to_start(f"{exc.call}: {exc.kind}")
            raise
        self._answer_probes()
        with ServerWatch(self.server) as self.watch:
            self.options = LevelOptions(request_timeout_s=load.request_timeout_s,
                                        level_timeout_s=load.level_timeout_s,
                                        metrics_interval_s=SWEEP_METRICS_INTERVAL_S, tokenizer=tokenizer,
                                        abort=self.watch.abort, slo=self.plan.slo,
                                        plausibility=_plausibility_check(self.plan, self.config.flags),
                                        own_session=True)
            worst = self._worst_case(workload)
            if worst is not None and not self._measure(worst):
                return  # the server died at its own worst case: the verdict, before the sweep spent anything
            top = self._sweep(workload)
            if top is None or self._stop_if_dominated(remaining=[]):
                return
            self.observer(Seam.SWEEP_DONE, self.server)
            again = repeat_pattern(self._operating_pattern(top), load, self.plan.goals)
            for repeat in range(1, load.repeats):  # the operating point again, to the full precision: its own noise
                if not self._measure(_Level(again, repeat, workload, LevelRole.SWEEP)):
                    return
            soak = _soak_pattern(self.plan)
            if soak is not None:
                self.observer(Seam.BEFORE_SOAK, self.server)
                if self._measure(_Level(soak, 0, replace(workload, cycle=True), LevelRole.SOAK)):
                    self._answer_probes(after_soak=True)

    def _first_request(self, endpoint: str, request: bytes) -> None:
        """One ordinary request of the study's traffic, alone, before anything else is sent (as `vllm bench serve`
        sends a test request first). A server's first shapes are its sharpest edges: vLLM 0.32's CPU build kills
        its worker (SIGILL) when its very first request has a one-token prompt, and an accelerator compiles or
        picks a kernel at first use. So what a launch meets first is tuner's choice, not a race between probes. Its
        time counts as startup; a server that dies of it failed to start, with its own evidence."""
        began = time.monotonic()
        self.clock.enter(LaunchPhase.STARTING, "the first request, alone")
        with server_client(self.plan.load.request_timeout_s) as client:
            response = client.post(self.server.base_url + endpoint, content=request,
                                   headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            # vLLM answers 500 EngineDeadError, then shuts down: give it the time a dying server takes to exit.
            wait = FIRST_REQUEST_EXIT_WAIT_S if response.status_code >= 500 else EXIT_WAIT_S
            self._failed_to_start(response.text[:200].strip() or f"HTTP {response.status_code}", wait)
        self.result.first_request_s = time.monotonic() - began
        self.result.startup_s = (self.result.startup_s or 0.0) + self.result.first_request_s
        self.clock.enter(LaunchPhase.SWEEP, quiet=True)

    def _failed_to_start(self, said: str, wait_s: float = EXIT_WAIT_S) -> None:
        """The server is gone before its first request was answered: a startup failure, classified from its exit
        and its log. A server still running goes on (the sweep judges an unanswered or refused request)."""
        code = self.server.wait_exit(wait_s)
        if code is not None:
            cause = self.server.diagnose(code)
            raise ServerStartupFailed(cause.failure_class, f"exit code {code} before its first request was answered"
                                      f" (sent alone, before any probe or level): {cause.detail} ({said})")

    def _answer_probes(self, after_soak: bool = False) -> None:
        """The quality probes, before any load: the server is fresh, and a wrong answer fails the config before its
        sweep spends accelerator time on it. A confirmation run answers them again after its soak."""
        quality = self.plan.quality
        if quality is None or not quality.probes:
            return
        began = time.monotonic()
        self.clock.enter(LaunchPhase.PROBES, f"{len(quality.probes)} probes{' after the soak' if after_soak else ''}")
        with server_client(self.plan.load.request_timeout_s) as client:
            answers = answer_probes(client, self.server.base_url, self.config.model, quality)
        if after_soak:
            self.result.probes_after_soak = answers
        else:
            self.result.probes = answers
        self.result.probes_s = (self.result.probes_s or 0.0) + time.monotonic() - began
        self.clock.enter(LaunchPhase.SWEEP, quiet=True)

    def _operating_pattern(self, top: LoadPattern) -> LoadPattern:
        """The sweep level that is this launch's operating point so far (the best that meets the SLOs); the top
        level measured when none does."""
        point, _ = operating_point(self.result.levels, self.plan.goals or Goals())
        points = sweep_points(self.plan.load, self.plan.goals)
        if point is None:
            return top
        return next((p for p in points if p.concurrency == point.concurrency and p.rate == point.rate), top)

    def _planned(self, workload: Workload) -> list[_Level]:
        """Every level this launch may measure. The repeats run at the operating point, known only once the sweep
        is over: they are planned at every level."""
        levels = [_Level(p, r, workload, LevelRole.SWEEP) for p, r in prepared_levels(self.plan.load, self.plan.goals)]
        soak = _soak_pattern(self.plan)
        if soak is not None:
            levels.append(_Level(soak, 0, replace(workload, cycle=True), LevelRole.SOAK))
        worst = self._worst_case(workload)
        return ([worst] if worst is not None else []) + levels

    def _worst_case(self, workload: Workload) -> _Level | None:
        """--max-num-seqs requests at once (the sweep's top concurrency where the flag is unset), each at the
        longest prompt and the longest output the traffic allows, capped by --max-model-len; prompts are all
        computed (no shared prefix). None when the study turned it off."""
        load = self.plan.load
        if not load.worst_case:
            return None
        knobs = ServingFlags.of(self.config.flags)
        seqs = knobs.max_num_seqs or max(load.concurrency)
        input_len, output_len = _longest(load, self.plan.samples)
        context = knobs.max_model_len
        if context is not None:
            output_len = min(output_len, max(1, context // 2))
            input_len = min(input_len, context - output_len)
        shape = replace(workload, input_len=input_len, output_len=output_len, input_len_max=None,
                        output_len_max=None, prefix_len=0, samples=(), cycle=False, label="worst case")
        return _Level(LoadPattern(concurrency=seqs, requests=seqs, warmup=0), 0, shape, LevelRole.WORST_CASE)

    def _prepare(self, workload: Workload, tokenizer: Tokenizer | None) -> None:
        began = time.monotonic()
        for level in self._planned(workload):
            self.prepared[(level.pattern, level.repeat, level.phase)] = prepare_level(
                self.server.base_url, level.workload, level.pattern, level.repeat, tokenizer)
        self.result.prompts_s = time.monotonic() - began
        self.result.prompts_built = sum(len(p.requests) + len(p.warmup) for p in self.prepared.values())

    def _sweep(self, workload: Workload) -> LoadPattern | None:
        """The sweep's levels, lowest first; the top level measured, or None when the server died."""
        load = self.plan.load
        points = sweep_points(load, self.plan.goals)
        top = points[0]
        for i, pattern in enumerate(points):
            if not self._measure(_Level(pattern, 0, workload, LevelRole.SWEEP)):
                return None
            top = pattern
            self.observer(Seam.LEVEL_DONE, self.server)
            if self._stop_if_dominated(remaining=[p.concurrency or 0 for p in points[i + 1:]]):
                return None
            reason = stop_reason(self.result.levels, self.plan.goals, load.plateau_gain) if load.stop_early else None
            if reason is not None and i < len(points) - 1:
                self.result.sweep_stopped = reason
                self.result.levels_planned -= len(points) - 1 - i  # not planned any more: survival must not count
                break
        return top

    def _stop_if_dominated(self, remaining: list[int]) -> bool:
        """The launch cannot reach the front whatever the levels left show: stop it (its levels left and its
        repeats are not measured, nor counted against its survival)."""
        reason = dominated_by(self.plan.front, self.result.levels, remaining, self.plan.goals or Goals())
        if not reason:
            return False
        self.result.sweep_stopped, self.result.dominated = reason, True
        self.result.levels_planned -= len(remaining) + self.plan.load.repeats - 1
        return True

    def _measure(self, planned: _Level) -> bool:
        """One level, measured again while flagged; False when the server died (the trial ends)."""
        load, result = self.plan.load, self.result
        prepared = self.prepared[(planned.pattern, planned.repeat, planned.phase)]
        phase, described = _PHASE_OF_LEVEL.get(planned.phase, LaunchPhase.SWEEP), self._describe(planned)
        self.clock.enter(phase, described)
        options = replace(self.options, on_progress=_LiveLevel(self.clock, phase, described, planned.pattern))
        for attempt in range(load.remeasure_flagged + 1):
            level, records = measure_level(self.server.base_url, planned.workload, planned.pattern, options,
                                           planned.repeat, prepared)
            level.phase, level.workload = planned.phase, planned.workload.describe()
            level.sampling = self.sampling
            self.records_out.extend(_record_lines(level, records))
            result.levels.append(level)  # every attempt is kept, flagged ones too: nothing measured is hidden
            failure = failure_after_level(self.server, level, self.watch, self.config.model, load.request_timeout_s)
            if failure is not None:
                level.reliable = False
                level.warnings.append(level_warning(WarningKind.SERVER_DIED, f"{failure[0]} during or after this"
                                                    " level; its figures are left out of the scores"))
                result.failure_class, result.failure_detail = failure
                return False
            if level.reliable:
                break
            if attempt < load.remeasure_flagged:
                level.warnings.append(level_warning(WarningKind.REMEASURED, "flagged, so the level was measured again"))
        return True


    def _describe(self, planned: _Level) -> str:
        """"c=64: 128 requests (repeat 2); last level 495 tok/s (compute 0.4% · bandwidth 2.1% of the slice)" for
        the live display."""
        pattern = planned.pattern
        where = f"{pattern.rate:g} req/s" if pattern.rate is not None else f"c={pattern.concurrency}"
        repeat = f" (repeat {planned.repeat + 1})" if planned.repeat else ""
        if planned.phase == LevelRole.WORST_CASE:
            shape = planned.workload
            return f"{pattern.requests} requests at once, {shape.input_len} prompt + {shape.output_len} output tokens"
        done = [lv for lv in self.result.levels if lv.completed and lv.phase == "sweep"]
        shares = f" ({done[-1].plausibility.shares()} of the slice)" if done and done[-1].plausibility else ""
        drafts = f"; drafts {done[-1].speculation.describe()}" if done and done[-1].speculation else ""
        last = f"; last level {done[-1].output_throughput:,.0f} tok/s{shares}{drafts}" if done else ""
        stop = pattern.stop
        count = (f"{pattern.requests} requests" if stop is None or stop.min_requests >= pattern.requests else
                 f"to +/-{stop.precision:.0%} ({stop.min_requests}-{pattern.requests} requests)")
        return f"{where}: {count}{repeat}{last}"


_PHASE_OF_LEVEL = {LevelRole.SOAK: LaunchPhase.SOAK, LevelRole.WORST_CASE: LaunchPhase.WORST_CASE}
LIVE_LEVEL_INTERVAL_S = 2.0
FIRST_REQUEST_EXIT_WAIT_S = 30.0  # a server whose first request got a 5xx: how long its shutdown may take  # a level's progress on the live display at most this often (it rides a Ray queue)


class _LiveLevel:
    """A running level's progress by the server's counters, told to the live display every few seconds:
    "c=64: 128 requests; 57 answered, 1,210 tok/s so far". A level lasts minutes on a large config."""

    def __init__(self, clock: PhaseClock, phase: LaunchPhase, described: str, pattern: LoadPattern) -> None:
        self.clock, self.phase, self.described, self.pattern = clock, phase, described, pattern
        self._last = time.monotonic()

    def __call__(self, progress: LevelProgress) -> None:
        now = time.monotonic()
        if now - self._last < LIVE_LEVEL_INTERVAL_S:
            return
        self._last = now
        planned = "" if self.pattern.duration_s else f" of {self.pattern.requests}"
        self.clock.report(self.phase, f"{self.described}; {progress.answered}{planned} answered,"
                          f" {progress.output_throughput:,.0f} tok/s so far", live=True)


def _longest(load: LoadSpec, samples: tuple[Sample, ...]) -> tuple[int, int]:
    """The longest prompt and the longest output of the traffic (each on its own: the worst case is both)."""
    if samples:
        return max(s.estimated_input_len for s in samples), max(s.output_len for s in samples)
    if load.shapes:
        return max(s.input_len for s in load.shapes), max(s.output_len for s in load.shapes)
    return load.input_len_max or load.input_len, load.output_len_max or load.output_len


def _soak_pattern(plan: SweepPlan) -> LoadPattern | None:
    """A confirmation run's soak: the operating point (its streams, or its rate under the cap), longer."""
    load = plan.load
    requests = plan.soak_requests or 2 * load.requests_per_level
    if plan.soak_rate is not None:
        cap = plan.soak_concurrency or load.concurrency[0]
        return LoadPattern(concurrency=cap, rate=plan.soak_rate, arrival=load.arrival, burstiness=load.burstiness,
                           requests=requests, warmup=load.warmup_rounds * cap)
    if plan.soak_concurrency:
        c = plan.soak_concurrency
        return LoadPattern(concurrency=c, requests=requests, warmup=load.warmup_rounds * c)
    return None


def _plausibility_check(plan: SweepPlan, flags: dict[str, Any]) -> Callable[[LevelResult], Plausibility] | None:
    """Each level against this slice's compute and bandwidth ceilings (a CPU host's own are measured here, on the
    worker that owns it)."""
    hardware, shape = plan.hardware, plan.model_shape
    if hardware is None or shape is None:
        return None
    return Roofline(shape, slice_limits(hardware), ServingKnobs.from_flags(flags, shape, hardware)).check


def _workload(server: ServerProcess, config: ServerConfig, plan: SweepPlan,
              vocab_size: int | None) -> tuple[Workload, Tokenizer | None]:
    """Prompts of exact token length: random token ids when the vocabulary is known and the endpoint takes ids;
    otherwise text made exact with the server's own tokenizer. Never words of unknown length. A dataset's own text
    prompts are sent as they are."""
    load = plan.load
    vocab_size = vocab_size or vocab_size_of(config.model)
    chat = load.endpoint.endswith("/chat/completions")
    tokenizer = None if vocab_size and not chat else ServerTokenizer(server.base_url, config.model)
    workload = Workload(model=config.model, input_len=load.input_len, output_len=load.output_len,
                        endpoint=load.endpoint, vocab_size=vocab_size, seed=load.seed,
                        input_len_max=load.input_len_max, output_len_max=load.output_len_max,
                        prefix_len=load.prefix_len, samples=plan.samples, label=plan.workload_label,
                        prompt_kind="ids" if tokenizer is None else "text", sampling=load.sampling)
    return workload, tokenizer


def _record_lines(level: LevelResult, records: list[RequestRecord]) -> list[str]:
    lines = []
    for record in records:
        row = asdict(record)
        row.update(concurrency=level.concurrency, repeat=level.repeat)
        lines.append(json.dumps(row) + "\n")
    return lines
