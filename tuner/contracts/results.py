"""The data contracts between stages: what a load level measured and what a trial produced.

Pydantic models, so they cross the Ray boundary and go into Optuna's storage as plain JSON.
Latencies are in milliseconds, throughputs in tokens (or requests) per second of wall time.
"""
from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from tuner.contracts.outcomes import FailureClass
from tuner.contracts.quality import ProbeAnswer
from tuner.contracts.sampling import SamplingInForce


class LevelRole(StrEnum):
    """Which part of a launch a measured level belongs to (stored as LevelResult.phase, its name before this type;
    not a LaunchPhase, which times the launch)."""

    SWEEP = "sweep"  # the load levels that are scored, and the repeats of the top one
    SOAK = "soak"  # a confirmation run's long phase over every shape of the workload, for survival
    WORST_CASE = "worst_case"  # max-num-seqs requests at once at the longest lengths, before the sweep


class WarningKind(StrEnum):
    """Why a figure of a level may not be trusted. A level's warnings are stored as "kind: detail" lines (readable in
    the dashboard and the CSV as they are); level_warning writes them and warning_kind reads the kind back."""

    CLIENT_SATURATED = "client_saturated"  # the load generator, not the server, set the pace: the level is flagged
    TOKEN_MISMATCH = "token_mismatch"  # client and server output-token counts differ: flagged
    IMPLAUSIBLE = "implausible"  # above the slice's physical ceilings: a measurement bug, flagged
    SERVER_DIED = "server_died"  # the server died during or right after the level: its figures are suspect
    REMEASURED = "remeasured"  # flagged, so the level was measured again
    FAILED_REQUESTS = "failed_requests"  # some requests failed (counted, not dropped)
    COUNTERS_UNAVAILABLE = "counters_unavailable"  # no /metrics: client figures not cross-checked


# Flags that make a level unreliable (left out of every score), as scoring names them.
FLAGGING_KINDS = (WarningKind.CLIENT_SATURATED, WarningKind.TOKEN_MISMATCH, WarningKind.IMPLAUSIBLE,
                  WarningKind.SERVER_DIED)


def level_warning(kind: WarningKind, detail: str) -> str:
    return f"{kind.value}: {detail}"


def warning_kind(warning: str) -> WarningKind | None:
    """The kind of a stored warning line; None for a line no kind names (studies from before a kind existed)."""
    head = warning.split(":", 1)[0]
    if head in WarningKind._value2member_map_:
        return WarningKind(head)
    if re.match(r"^\d+ of \d+ requests failed", warning):  # stored before the kind was written first
        return WarningKind.FAILED_REQUESTS
    if warning.startswith("server counters unavailable"):
        return WarningKind.COUNTERS_UNAVAILABLE
    return None


class LevelEnd(StrEnum):
    """What ended a level's sending (tuner.load.stopping). Requests in flight at that moment are always answered
    and counted; the ones never sent are not requests of the level."""

    COUNT = "count"  # every planned request was sent (no precision target)
    PRECISION = "precision"  # the output throughput's 95 % interval reached the target, with the minimum sent
    CAP = "cap"  # the cap (requests_per_level) was sent before the precision was reached
    SLO_MISSED = "slo_missed"  # the minimum was sent and an SLO percentile's lower bound already exceeds its limit
    DURATION = "duration"  # the level's duration ran out
    CUT_SHORT = "cut_short"  # aborted (the server died) or timed out: unsent requests counted as failures


class LoadMode(StrEnum):
    CLOSED = "closed"  # a fixed number of streams, each sending its next request when the last one ends
    OPEN = "open"  # arrivals at a rate, whatever the server's pace (at most the level's concurrency in flight)


class Interval(BaseModel):
    """A 95 % confidence interval of one figure (tuner.load.intervals), or why there is none. `high` None with a
    `reason`: too few samples for an upper bound."""

    low: float | None = None
    high: float | None = None
    relative: float | None = None  # half-width / estimate, where the method gives one (throughput)
    samples: int = 0  # windows (batch means) or requests (order statistics)
    method: str = ""
    reason: str = ""  # why there is no interval, or no upper bound

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    def describe(self, unit: str = "", digits: int = 0) -> str:
        """"95 % CI 7,120-7,880 tok/s" or the reason there is none."""
        if not self.known:
            return f"no 95 % CI: {self.reason}" if self.reason else "no 95 % CI"
        assert self.low is not None and self.high is not None
        return f"95 % CI {self.low:,.{digits}f}-{self.high:,.{digits}f}{' ' + unit if unit else ''}"


class LatencyStats(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p99_ci: Interval | None = None  # order statistics (tuner.load.intervals); None: studies from before


class ServerCounters(BaseModel):
    """What the server itself reported over the level (deltas of /metrics counters, peaks of its gauges)."""

    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    preemptions: float | None = None
    requests_succeeded: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    spec_draft_tokens: float | None = None
    spec_accepted_tokens: float | None = None
    peak_kv_cache_usage: float | None = None
    peak_running: float | None = None
    peak_waiting: float | None = None

    spec_drafts: float | None = None
    spec_accepted_per_position: list[float] = Field(default_factory=list, description="accepted tokens at draft "
                                                    "position 0, 1, ... (vLLM's per-position counter)")
    scraped: bool = Field(default=True, description="False when /metrics could not be read (counters are then None)")

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        if not self.prefix_cache_queries:
            return None
        return (self.prefix_cache_hits or 0.0) / self.prefix_cache_queries

    @property
    def spec_acceptance_rate(self) -> float | None:
        """Accepted / proposed draft tokens over the level."""
        if not self.spec_draft_tokens:
            return None
        return (self.spec_accepted_tokens or 0.0) / self.spec_draft_tokens

    def speculation(self) -> Speculation | None:
        """The level's speculative decoding, when the server drafted at all."""
        if not self.spec_drafts or not self.spec_draft_tokens:
            return None
        accepted = self.spec_accepted_tokens or 0.0
        return Speculation(drafts=self.spec_drafts, draft_tokens=self.spec_draft_tokens, accepted_tokens=accepted,
                           acceptance_rate=accepted / self.spec_draft_tokens,
                           accepted_per_draft=accepted / self.spec_drafts,
                           per_position=[a / self.spec_drafts for a in self.spec_accepted_per_position])


class ClientHealth(BaseModel):
    """Was the load generator itself the bottleneck? (see tuner/load/monitor.py)"""

    workers: int = 1
    loop_lag_p50_ms: float | None = None
    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None
    cpu_util_max: float | None = Field(None, description="busiest client process's CPU time / wall time (1.0 = one full core)")
    requested_concurrency: int | None = None
    achieved_concurrency: float | None = Field(None, description="time-averaged requests in flight while requests were still being sent")
    requested_rate: float | None = None
    achieved_rate: float | None = Field(None, description="requests sent per second (open loop)")
    saturated: bool = False
    reasons: list[str] = Field(default_factory=list)


class ComputeCeiling(BaseModel):
    """Everything the server computed over the level against the slice's peak FLOP/s (tuner/capacity/roofline.py)."""

    peak_flops: float = Field(description="the slice's FLOP/s: vendor peak dense bf16, or measured on a CPU host")
    peak_source: str
    flop_per_prompt_token: float = Field(description="2 x active params + attention over the tokens before it")
    flop_per_output_token: float = Field(description="2 x active params + attention over its context")
    computed_prompt_tokens: float = Field(description="prompt tokens less the server's prefix-cache hits")
    prompt_tok_s: float = Field(description="computed prompt tokens per second of the level")
    ceiling_prompt_tok_s: float = Field(description="prompt tok/s at 100% of peak with nothing else computed")
    share: float = Field(description="(computed prompt x prompt FLOP + output x output FLOP) / duration / peak")


class DecodeCeiling(BaseModel):
    """Output tokens per second that the slice's memory bandwidth allows at the level's batch (roofline.py)."""

    batch: int = Field(description="sequences decoding at once: the level's concurrency capped by max-num-seqs")
    context_len: int = Field(description="KV read per sequence at this many tokens (the level's mean prompt)")
    kv_cache_dtype: str
    weight_bytes_per_step: float = Field(description="the dense weights plus the experts the batch touches")
    experts_read: float | None = Field(None, description="expected distinct experts per MoE layer per step")
    experts_total: int | None = None
    kv_bytes_per_step: float
    bandwidth_bytes_s: float
    bandwidth_source: str
    steps_per_s: float
    tokens_per_step: float = Field(description="per sequence: 1 + accepted draft tokens")
    tokens_per_step_source: str = Field(description="no speculation | measured | assumed (all drafts accepted)")
    draft_tokens: int = Field(0, description="speculative tokens proposed per step (0: no speculation)")
    ceiling_tok_s: float
    share: float = Field(description="output tok/s / ceiling_tok_s; above 1.0 is impossible")


class Plausibility(BaseModel):
    """The level against the slice's physical limits (tuner/capacity/roofline.py): compute and memory bandwidth."""

    hardware: str
    active_params: float
    ceiling_tok_s: float | None = Field(None, description="output tokens alone at 100% of peak: peak / (2 x active)")
    compute_share: float | None = Field(None, description="output tok/s / ceiling_tok_s")
    total_compute_share: float | None = Field(None, description="(input + output) tok/s, less prefix-cache hits, / ceiling")
    compute: ComputeCeiling | None = None
    decode: DecodeCeiling | None = None
    off: list[str] = Field(default_factory=list, description="ceilings not checked, and why (an unknown figure)")
    valid: bool = True
    reason: str = ""

    def shares(self) -> str:
        """One cell: "compute 3.1% · bandwidth 42.0%" (a ceiling that is off reads "off")."""
        compute = self.compute.share if self.compute else self.compute_share  # older records: output tokens only
        cells = [f"compute {'off' if compute is None else f'{compute:.1%}'}",
                 f"bandwidth {'off' if self.decode is None else f'{self.decode.share:.1%}'}"]
        return " · ".join(cells)


class Speculation(BaseModel):
    """Speculative decoding over the level, from the server's own counters (deltas of /metrics)."""

    drafts: float = Field(description="draft proposals (one per sequence per step that drafted)")
    draft_tokens: float
    accepted_tokens: float
    acceptance_rate: float = Field(description="accepted / proposed draft tokens")
    accepted_per_draft: float = Field(description="mean accepted tokens per drafting step, so tokens per step - 1")
    per_position: list[float] = Field(default_factory=list, description="acceptance rate of draft position 0, 1, ...")

    def describe(self) -> str:
        """"48% at the first draft, then 22%, 9%, 4% (1.83 tokens per step)": the first position decides whether
        drafting pays; tokens per step is what a step yields, 1 without speculation."""
        step = f"{1 + self.accepted_per_draft:.2f} tokens per step"
        if not self.per_position:
            return f"{self.acceptance_rate:.0%} of drafts ({step})"
        first, *rest = self.per_position
        then = f", then {', '.join(f'{p:.0%}' for p in rest)}" if rest else ""
        return f"{first:.0%} at the first draft{then} ({step})"


class LevelResult(BaseModel):
    concurrency: int
    repeat: int = 0
    requests: int
    completed: int
    failed: int
    duration_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    output_throughput: float = 0.0
    output_throughput_ci: Interval | None = Field(None, description="95 % CI of output_throughput: batch means over"
                                                  " the steady part (tuner.load.intervals); None: studies from before")
    total_token_throughput: float = 0.0
    request_throughput: float = 0.0
    ttft_ms: LatencyStats = Field(default_factory=LatencyStats)
    tpot_ms: LatencyStats = Field(default_factory=LatencyStats)
    itl_ms: LatencyStats = Field(default_factory=LatencyStats)
    e2el_ms: LatencyStats = Field(default_factory=LatencyStats)
    errors: dict[str, int] = Field(default_factory=dict, description="failed requests by kind")
    server: ServerCounters | None = None
    warnings: list[str] = Field(default_factory=list, description="why a figure of this level may not be trusted")
    # Added by the load generator of issue 3 (all optional, so stored results from before still load).
    mode: LoadMode = Field(LoadMode.CLOSED, description="closed (fixed concurrency) or open (arrivals at a rate)")
    request_rate: float | None = Field(None, description="requested arrival rate, open loop only")
    input_len: int | None = Field(None, description="requested prompt length in tokens (mean when drawn from a range)")
    output_len: int | None = Field(None, description="requested output length in tokens (mean when drawn from a range)")
    chunks: int = Field(0, description="content SSE events the client received (the unit of ITL)")
    queue_ms: LatencyStats = Field(default_factory=LatencyStats, description="client-side wait before sending; not in TTFT")
    goodput: float | None = Field(None, description="requests per second that met every SLO given")
    goodput_tok_s: float | None = Field(None, description="output tokens per second of the requests that met every"
                                        " SLO given")
    slo: dict[str, float] = Field(default_factory=dict, description="the SLOs goodput used: ttft_ms, tpot_ms, e2el_ms")
    client: ClientHealth | None = None
    token_mismatch: bool = Field(False, description="client and server output-token counts differ by more than 1%")
    plausibility: Plausibility | None = None
    speculation: Speculation | None = None
    reliable: bool = Field(True, description="False when the client saturated, tokens mismatched or the figure is impossible")
    reconnects: int = Field(0, description="requests sent again because the server closed their kept-alive connection"
                            " before answering (the close/send race); not failures")
    phase: LevelRole = Field(LevelRole.SWEEP, description="sweep (the load levels that are scored), soak (a"
                             " confirmation run's long phase over every shape of the workload, for survival) or"
                             " worst_case (max-num-seqs requests at the longest lengths, before the sweep)")
    workload: str = Field("", description="which traffic produced these numbers (tuner.load.Workload.describe)")
    sampling: SamplingInForce | None = Field(None, description="the sampling these numbers were measured with;"
                                             " None: measured before sampling was part of the workload, when every"
                                             " request was greedy (temperature 0)")
    connections_opened: int = Field(0, description="connections opened during the level because the server had closed"
                                    " idle ones (keep-alive timeout) or answered `Connection: close`")
    ended_by: LevelEnd | None = Field(None, description="what ended the level's sending (precision reached, the cap,"
                                      " a proven SLO miss, ...); None: measured before levels had a precision")
    precision_target: float | None = Field(None, description="the relative half-width of the 95 % CI of output"
                                           " throughput the level measured to; None: a fixed count")
    unsent: int = Field(0, description="prepared requests never sent because the level had ended (not failures)")

    def describe_end(self) -> str:
        """"236 requests, to +/-5 %" / "512 requests, the cap, short of +/-5 %": how much the level sent and why it
        stopped there."""
        sent = f"{self.requests} requests"
        target = f"+/-{self.precision_target:.0%}" if self.precision_target is not None else ""
        return {LevelEnd.PRECISION: f"{sent}, to {target}",
                LevelEnd.CAP: f"{sent}, the cap, short of {target}",
                LevelEnd.SLO_MISSED: f"{sent}, stopped: an SLO is missed for sure",
                LevelEnd.DURATION: f"{sent}, the duration ran out",
                LevelEnd.CUT_SHORT: f"{sent}, cut short"}.get(self.ended_by or LevelEnd.COUNT, sent)


class TrialResult(BaseModel):
    """Everything a worker learned from one launch of one configuration."""

    argv: list[str]
    env: dict[str, str]  # secrets redacted
    failure_class: FailureClass | None = None  # None: the server started and the whole sweep ran
    failure_detail: str = ""
    startup_s: float | None = None
    levels: list[LevelResult] = Field(default_factory=list)
    levels_planned: int = 0
    log_path: str = ""
    log_tail: str = ""
    hostname: str = ""
    node_id: str = Field("", description="the Ray node the launch ran on (hosts can share a name, and one host can"
                         " run several nodes); empty outside Ray")
    wall_s: float = 0.0
    server_version: str = Field("", description="what the server reported at /version once ready (vLLM's version);"
                                " empty when it has no such endpoint")
    startup: dict[str, Any] = Field(default_factory=dict, description="startup_* phases (tuner.server.startup)")
    phases: dict[str, float] = Field(default_factory=dict, description="slice seconds per launch phase, in phase"
                                     " order, summing to wall_s (tuner.contracts.phases.LaunchPhase)")
    first_request_s: float | None = Field(None, description="seconds the first request (one of the traffic's, sent"
                                          " alone after ready) took; part of startup_s. None: never answered")
    killed_by: str = Field("", description="the signal that ended the server or its engine's worker (SIGILL,"
                           " SIGSEGV, ...), from its exit status and its log; empty when none did")
    relaunched_after: str = Field("", description="this launch ran the same parameters again because a signal"
                                  " killed the first launch before it served a request: that launch's detail (its"
                                  " death counts against survival)")
    traceback: str = Field("", description="tuner_error only: where tuner's own code raised (secrets redacted)")
    sweep_stopped: str = Field("", description="why the sweep ended before its highest level (load.stop_early), or"
                               " before its repeats (dominated)")
    dominated: bool = Field(False, description="stopped once proven unable to reach the front (tuner.trial.dominance):"
                            " the levels left and the operating point's repeat were not measured")
    replayed: str = Field("", description="not measured by this study: drawn from this recorded surface"
                          " (tuner.study.replay)")
    prompts_s: float | None = Field(None, description="seconds spent building every planned level's requests"
                                    " after startup, before the first level")
    prompts_built: int = Field(0, description="requests built before the first level (warm-up included)")
    probes: list[ProbeAnswer] = Field(default_factory=list, description="the quality probes' answers, before the"
                                      " sweep (tuner.trial.probes); empty when the study's quality guard is off")
    probes_s: float | None = Field(None, description="seconds the probes took")
    probes_after_soak: list[ProbeAnswer] = Field(default_factory=list, description="a confirmation run's answers"
                                                 " to the same probes after its soak (a server that drifts under"
                                                 " sustained load is caught too)")
