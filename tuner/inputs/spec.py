"""The study file: what to tune, how to launch the server, how to load it, what a trial needs, where to store.

Every field has a default except `name`, `model` and `search_space`; see studies/quickstart-cpu.yaml for a
complete example. Paths to the search space are relative to the study file. The server command and the model
are handed to the worker unchanged (they name things in the worker's environment).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from tuner.contracts.goals import DEFAULT_OBJECTIVES, Goals, check_latency_name, direction_of
from tuner.contracts.sampling import Sampling
from tuner.errors import InputError
from tuner.inputs._yaml import read_yaml_mapping, validate
from tuner.inputs.search_space import SearchSpace, check_env_name, check_flag_name, load_search_space

# Flags the tuner itself sets on every launch: the server must bind where the tuner looks for it.
RESERVED_FLAGS = {"--host", "--port", "--model", "--config"}
STUDY_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The server runs at this niceness, in a CPU scheduling group (session) of its own: when it and the load client want
# the same core, the client goes first, so its timestamps are not late. Measured on the 2-core CPU host
# (benchmarks/server_priority.py): at 0, idle processes waited 100-600 ms for a core during low-concurrency levels
# and TTFT p99 read 400-630 ms instead of 25-35 ms; at 10 no wait over 50 ms, and the same throughput.
DEFAULT_SERVER_NICE = 10


class ServerSpec(_Strict):
    command: list[str] = Field(default_factory=lambda: ["vllm", "serve"], min_length=1,
                               description="argv prefix that starts an OpenAI-compatible vLLM server")
    flags: dict[str, Any] = Field(default_factory=dict, description="fixed flags, same value forms as a vllm --config file")
    env: dict[str, str] = Field(default_factory=dict, description="values may be written as numbers or booleans")
    host: str = "127.0.0.1"
    nice: int = Field(default=DEFAULT_SERVER_NICE, ge=0, le=19,
                      description="the server's CPU priority below tuner's load client (0 = equal; 0-19)")
    check_flags: bool = Field(default=True, description="check every flag against the installed server's own"
                              " `--help=all` before the first launch (false: a server environment this machine"
                              " cannot run)")

    @field_validator("flags")
    @classmethod
    def _flags(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            check_flag_name(name)
            if name in RESERVED_FLAGS:
                raise ValueError(f"{name} is set by tuner itself (use the study's 'model' key for the model)")
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v  # pydantic says what was expected
        for name in v:
            check_env_name(name)
        return {k: str(int(val) if isinstance(val, bool) else val) if isinstance(val, int | float | bool) else val
                for k, val in v.items()}


class ShapeSpec(_Strict):
    """One request shape of a weighted mix (the seed's concurrency x input x output matrix, as traffic)."""

    input_len: PositiveInt
    output_len: PositiveInt
    weight: PositiveFloat = 1.0


class DatasetSpec(_Strict):
    """The user's own traffic from a file (formats: tuner/load/dataset.py), sampled reproducibly."""

    path: Path = Field(description="JSONL of prompts or of input/output token lengths, or ShareGPT conversations;"
                       " relative to the study file")
    samples: PositiveInt | None = Field(default=None, description="draw this many entries (all when unset)")
    seed: int = 0


class LoadSpec(_Strict):
    """The load sweep every trial runs: closed loop at each concurrency level, with the study's traffic.

    Traffic, one of: fixed lengths (input_len, output_len), ranges (input_len_max / output_len_max: lengths drawn
    uniformly per request), a weighted mix of shapes (`shapes`), or a dataset file (`dataset`)."""

    concurrency: list[PositiveInt] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    requests_per_level: PositiveInt = Field(default=512, description="the most requests a level sends (its cap);"
                                            " with precision: null, exactly this many")
    precision: float | None = Field(default=0.05, gt=0.0, lt=1.0, description="measure each level until its output"
                                    " throughput is known to this relative half-width of its 95 % confidence"
                                    " interval (0.05: +/-5 %), sending at least min_requests and at most"
                                    " requests_per_level; null: a fixed requests_per_level per level")
    screen_precision: float | None = Field(default=0.15, gt=0.0, lt=1.0, description="coarse first: the sweep's"
                                           " levels measure to this precision; the operating point, measured again"
                                           " (repeats), to `precision`. null: every level to `precision`")
    min_requests: PositiveInt | None = Field(default=None, description="the fewest requests a level sends before"
                                             " its precision may end it (default: two rounds of the level's"
                                             " streams, and 100 for a p99 SLO)")
    warmup_rounds: int = Field(default=1, ge=0, description="rounds of `concurrency` requests before each level, not"
                               " measured (so every batch size the level uses has run once)")
    input_len: PositiveInt = 128
    output_len: PositiveInt = 128
    input_len_max: PositiveInt | None = Field(default=None, description="draw input lengths from [input_len, this]")
    output_len_max: PositiveInt | None = Field(default=None, description="draw output lengths from [output_len, this]")
    prefix_len: int = Field(default=0, ge=0, description="tokens every prompt shares (prefix caching); part of input_len")
    shapes: list[ShapeSpec] = Field(default_factory=list, description="a weighted mix of (input, output) shapes")
    dataset: DatasetSpec | None = None
    seed: int = Field(default=0, description="which prompts and samples requests draw (the same in every trial)")
    sampling: Sampling = Field(default_factory=Sampling, description="sampling sent with every request (temperature,"
                               " top_p, top_k, min_p, repetition/presence/frequency penalties, seed); unset, the"
                               " server's defaults apply (vLLM: the model's generation_config.json), as for a"
                               " client that leaves sampling alone. {temperature: 0} measures greedy decoding")
    rates: list[PositiveFloat] = Field(default_factory=list, description="open loop: one level per arrival rate"
                                       " (requests/s, ascending) instead of per concurrency; `concurrency` then holds"
                                       " one value, the cap on requests in flight")
    arrival: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: PositiveFloat = Field(default=1.0, description="gamma shape of the arrivals (1 = Poisson)")
    remeasure_flagged: int = Field(default=2, ge=0, le=5, description="times a level flagged as unreliable (client"
                                   " saturated, token mismatch, implausible) is measured again before it is left out")
    repeats: int = Field(default=2, ge=1, le=10, description="times the top level is measured, for stability")
    worst_case: bool = Field(default=True, description="before the sweep, --max-num-seqs requests at once at the"
                             " longest prompt and output the traffic allows (capped by --max-model-len): a config"
                             " that dies at the top of the sweep fails in seconds, not after every lower level")
    stop_dominated: bool = Field(default=True, description="stop a search launch once it is proven unable to reach"
                                 " the front: the upper end of what its levels left could show (per-sequence"
                                 " throughput does not rise with concurrency) below a front config's lower end,"
                                 " that config at least as good on every other objective")
    stop_early: bool = Field(default=True, description="end the sweep at a level that misses the SLOs or whose"
                             " throughput gains less than plateau_gain over the lower levels (recorded with the"
                             " trial); the top level measured is then the one repeated")
    plateau_gain: float = Field(default=0.05, ge=0.0, le=1.0, description="the least throughput gain over the best"
                                " lower level for the sweep to go on (with stop_early)")
    endpoint: Literal["/v1/completions", "/v1/chat/completions"] = "/v1/completions"
    request_timeout_s: PositiveFloat = 120.0
    level_timeout_s: PositiveFloat = 600.0

    @field_validator("concurrency")
    @classmethod
    def _ascending(cls, v: list[int]) -> list[int]:
        if sorted(set(v)) != v:
            raise ValueError("concurrency levels must be distinct and ascending")
        return v

    @model_validator(mode="after")
    def _one_traffic(self) -> LoadSpec:
        if self.shapes and self.dataset:
            raise ValueError("shapes: give either a mix of shapes or a dataset, not both")
        for name in ("input_len", "output_len"):
            top = getattr(self, f"{name}_max")
            if top is not None and top < getattr(self, name):
                raise ValueError(f"{name}_max: must be at least {name} ({getattr(self, name)})")
        shortest = min([s.input_len for s in self.shapes] or [self.input_len])
        if self.prefix_len > shortest:
            raise ValueError(f"prefix_len: at most the shortest input length ({shortest})")
        return self

    @model_validator(mode="after")
    def _open_loop(self) -> LoadSpec:
        if self.rates:
            if sorted(set(self.rates)) != self.rates:
                raise ValueError("rates: arrival rates must be distinct and ascending")
            if len(self.concurrency) != 1:
                raise ValueError("concurrency: with rates, give one value: the cap on requests in flight")
        return self

    @model_validator(mode="after")
    def _coarse_first(self) -> LoadSpec:
        if self.screen_precision is not None and self.precision is not None and self.screen_precision < self.precision:
            raise ValueError(f"screen_precision: {self.screen_precision} is finer than precision ({self.precision});"
                             " the screen is the coarse pass: give a larger value, or null")
        return self

    @model_validator(mode="after")
    def _enough_requests(self) -> LoadSpec:
        if self.requests_per_level < max(self.concurrency):
            raise ValueError(
                f"requests_per_level: {self.requests_per_level} cannot keep {max(self.concurrency)} streams busy;"
                " give at least as many requests as the highest concurrency"
            )
        return self


class BudgetSpec(_Strict):
    """What the study may spend. The search launches no trial whose expected cost (the mean measured launch; the
    hardware's startup estimate before one is measured) would overrun it, keeping what the confirmation needs."""

    slice_hours: PositiveFloat = Field(description="slice-hours for the whole study: search and confirmation runs")


BUDGET_ONLY_TRIALS = 10_000  # `budget` without `trials`: the budget alone ends the search


class ConfirmSpec(_Strict):
    """After the search: relaunch the configs on and near the front, and soak them, before anything is exported."""

    repeats: int = Field(default=2, ge=0, le=10, description="relaunches of each candidate (0: no confirmation;"
                         " exports then carry single-launch numbers, marked unconfirmed)")
    candidates: PositiveInt = Field(default=3, description="at most this many configs from the front and within the"
                                    " machine's noise of it")
    soak_requests: int = Field(default=0, ge=0, description="requests of a soak at the operating point after each"
                               " confirmation sweep, cycling through every shape of the workload (0: 2 x"
                               " requests_per_level)")


class QualitySpec(_Strict):
    """The output-quality guard (tuner.scoring.quality): every launch answers a deterministic probe set before its
    sweep, and a config whose answers differ from the reference's by more than the reference's own noise plus
    `tolerance` is `wrong_output`: penalized, never on the front, never exported."""

    enabled: bool = False
    reference: dict[str, Any] | None = Field(default=None, description="the trusted config's parameter values (no"
                                             " fp8 KV cache, no speculation); default: the first enqueue entry")
    tolerance: float = Field(default=0.05, ge=0.0, le=1.0, description="how far below the reference's own quality"
                             " figure a config may fall, and nats per token beyond its noise floor")
    output_len: int = Field(default=16, ge=1, le=256, description="greedy tokens each probe answers")


class ReplaySpec(_Strict):
    """Answer trials from a recorded surface instead of launching servers (tuner.study.replay; search benchmarks)."""

    surface: Path = Field(description="a surface JSON recorded by benchmarks/record_surface.py, relative to the"
                          " study file")
    seed: int | None = Field(default=None, description="which recorded launch each trial draws")


class WarmStartSpec(_Strict):
    """Seed the sampler with the finished trials of another study over the same space (e.g. another slice type).
    They teach the sampler where good configs lie; they are marked `warm_start_from`, never count as launches of
    this study, and never join its front: every config is still measured here before it can be exported."""

    study: str = Field(pattern=STUDY_NAME_RE, description="the other study's name")
    storage: str | None = Field(default=None, description="its storage URL (default: this study's storage)")


class Timeouts(_Strict):
    startup_s: PositiveFloat = 900.0
    shutdown_grace_s: PositiveFloat = 15.0
    fatal_log_grace_s: PositiveFloat = Field(default=5.0, description="wait after a fatal log line for the exit")


class LeaseSpec(_Strict):
    """How long a RUNNING trial stays its driver's (tuner.study._lease). The driver renews a heartbeat for each trial
    it runs every `heartbeat_s`; a trial whose heartbeat is older than `grace_s` belongs to a driver that is gone
    (killed, its machine lost) and is re-queued by the next driver that looks: a restarted one, or another driver
    sharing the study."""

    heartbeat_s: PositiveFloat = Field(default=15.0, description="seconds between a driver's heartbeats for the"
                                       " trials it runs")
    grace_s: PositiveFloat = Field(default=60.0, description="seconds without a heartbeat after which a RUNNING"
                                   " trial is re-queued: how long a restarted driver waits for a killed one's"
                                   " trials, and how long a driver may stall before another takes them over")

    @model_validator(mode="after")
    def _grace_covers_beats(self) -> LeaseSpec:
        if self.grace_s < 2 * self.heartbeat_s:
            raise ValueError(f"grace_s: must be at least twice heartbeat_s ({2 * self.heartbeat_s:g} s), so one late"
                             " heartbeat does not cost a live driver its trials")
        return self


class SamplerSpec(_Strict):
    """Which Optuna sampler proposes configs. auto (default): gp when torch and scipy are installed and trials run one
    at a time, else tpe (the evidence: README, "Is the search worth it?"); tpe: multivariate TPE with the
    constraints; nsga2: NSGA-II with a population sized to the budget; gp: Optuna's GPSampler (needs
    `pip install 'tuner[gp]'`); random; grid: every combination of the space's choices, in a seeded order
    (categorical parameters, or int/float with step)."""

    name: Literal["auto", "tpe", "nsga2", "random", "grid", "gp"] = "auto"
    seed: int | None = None
    startup_trials: PositiveInt | None = Field(default=None, description="random trials before TPE or GP model the"
                                               " space")
    population_size: PositiveInt | None = Field(default=None, description="NSGA-II's population (default: a quarter"
                                                " of the trials, at least 4; Optuna's 50 exceeds most budgets)")


class ModelInfo(_Strict):
    """What the memory-fit estimate (tuner study plan, prescreen) needs to know about the model."""

    config_json: Path | None = Field(default=None, description="the model's config.json, relative to the study file")
    total_params: PositiveFloat | None = Field(default=None, description="all parameters (MoE: every expert)")
    active_params: PositiveFloat | None = Field(default=None, description="parameters used per token (MoE)")


class HardwareSpec(_Strict):
    """The slice one trial runs on, by name from tuner.contracts.hardware.SLICES (e.g. tpu-v6e-4, cpu)."""

    name: str = Field(min_length=1)
    memory_per_device_gib: PositiveFloat | None = Field(default=None, description="override the catalog's memory")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tuner.contracts.hardware import SLICES  # light module: stdlib only

        if v not in SLICES:
            raise ValueError(f"unknown hardware {v!r}; known: {', '.join(sorted(SLICES))}")
        return v


class Claim(_Strict):
    """A throughput measured elsewhere (a write-up, a vendor's table) for one enqueued config: `tuner study plan`
    checks it against the slice's ceilings before any launch (tuner/capacity/roofline.py)."""

    config: str = Field(description="the enqueue label of the config it was measured with")
    concurrency: PositiveInt = Field(description="concurrent users when it was measured")
    output_tok_s: PositiveFloat
    source: str = Field(default="", description="where the figure comes from")


class StudySpec(_Strict):
    name: str = Field(pattern=STUDY_NAME_RE)
    model: str = Field(min_length=1, description="model path or id as the server takes it (--model)")
    search_space: Path
    server: ServerSpec = Field(default_factory=ServerSpec)
    load: LoadSpec = Field(default_factory=LoadSpec)
    resources: dict[str, PositiveFloat] = Field(default_factory=lambda: {"CPU": 1.0},
                                                description="what one trial reserves on the Ray cluster")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    trials: PositiveInt = 20
    budget: BudgetSpec | None = Field(default=None, description="a slice-hour budget, beside or instead of `trials`")
    patience: PositiveInt | None = Field(default=None, description="end the search early when this many launched"
                                         " trials in a row have not improved the front (counted from the first"
                                         " feasible trial); the confirmation still runs")
    parallel: PositiveInt = 1
    storage: str = "sqlite:///tuner.db"
    runs_dir: Path = Field(default=Path("tuner-runs"), description="server logs of every trial go here")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="parameter sets to run first")
    max_infra_retries: int = Field(default=2, ge=0)
    lease: LeaseSpec = Field(default_factory=LeaseSpec, description="how a driver holds the trials it runs, so"
                             " several drivers can share a study and a killed driver's trials are re-queued")
    accelerator_type: str | None = Field(default=None, description="Ray accelerator type a trial must run on, "
                                         "e.g. TPU-V6E or H100 (ray.util.accelerators)")
    enqueue_labels: list[str] = Field(default_factory=list, description="names of the enqueue entries, in order,"
                                      " shown in reports (e.g. 'seed: gold standard')")
    claims: list[Claim] = Field(default_factory=list, description="throughputs measured elsewhere for enqueued "
                                "configs, checked by `tuner study plan` against the slice's ceilings")
    model_info: ModelInfo | None = Field(default=None, description="for the memory-fit estimate")
    hardware: HardwareSpec | None = Field(default=None, description="the slice, for the memory-fit estimate")
    predict_from_failures: bool = Field(default=True, description="record a config that a measured kv_capacity"
                                        " failure rules out (longer context, no more KV memory) as predicted"
                                        " instead of launching it (tuner/capacity/failure_rules.py)")
    prescreen: bool = Field(default=False, description="record configs predicted not to fit as penalized"
                            " (marked predicted) instead of launching them")
    objectives: list[str] = Field(default_factory=lambda: list(DEFAULT_OBJECTIVES), min_length=2, max_length=3,
                                  description="what the front trades off (tuner/scoring/objectives.py)")
    slo: dict[str, PositiveFloat] = Field(default_factory=dict, description="latency limits in ms a config must meet,"
                                          " e.g. {ttft_p99_ms: 500, itl_p99_ms: 50}")
    slo_margin: float = Field(default=0.1, ge=0.0, lt=0.5, description="the operating point must beat each SLO by"
                              " this fraction, because a relaunch measures the percentile again and it moves between"
                              " launches: 0.1 holds ttft_p99_ms 2000 to 1,800 ms")
    price_per_slice_hour: PositiveFloat | None = Field(default=None, description="what one trial's slice costs per"
                                                       " hour, for the usd_per_m_tokens objective")
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    replay: ReplaySpec | None = Field(default=None, description="no servers: every trial replays a recorded launch"
                                      " of its config, marked as replayed")
    warm_start: WarmStartSpec | None = Field(default=None, description="seed the sampler with another study's"
                                             " finished trials (same space), marked and never on this front")
    compile_cache_dir: str | None = Field(default=None, description="persistent compile cache on each worker's disk"
                                          " (VLLM_XLA_CACHE_PATH on TPU), shared by that worker's trials")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        for name in v:
            direction_of(name)
        if len(set(v)) != len(v):
            raise ValueError("name each objective once")
        return v

    @field_validator("slo")
    @classmethod
    def _slo(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            check_latency_name(name)
        return v

    @model_validator(mode="after")
    def _budget_alone(self) -> StudySpec:
        if self.budget is not None and "trials" not in self.model_fields_set:
            self.trials = BUDGET_ONLY_TRIALS
        return self

    @model_validator(mode="after")
    def _priced(self) -> StudySpec:
        if "usd_per_m_tokens" in self.objectives and self.price_per_slice_hour is None:
            raise ValueError("price_per_slice_hour: the usd_per_m_tokens objective needs the price of one slice-hour")
        if "tok_s_per_chip" in self.objectives and self.hardware is None:
            raise ValueError("hardware: the tok_s_per_chip objective needs the slice (hardware.name)")
        return self

    @model_validator(mode="after")
    def _quality_reference(self) -> StudySpec:
        if "quality" in self.objectives and not self.quality.enabled:
            raise ValueError("objectives: the quality objective needs the quality guard (quality: {enabled: true})")
        if self.quality.enabled and self.quality.reference is None and not self.enqueue:
            raise ValueError("quality.reference: name the trusted config's parameters, or enqueue it first (the"
                             " first enqueue entry is the reference)")
        return self

    @model_validator(mode="after")
    def _claims_name_configs(self) -> StudySpec:
        for i, claim in enumerate(self.claims):
            if claim.config not in self.enqueue_labels:
                raise ValueError(f"claims.{i}.config: {claim.config!r} is not an enqueue label (known:"
                                 f" {', '.join(map(repr, self.enqueue_labels)) or 'none'})")
        return self

    def quality_reference(self) -> dict[str, Any] | None:
        """The reference config's parameters when the guard is on (default: the first enqueue entry)."""
        if not self.quality.enabled:
            return None
        return self.quality.reference if self.quality.reference is not None else self.enqueue[0]

    def goals(self) -> Goals:
        return Goals.on_slice(self.objectives, self.slo, self.hardware.name if self.hardware else None,
                              self.price_per_slice_hour, self.slo_margin)

    @field_validator("compile_cache_dir")
    @classmethod
    def _absolute_cache(cls, v: str | None) -> str | None:
        # The path is handed to every worker's server as is: "~" or a relative path would resolve per process.
        if v is not None and not v.startswith("/"):
            raise ValueError("give an absolute path on the workers' disks, e.g. /var/tmp/tuner-xla-cache")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("name at least one resource a trial needs, e.g. {CPU: 2} or {GPU: 1} or {TPU: 4}")
        return v


class Study(BaseModel):
    """A loaded study: the validated study file together with its validated search space."""

    model_config = ConfigDict(frozen=True)

    path: Path
    spec: StudySpec
    space: SearchSpace


def load_study(path: Path) -> Study:
    spec = validate(StudySpec, read_yaml_mapping(path), str(path))
    space_path = spec.search_space if spec.search_space.is_absolute() else path.parent / spec.search_space
    space = load_search_space(space_path)
    spec = spec.model_copy(update={"search_space": space_path})
    if spec.load.dataset is not None and not spec.load.dataset.path.is_absolute():
        dataset = spec.load.dataset.model_copy(update={"path": path.parent / spec.load.dataset.path})
        spec = spec.model_copy(update={"load": spec.load.model_copy(update={"dataset": dataset})})
    if spec.replay is not None and not spec.replay.surface.is_absolute():
        spec = spec.model_copy(update={"replay": spec.replay.model_copy(
            update={"surface": path.parent / spec.replay.surface})})
    _check_against_space(spec, space, str(path))
    _check_sampler(spec, space, str(path))
    return Study(path=path, spec=spec, space=space)


def _check_sampler(spec: StudySpec, space: SearchSpace, source: str) -> None:
    if spec.sampler.name == "grid":
        try:
            space.grid()
        except ValueError as exc:
            key, _, expected = str(exc).partition(": ")
            raise InputError(str(spec.search_space), key, expected + " (the study's sampler is grid)") from None
    if spec.sampler.name == "gp":
        import importlib.util

        if not all(importlib.util.find_spec(m) for m in ("torch", "scipy")):
            raise InputError(source, "sampler.name", "gp needs torch and scipy: pip install 'tuner[gp]', or choose"
                             " tpe, nsga2, random or grid")


def _check_against_space(spec: StudySpec, space: SearchSpace, source: str) -> None:
    overlap = sorted(set(spec.server.flags) & space.flags_set())
    if overlap:
        raise InputError(source, f"server.flags.{overlap[0]}", "is also set by the search space; fix it in one place only")
    env_overlap = sorted(set(spec.server.env) & space.env_set())
    if env_overlap:
        raise InputError(source, f"server.env.{env_overlap[0]}", "is also set by the search space; fix it in one place only")
    for i, params in enumerate(spec.enqueue):
        try:
            space.check_values(params, f"enqueue.{i}")
        except ValueError as exc:
            key, _, expected = str(exc).partition(": ")
            raise InputError(source, key, expected) from None
