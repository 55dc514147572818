"""The check before a launch, shared by the study loop and `tuner study plan`: search-space rules always, then
(when the study opts in with `prescreen: true`) the memory-fit estimate of whether a config can fit at all.

A config that breaks a rule or is predicted not to fit is never launched: it is recorded as penalized and marked
predicted, never as measured. `preflight` runs the same estimate before a study is created, so an input error
(e.g. a CPU slice without --kv-cache-memory-bytes) is reported before anything is written.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.contracts.outcomes import FailureClass

if TYPE_CHECKING:
    from tuner.capacity.memory_fit import MemoryEstimate, ModelShape
    from tuner.contracts.hardware import Hardware
    from tuner.inputs.spec import Study
    from tuner.server.config import ServerConfig


# -- the model and slice a study runs on ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelContext:
    shape: ModelShape | None
    hardware: Hardware | None
    why_not: str = ""  # when no estimate can be made


def model_config_path(study: Study) -> Path | None:
    """The model's config.json as the driver can read it: model_info.config_json, else a local model folder's."""
    info = study.spec.model_info
    if info and info.config_json:
        return info.config_json if info.config_json.is_absolute() else study.path.parent / info.config_json
    local = Path(study.spec.model) / "config.json"  # a local model directory, as the server would read it
    return local if local.is_file() else None


def prompt_vocab_size(study: Study) -> int | None:
    """The vocabulary size for token-id prompts of exact length; None: trials make exact text prompts with the
    server's /tokenize instead (a hub id with no config.json here, or the chat endpoint)."""
    from tuner.load.tokenizer import vocab_size_of_config

    path = model_config_path(study)
    return vocab_size_of_config(path) if path is not None else None


def model_context(study: Study) -> ModelContext:
    """The model's shape and the slice, from the study's model_info and hardware (or what can be inferred)."""
    from tuner.capacity.memory_fit import load_model_shape
    from tuner.contracts.hardware import SLICES, GiB

    spec = study.spec
    info = spec.model_info
    config_path = model_config_path(study)
    if config_path is None:
        return ModelContext(None, None, "no config.json: set model_info.config_json in the study")
    shape = load_model_shape(config_path, info.total_params if info else None, info.active_params if info else None)
    hardware: Hardware | None = None
    if spec.hardware:
        hardware = SLICES[spec.hardware.name]
        if spec.hardware.memory_per_device_gib:
            hardware = hardware.with_memory(int(spec.hardware.memory_per_device_gib * GiB))
    elif set(spec.resources) <= {"CPU"}:
        hardware = SLICES["cpu"]  # a CPU-only trial runs vLLM's CPU backend
    if hardware is None:
        return ModelContext(shape, None, "no hardware: set hardware.name in the study (e.g. tpu-v6e-4)")
    return ModelContext(shape, hardware)


def estimate_config(ctx: ModelContext, config: ServerConfig) -> MemoryEstimate:
    from tuner.capacity.memory_fit import estimate, knobs_from_flags

    assert ctx.shape is not None and ctx.hardware is not None, ctx.why_not
    return estimate(ctx.shape, ctx.hardware, knobs_from_flags(config.flags, config.env, ctx.shape,
                                                                   ctx.hardware))


def preflight(study: Study, sampled: int = 2) -> None:
    """Raise the InputError a study would otherwise meet only after it was created and written to storage.

    With `prescreen: true`, the memory estimate must be computable for the study's configs (e.g. a CPU slice needs
    --kv-cache-memory-bytes): the enqueued configs and a few sampled ones are estimated, as the loop would. With the
    quality guard on, the model's vocabulary must be readable (the probes are token-id prompts of exact lengths).
    """
    _check_quality_inputs(study)
    if not study.spec.prescreen:
        return
    ctx = model_context(study)
    if ctx.shape is None or ctx.hardware is None:
        return  # the loop launches without an estimate and records why
    from tuner.errors import InputError, ServerFlagError

    for planned in plan_configs(study, len(study.spec.enqueue) + sampled):
        if planned.violations:
            continue
        try:
            estimate_config(ctx, planned.config)
        except ServerFlagError as exc:  # name the file the user can fix, and where the flag comes from
            if exc.key in study.space.flags_set():
                raise InputError(str(study.spec.search_space), exc.key, exc.expected) from None
            raise InputError(str(study.path), f"server.flags.{exc.key}", exc.expected) from None


def _check_quality_inputs(study: Study) -> None:
    from tuner.errors import InputError

    if study.spec.quality.enabled and prompt_vocab_size(study) is None:
        raise InputError(str(study.path), "quality.enabled", "the guard's probes are token-id prompts of exact"
                         " lengths, so it needs the model's config.json (vocab_size): a local model folder as"
                         " `model`, or model_info.config_json; or turn the guard off")


# -- prescreen, for the study loop ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prescreen:
    """Whether to launch a config. launch False: record failure_class as PREDICTED, never as measured."""

    launch: bool
    failure_class: FailureClass | None = None
    detail: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)


def prescreen(study: Study, config: ServerConfig, ctx: ModelContext | None = None) -> Prescreen:
    """Predict whether `config` fits. Launch when the study did not opt in, or when no estimate can be made."""
    if not study.spec.prescreen:
        return Prescreen(launch=True, detail="prescreen off")
    ctx = ctx or model_context(study)
    if ctx.shape is None or ctx.hardware is None:
        return Prescreen(launch=True, detail=f"no estimate ({ctx.why_not})")
    est = estimate_config(ctx, config)
    attrs = estimate_attrs(est)
    if est.fits:
        return Prescreen(launch=True, detail=est.reason, estimate=attrs)
    return Prescreen(launch=False, failure_class=est.predicted_failure,
                     detail=f"predicted {est.predicted_failure}, not launched: {est.reason}", estimate=attrs)


def pre_launch(study: Study, params: dict[str, Any], config: ServerConfig,
               ctx: ModelContext | None = None) -> Prescreen:
    """The study loop's gate before a launch: search-space rules always, then the prescreen if the study opted in.

    A config breaking a rule is `invalid_config` and is never launched; a predicted non-fit is `oom` or
    `kv_capacity`. Either way the verdict is a prediction, recorded as one (TrialRecord.predicted), never as a measurement.
    """
    broken = study.space.violations(params, study.spec.server.flags, study.spec.server.env)
    if broken:
        return Prescreen(launch=False, failure_class=FailureClass.INVALID_CONFIG,
                         detail="breaks search-space rule, not launched: " + "; ".join(broken),
                         estimate={"rule_violations": broken})
    if not study.spec.prescreen:
        return Prescreen(launch=True, detail="prescreen off")
    return prescreen(study, config, ctx)


def estimate_attrs(est: MemoryEstimate) -> dict[str, Any]:
    """The estimate as JSON-safe trial attributes."""
    return {"fits": est.fits, "predicted_failure": est.predicted_failure, "reason": est.reason,
            "kv_capacity_tokens": est.kv_capacity_tokens, "max_concurrency": round(est.max_concurrency, 3),
            "weights_per_device": est.weights_per_device, "kv_memory_per_device": est.kv_memory_per_device,
            "per_request_bytes": est.per_request_bytes, "hardware": est.hardware}


# -- drawing configs --------------------------------------------------------------------------------------------
@dataclass
class PlannedConfig:
    number: int
    label: str
    enqueued: bool
    params: dict[str, Any]
    config: ServerConfig
    violations: list[str]


def plan_configs(study: Study, n: int, seed: int | None = None) -> list[PlannedConfig]:
    """The first n configs the study would try: enqueued ones first, then sampled (as by a fresh study)."""
    import optuna

    from tuner.server.config import build_server_config

    spec = study.spec
    sampler_seed = seed if seed is not None else spec.sampler.seed
    # Before any result exists TPE samples at random, so a seeded RandomSampler shows the same kind of configs.
    dry = optuna.create_study(directions=["maximize", "maximize"],
                              sampler=optuna.samplers.RandomSampler(seed=sampler_seed))
    for params in spec.enqueue[:n]:
        dry.enqueue_trial(params)
    planned = []
    for i in range(n):
        trial = dry.ask()
        params = study.space.sample(trial)
        enqueued = i < len(spec.enqueue)
        label = (spec.enqueue_labels[i] if enqueued and i < len(spec.enqueue_labels)
                 else "enqueued" if enqueued else "sampled")
        config = build_server_config(spec, study.space, params)
        violations = study.space.violations(params, spec.server.flags, spec.server.env)
        planned.append(PlannedConfig(i, label, enqueued, params, config, violations))
    return planned


# -- flags and environment against the installed server ---------------------------------------------------------
def check_server_inputs(study: Study, reader: Callable[..., tuple[Any, str]] | None = None) -> list[str]:
    """Every flag the study sets or its space can set, against what the installed server accepts (its own
    `--help=all`, cached per version): an unknown flag, or a value outside a flag's choices, is an InputError
    naming the file, the key and the nearest known flag. Returns notes for the user: an environment knob the
    server does not list (a warning: plugins read knobs vLLM does not list), or why nothing was checked.
    `reader`: how the server's inputs are read (default tuner.server.accepted.read_accepted; a test's fixture)."""
    from tuner.server.accepted import read_accepted

    if not study.spec.server.check_flags:
        return []
    accepted, why_not = (reader or read_accepted)(study.spec.server.command, study.spec.server.env)
    if accepted is None:
        return [f"server flags not checked against the installed server: {why_not}"]
    for name, value in study.spec.server.flags.items():
        _check_flag(accepted, name, [value], str(study.path), f"server.flags.{name}")
    space_file = str(study.spec.search_space)
    for flag in study.space.json_flags:
        _check_flag(accepted, flag, [], space_file, f"json_flags.{flag}")
    for pname, p in study.space.parameters.items():
        if p.flag:
            values = p.choices if p.type == "categorical" and p.key is None and p.choices else []
            _check_flag(accepted, p.flag, values, space_file, f"parameters.{pname}.flag")
    notes = [f"server flags checked against {accepted.version} (`--help=all`)"]
    knobs = [(name, str(study.path), f"server.env.{name}") for name in study.spec.server.env]
    knobs += [(p.env, space_file, f"parameters.{pname}.env") for pname, p in study.space.parameters.items() if p.env]
    for name, source, key in knobs:
        if accepted.env_vars and name.startswith("VLLM_") and name not in accepted.env_vars:
            nearest = accepted.nearest_env(name)
            notes.append(f"warning: {source}: {key}: {accepted.version} does not list {name} among its environment"
                         f" variables (vllm.envs, tpu_inference.envs){f'; did you mean {nearest}?' if nearest else ''}")
    return notes


def _check_flag(accepted: Any, flag: str, values: list[Any], source: str, key: str) -> None:
    from tuner.errors import InputError

    known = accepted.flags.get(flag)
    if known is None:
        nearest = accepted.nearest_flag(flag)
        hint = f"; did you mean {nearest}?" if nearest else " (see its `--help=all`)"
        raise InputError(source, key, f"{accepted.version} has no {flag}{hint}")
    if known.choices is None:
        return
    for value in values:
        if value is None or isinstance(value, (bool, dict)):
            continue  # unset, a switch, or a JSON value: no choice to check
        if str(value) not in known.choices:
            raise InputError(source, key, f"{accepted.version} takes {flag} in {{{','.join(known.choices)}}}, not"
                             f" {value!r}")
