"""`tuner study new`: a study file and its search space, written from what a user already has.

    user's `vllm serve` line (or just a model) + slice + objective + traffic
        -> fixed flags   the command's flags no knob of the platform turns (kept as given)
        -> enqueued      the command's knob values: the first trial, labelled as the user's, so every report
                         compares the search against it (knobs it leaves unset stay at vLLM's default: null)
        -> knobs         the platform's (padding gap and the TPU rules on TPU, the KV-cache size on CPU), each range
                         cut to what can fit: max-model-len from the traffic's longest request to the largest the
                         memory-fit estimate and the model's own context allow, max-num-seqs up to what the KV cache
                         holds of the traffic's mean request (x 2: preemption is measured, not assumed)
    -> checked           written to a temporary folder, loaded by the same validation as any study and, where the
                         server is installed here, checked against its `--help=all`; only then moved into place, and
                         an existing file only with `force`

Every choice is explained by a comment in the written files.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tuner.capacity.memory_fit import ModelShape, knobs_from_flags, load_model_shape, max_fitting_model_len
from tuner.contracts.hardware import SLICES, Hardware
from tuner.contracts.sampling import Sampling
from tuner.errors import InputError
from tuner.inputs.command_line import ServeCommand

Objective = Literal["throughput", "goodput", "latency", "cost"]
TRAFFIC_MIXES: dict[str, list[dict[str, int]]] = {
    # A chat service: short and medium prompts, answers of a paragraph or a page.
    "chat": [{"input_len": 128, "output_len": 128}, {"input_len": 512, "output_len": 256},
             {"input_len": 1024, "output_len": 512}, {"input_len": 2048, "output_len": 256}],
    # Retrieval or document work: long prompts, short answers.
    "long-context": [{"input_len": 8192, "output_len": 256}, {"input_len": 16384, "output_len": 512},
                     {"input_len": 32768, "output_len": 256}],
}
USER_LABEL = "yours: the command you gave"
_PADDING_GAP = "VLLM_TPU_BUCKET_PADDING_GAP"


@dataclass(frozen=True)
class NewStudyRequest:
    """What `tuner study new` was told."""

    command: ServeCommand
    hardware: str  # a SLICES name
    objective: Objective = "throughput"
    slo: dict[str, float] = field(default_factory=dict)
    traffic: str = "chat"  # a TRAFFIC_MIXES name or a dataset file
    input_len: int | None = None
    output_len: int | None = None
    trials: int | None = None
    budget_slice_hours: float | None = None
    confirm: int | None = None  # relaunches per front config; None: the platform's default
    price_per_slice_hour: float | None = None
    name: str | None = None
    model_config: Path | None = None  # config.json of a hub model (the memory fit reads it)
    total_params: float | None = None
    active_params: float | None = None
    sampling: Sampling = Sampling()  # noqa: RUF009 (frozen) the traffic's sampling; unset: the model's defaults


@dataclass(frozen=True)
class Platform:
    kind: str  # tpu | gpu | cpu
    concurrency_floor: int
    top_seqs: int  # no more sequences than this are proposed
    startup_s: int
    requests_per_level: int
    confirm: int
    resources: dict[str, float]


def platform_of(hardware: Hardware) -> Platform:
    if hardware.kind == "tpu":
        return Platform("tpu", 16, 2048, 3600, 2048, 2, {"TPU": float(hardware.count)})
    if hardware.kind == "gpu":
        return Platform("gpu", 16, 1024, 1200, 1024, 2, {"GPU": float(hardware.count)})
    return Platform("cpu", 4, 64, 180, 64, 1, {"CPU": 2.0})


# -- the knobs of a platform ----------------------------------------------------------------------------------------
@dataclass
class Knob:
    """One search-space parameter and the comment that explains it."""

    name: str
    spec: dict[str, Any]
    why: str
    user_value: Any = None  # what the user's command set (None: unset, vLLM's default)


def _pow2_between(lo: int, hi: int) -> list[int]:
    lo = 1 << max(0, math.ceil(math.log2(max(lo, 1))))
    return [1 << k for k in range(lo.bit_length() - 1, hi.bit_length()) if lo <= 1 << k <= hi]


def _categorical(name: str, flag: str | None, values: list[Any], user: Any, why: str, env: str | None = None,
                 key: str | None = None, condition: dict[str, Any] | None = None) -> Knob:
    """A categorical knob whose choices hold the user's value, and null (vLLM's default) when the user left it unset."""
    choices = list(values)
    if user is not None and user not in choices:
        choices = sorted({*choices, user}) if all(isinstance(c, (int, float)) for c in choices) else [*choices, user]
    if user is None and None not in choices:
        choices = [None, *choices]
        why += "; null: unset, vLLM's default (how your command has it)"
    spec: dict[str, Any] = {"type": "categorical", "choices": choices}
    spec.update({"flag": flag} if flag else {"env": env})
    if key:
        spec["key"] = key
    if condition:
        spec["condition"] = condition
    return Knob(name, spec, why, user)


@dataclass(frozen=True)
class Sizing:
    """What the memory fit says about the model on the slice (None: no config.json to read)."""

    shape: ModelShape | None
    longest_request: int
    mean_request: int
    top_model_len: int | None  # largest max-model-len that fits (fp8 KV), capped by the model's context
    kv_tokens: int | None  # KV-cache capacity at the smallest useful max-model-len (fp8)
    why: str


def knobs_for(platform: Platform, cmd: ServeCommand, sizing: Sizing) -> list[Knob]:
    flags, env = cmd.flags, cmd.env
    spec = flags.get("--speculative-config")
    spec = spec if isinstance(spec, dict) else {}
    knobs = [_seqs_knob(platform, flags.get("--max-num-seqs"), sizing),
             _model_len_knob(platform, flags.get("--max-model-len"), sizing),
             _batched_knob(platform, flags.get("--max-num-batched-tokens")),
             _categorical("kv_cache_dtype", "--kv-cache-dtype", ["auto", "fp8"], flags.get("--kv-cache-dtype", "auto"),
                          "fp8 holds twice the KV tokens and is lossy by design: the quality guard measures what it"
                          " costs")]
    if platform.kind != "cpu":
        knobs.append(_categorical("gpu_memory_utilization", "--gpu-memory-utilization", [0.8, 0.85, 0.9, 0.95],
                                  flags.get("--gpu-memory-utilization"), "the share of device memory vLLM may take"
                                  " (the name is historical: TPUs too); more is more KV cache, less is headroom"))
    else:
        knobs.append(_kv_bytes_knob(flags.get("--kv-cache-memory-bytes"), sizing))
    if platform.kind == "tpu":
        gap = env.get(_PADDING_GAP)
        knobs.append(_categorical("padding_gap", None, [0, 64, 128, 256, 512], int(gap) if gap else None,
                                  "tpu-inference's bucket padding: 0 pads to powers of two, g to steps of g past g;"
                                  " fewer buckets compile faster, coarser ones waste compute", env=_PADDING_GAP))
    if not spec or spec.get("method") == "ngram":
        knobs += _ngram_knobs(platform, spec)
    if platform.kind != "cpu":
        knobs.append(_categorical("async_scheduling", "--async-scheduling", [None, True],
                                  flags.get("--async-scheduling") or None, "overlaps scheduling with the model step;"
                                  " null: vLLM's default"))
    return knobs


def _seqs_knob(platform: Platform, user: Any, sizing: Sizing) -> Knob:
    top, why = platform.top_seqs, f"at most {platform.top_seqs} on {platform.kind.upper()}"
    if sizing.kv_tokens:
        fit = 2 * sizing.kv_tokens // max(sizing.mean_request, 1)
        top = min(top, 1 << max(3, math.ceil(math.log2(max(fit, 8)))))
        why = (f"up to {top}: the KV cache holds ~{sizing.kv_tokens:,} tokens (fp8) = {fit // 2:,} requests of the"
               f" traffic's mean {sizing.mean_request:,} tokens at once, x 2 because preemption is measured, not"
               " assumed")
    values = _pow2_between(max(top // 32, platform.concurrency_floor), top)
    return _categorical("max_num_seqs", "--max-num-seqs", values, user, f"sequences decoded at once; {why}")


def _model_len_knob(platform: Platform, user: Any, sizing: Sizing) -> Knob:
    lo = sizing.longest_request
    hi = sizing.top_model_len or max(lo * 8, 4096)
    values = _pow2_between(lo, max(hi, lo))[:5] or [1 << math.ceil(math.log2(lo))]
    why = (f"five powers of two from the traffic's longest request ({lo:,} tokens: shorter would refuse it), at most"
           + (f" {hi:,}, {sizing.why}" if sizing.top_model_len else f" 8 x that ({sizing.why})")
           + "; a longer context only takes KV cache from the batch")
    return _categorical("max_model_len", "--max-model-len", values, user, why)


def _batched_knob(platform: Platform, user: Any) -> Knob:
    values = {"tpu": [1024, 2048, 4096, 8192, 16384], "gpu": [2048, 4096, 8192, 16384],
              "cpu": [512, 2048, 8192]}[platform.kind]
    why = "tokens one scheduler step may hold (prefill chunking); powers of two"
    if platform.kind == "tpu":
        why += ": TPU wants multiples of 128, and fewer distinct sizes mean fewer XLA programs"
    return _categorical("max_num_batched_tokens", "--max-num-batched-tokens", values, user, why)


def _kv_bytes_knob(user: Any, sizing: Sizing) -> Knob:
    per_token = 0.0
    if sizing.shape is not None:
        per_token = sum(k.bytes_per_token(2.0) for k in sizing.shape.layer_kinds)  # 16-bit KV, as served
    # One sequence of the longest request twice over, and at least one of the max-model-len a config may leave unset
    # (vLLM then takes the model's own context: the first trial's, when the command does not set it).
    context = max(2 * sizing.longest_request, sizing.shape.max_position_embeddings or 0 if sizing.shape else 0)
    need = max(int(per_token * context * 1.25), 4 * 2**20)  # a quarter more: vLLM keeps blocks of its own
    base = 1 << math.ceil(math.log2(need))
    values = [base, 4 * base, 16 * base]
    why = (f"the CPU backend's KV-cache size in bytes: from {base // 2**20} MiB (one sequence of {context:,} tokens:"
           " the model's context, which an unset max-model-len takes, or twice the longest request) up, x 4 each step")
    if user is None:
        # Unset, vLLM's CPU backend takes --gpu-memory-utilization (0.92) of the host's RAM for it, which fails on
        # any host that runs something else (measured here: "asks for 21.66 GiB but only 21.59 is free"); so the
        # knob has no null, and your config's first trial uses the smallest size.
        user = base
        why += ("; your command left it unset, where vLLM would take 92% of host RAM (fails on a shared host), so"
                " your first trial uses the smallest")
    return _categorical("kv_cache_memory_bytes", "--kv-cache-memory-bytes", values, user, why)


def _ngram_knobs(platform: Platform, spec: dict[str, Any]) -> list[Knob]:
    most = 4 if platform.kind == "cpu" else 5
    tokens = int(spec.get("num_speculative_tokens") or 0) or None
    if spec.get("method") == "ngram" and tokens is None:
        raise InputError("--from-command", "--speculative-config", "n-gram speculation needs num_speculative_tokens"
                         ' (vLLM requires it), e.g. {"method": "ngram", "num_speculative_tokens": 3}')
    drafts = Knob("num_speculative_tokens", {"type": "int", "low": 1, "high": max(most, tokens or 1),
                                             "flag": "--speculative-config", "key": "num_speculative_tokens",
                                             "condition": {"spec_method": "ngram"}},
                  "drafts per step; accepted ones are free tokens, rejected ones cost compute", tokens)
    out = [_categorical("spec_method", "--speculative-config", [None, "ngram"], spec.get("method"),
                        "null: no speculative decoding; ngram: drafts looked up in the prompt (lossless in theory:"
                        " the quality guard checks)", key="method"), drafts]
    if platform.kind != "cpu":
        out += [_categorical("prompt_lookup_min", "--speculative-config", [None, 1, 2, 3], spec.get("prompt_lookup_min"),
                             "shortest n-gram matched in the prompt", key="prompt_lookup_min",
                             condition={"spec_method": "ngram"}),
                _categorical("prompt_lookup_max", "--speculative-config", [None, 3, 4, 5, 6, 8],
                             spec.get("prompt_lookup_max"), "longest n-gram matched in the prompt",
                             key="prompt_lookup_max", condition={"spec_method": "ngram"})]
    return out


TUNED_FLAGS = ("--max-num-seqs", "--max-model-len", "--max-num-batched-tokens", "--kv-cache-dtype",
               "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--async-scheduling")


def rules_for(platform: Platform, knobs: list[Knob]) -> list[dict[str, Any]]:
    names = {k.name for k in knobs}
    rules: list[dict[str, Any]] = [
        {"name": "seqs-within-batch", "why": "vLLM requires max-num-batched-tokens >= max-num-seqs",
         "less_equal": ["--max-num-seqs", "--max-num-batched-tokens"]}]
    if "prompt_lookup_min" in names:
        rules.append({"name": "lookup-bounds-ordered", "why": "prompt_lookup_min must not exceed prompt_lookup_max",
                      "less_equal": ["--speculative-config.prompt_lookup_min",
                                     "--speculative-config.prompt_lookup_max"]})
    if platform.kind == "tpu":
        rules += [
            {"name": "batched-tokens-aligned", "why": "unaligned --max-num-batched-tokens has failed on TPU",
             "multiple_of": {"name": "--max-num-batched-tokens", "of": 128}},
            {"name": "padding-gap-multiple-of-64", "why": "the bucket padding gap is 0 or a multiple of 64",
             "multiple_of": {"name": _PADDING_GAP, "of": 64}}]
        if "async_scheduling" in names and "spec_method" in names:
            rules.append({"name": "no-async-scheduling-with-ngram", "why": "on TPU the n-gram proposer runs on the"
                          " host; async scheduling is only allowed with eagle3",
                          "forbid": {"--speculative-config.method": "ngram", "--async-scheduling": True}})
    return rules


# -- sizing from the memory fit ------------------------------------------------------------------------------------
def _traffic_lengths(req: NewStudyRequest) -> tuple[int, int]:
    """(longest request, mean request) in tokens: prompt + output."""
    if req.input_len or req.output_len:
        total = (req.input_len or 128) + (req.output_len or 128)
        return total, total
    mix = TRAFFIC_MIXES.get(req.traffic)
    if mix is None:
        return 4096, 1024  # a dataset file: its lengths are read when the study loads; a safe floor here
    totals = [s["input_len"] + s["output_len"] for s in mix]
    return max(totals), sum(totals) // len(totals)


def size_model(req: NewStudyRequest, hardware: Hardware, config_path: Path | None) -> Sizing:
    longest, mean = _traffic_lengths(req)
    if config_path is None:
        return Sizing(None, longest, mean, None, None, "no config.json to size it from: give --model-config")
    shape = load_model_shape(config_path, req.total_params, req.active_params)
    context = shape.max_position_embeddings
    flags = {**req.command.flags, "--kv-cache-dtype": "fp8", "--max-model-len": longest}
    if hardware.kind == "cpu":
        flags.setdefault("--kv-cache-memory-bytes", 64 * 2**20)
    knobs = knobs_from_flags(flags, req.command.env, shape, hardware)
    from tuner.capacity.memory_fit import estimate

    fits = estimate(shape, hardware, knobs)
    if not fits.fits:
        raise InputError(str(config_path), "", f"{shape.source}: even one {longest:,}-token request does not fit"
                         f" on {hardware.name} with an fp8 KV cache ({fits.reason}); pick a larger slice or a"
                         " shorter traffic")
    top = max_fitting_model_len(shape, hardware, knobs)
    if context:
        top = min(top, int(context))
    why = (f"the largest the memory fit predicts on {hardware.name} (fp8 KV cache)"
           + (f" within the model's own {int(context):,}-token context" if context else ""))
    return Sizing(shape, longest, mean, 1 << int(math.log2(max(top, longest))), fits.kv_capacity_tokens, why)


# -- the files ---------------------------------------------------------------------------------------------------
def _objectives(req: NewStudyRequest) -> list[str]:
    if req.objective == "goodput":
        if not req.slo:
            raise InputError("--objective", "goodput", "goodput counts requests that meet SLOs: give --slo, e.g."
                             " --slo ttft_p99_ms=500,itl_p99_ms=50")
        return ["goodput_tok_s", "stability"]
    if req.objective == "latency":
        return [next(iter(req.slo), "ttft_p99_ms"), "stability"]
    if req.objective == "cost":
        if req.price_per_slice_hour is None:
            raise InputError("--objective", "cost", "the cost objective needs --price-per-slice-hour")
        return ["usd_per_m_tokens", "stability"]
    return ["output_tok_s", "stability"]


def _concurrency(platform: Platform, top_seqs: int) -> list[int]:
    levels = [c for c in (4, 16, 64, 256, 1024) if platform.concurrency_floor <= c <= top_seqs]
    if not levels or levels[-1] < top_seqs:
        levels.append(top_seqs)  # the top: as many users as the largest batch proposed, so every config is filled
    return levels


def _enqueued(knobs: list[Knob]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for k in knobs:
        if k.spec.get("condition"):
            cond = k.spec["condition"]
            if any(values.get(name) != want for name, want in cond.items()):
                continue  # a conditional knob whose condition the user's config does not meet
        values[k.name] = k.user_value
    return values


def _reference(enqueued: dict[str, Any]) -> dict[str, Any]:
    """The quality guard's trusted config: the user's, without what can change answers (fp8 KV, drafts)."""
    ref = dict(enqueued)
    if "kv_cache_dtype" in ref:
        ref["kv_cache_dtype"] = "auto"
    if ref.get("spec_method"):
        ref["spec_method"] = None
        for name in ("num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max"):
            ref.pop(name, None)
    return ref


def _block(key: str, value: Any, comment: str = "") -> str:
    if not isinstance(value, (dict, list)):  # a scalar: PyYAML would write the one-key mapping in flow style
        body = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False, width=110).rstrip()
    else:
        body = yaml.safe_dump({key: value}, default_flow_style=None, sort_keys=False, width=110).rstrip()
    if comment:
        first, *rest = body.splitlines()
        body = "\n".join([f"{first}    # {comment}", *rest])
    return body


def space_text(req: NewStudyRequest, platform: Platform, knobs: list[Knob], hardware: Hardware) -> str:
    lines = [f"# Search space for {req.command.model} on {hardware.name}, written by `tuner study new`.",
             "# Each knob's range is explained beside it; null leaves a flag unset (vLLM's default applies).",
             "parameters:"]
    for k in knobs:
        lines.append(f"  # {k.name}: {k.why}")
        lines.append("\n".join("  " + line for line in _block(k.name, k.spec).splitlines()))
    lines += ["", "# Checked before every launch: a config the server would reject is a rule violation and costs no"
              " slice time.", _block("rules", rules_for(platform, knobs))]
    return "\n".join(lines) + "\n"


def study_text(req: NewStudyRequest, platform: Platform, knobs: list[Knob], hardware: Hardware, name: str,
               space_rel: str, config_rel: str | None, dataset_rel: str | None) -> str:
    cmd = req.command
    tuned = set(TUNED_FLAGS) | ({"--speculative-config"} if any(k.name == "spec_method" for k in knobs) else set())
    fixed = {f: v for f, v in cmd.flags.items() if f not in tuned}
    env = {k: v for k, v in cmd.env.items() if k != _PADDING_GAP or platform.kind != "tpu"}
    top_seqs = max(c for k in knobs if k.name == "max_num_seqs" for c in k.spec["choices"] if c is not None)
    enqueued = _enqueued(knobs)
    out = [f"# Written by `tuner study new` from {'your command line' if cmd.flags or cmd.env else 'a model name'};"
           " edit freely, then:", f"#   tuner study plan {name}.yaml     # dry run: argv, memory, ceilings",
           f"#   tuner study start {name}.yaml", _block("name", name), _block("model", cmd.model),
           _block("search_space", space_rel), "",
           "# Your command's flags that no knob turns, kept fixed; its knob values are the first trial (enqueue).",
           _block("server", {"command": list(cmd.command), "flags": fixed, "env": env})]
    if config_rel or req.total_params or req.active_params:
        info = {k: v for k, v in (("config_json", config_rel), ("total_params", req.total_params),
                                  ("active_params", req.active_params)) if v}
        out += ["", "# The model's shape, for the memory fit and the physical ceilings (read offline).",
                _block("model_info", info)]
    out += ["", _block("hardware", {"name": hardware.name}, "the slice one trial owns"),
            _block("resources", platform.resources, "what Ray reserves per trial"), "",
            _block("objectives", _objectives(req), f"--objective {req.objective}")]
    if req.slo:
        out.append(_block("slo", req.slo, "held at the operating point of every config"))
    if req.price_per_slice_hour is not None:
        out.append(_block("price_per_slice_hour", req.price_per_slice_hour))
    out += ["", "# The load: closed-loop levels up to the largest batch the space proposes."]
    load: dict[str, Any] = {"concurrency": _concurrency(platform, top_seqs),
                            "requests_per_level": max(platform.requests_per_level, top_seqs), "warmup_rounds": 1}
    if req.input_len or req.output_len:
        load.update(input_len=req.input_len or 128, output_len=req.output_len or 128)
        traffic = "fixed lengths (--input-len/--output-len)"
    elif req.traffic in TRAFFIC_MIXES:
        load["shapes"] = TRAFFIC_MIXES[req.traffic]
        traffic = f"the built-in {req.traffic} mix (--traffic {req.traffic})"
    else:
        load["dataset"] = {"path": dataset_rel or req.traffic}
        traffic = f"your traffic file {req.traffic}"
    load["repeats"] = 2
    if not req.sampling.server_defaults:
        load["sampling"] = req.sampling.params()
    sampling = ("sampling: none sent, so the server applies the model's defaults (generation_config.json), as for"
                " clients that set none" if req.sampling.server_defaults else "sampling: --sampling")
    out.append(_block("load", load, f"traffic: {traffic}; {sampling}"))
    confirm = platform.confirm if req.confirm is None else req.confirm
    out += ["", _block("confirm", {"repeats": confirm, "candidates": 3}, "front configs relaunched before export")]
    if req.budget_slice_hours is not None:
        out.append(_block("budget", {"slice_hours": req.budget_slice_hours}))
    if req.trials is not None or req.budget_slice_hours is None:
        out.append(_block("trials", req.trials or 30))
    out += [_block("storage", f"sqlite:///tuner-{name}.db"), _block("runs_dir", "tuner-runs"),
            _block("timeouts", {"startup_s": platform.startup_s}, "a cold launch's worst startup"), "",
            "# The quality guard: your config without fp8 KV cache and drafts is the trusted reference.",
            _block("quality", {"enabled": True, "reference": _reference(enqueued)}), "",
            _block("enqueue_labels", [USER_LABEL]), _block("enqueue", [enqueued])]
    return "\n".join(out) + "\n"


def _study_name(req: NewStudyRequest) -> str:
    if req.name:
        return req.name
    base = Path(req.command.model.rstrip("/")).name.lower()
    return "".join(c if c.isalnum() or c in "-." else "-" for c in f"{base}-{req.hardware}").strip("-")


def write_new_study(req: NewStudyRequest, out_dir: Path, force: bool = False,
                    check: Any = None) -> tuple[Path, Path, list[str]]:
    """Write `<name>.yaml` and `search_spaces/<name>.yaml` under out_dir, validated first; returns their paths and
    notes (e.g. why the flags were not checked against an installed server). `check`: the installed-server check
    (default tuner.planning.prelaunch.check_server_inputs)."""
    from tuner.inputs.spec import load_study
    from tuner.planning.prelaunch import check_server_inputs
    from tuner.planning.traffic import resolve_traffic

    if req.hardware not in SLICES:
        raise InputError("--hardware", req.hardware, f"one of {', '.join(sorted(SLICES))}")
    if req.traffic not in TRAFFIC_MIXES and not Path(req.traffic).is_file():
        raise InputError("--traffic", req.traffic, f"{', '.join(TRAFFIC_MIXES)}, or a traffic file (JSONL or CSV)"
                         " that exists")
    hardware = SLICES[req.hardware]
    platform = platform_of(hardware)
    name = _study_name(req)
    study_path, space_path = out_dir / f"{name}.yaml", out_dir / "search_spaces" / f"{name}.yaml"
    for path in (study_path, space_path):
        if path.exists() and not force:
            raise InputError(str(path), "", "exists; pass --force to overwrite it, or --name for another name")
    config_path = req.model_config or (Path(req.command.model) / "config.json"
                                       if (Path(req.command.model) / "config.json").is_file() else None)
    sizing = size_model(req, hardware, config_path)
    knobs = knobs_for(platform, req.command, sizing)
    space = space_text(req, platform, knobs, hardware)
    final = study_text(req, platform, knobs, hardware, name, f"search_spaces/{name}.yaml",
                       _relative(req.model_config, out_dir) if req.model_config else None,
                       _relative(Path(req.traffic), out_dir) if req.traffic not in TRAFFIC_MIXES else None)
    with tempfile.TemporaryDirectory() as tmp:
        # Validated in a scratch folder first (files the study names by path given as absolute there), so a study
        # that does not load is never half-written into place.
        staged_study, staged_space = Path(tmp) / study_path.name, Path(tmp) / "search_spaces" / space_path.name
        staged_space.parent.mkdir()
        staged_space.write_text(space)
        staged_study.write_text(study_text(
            req, platform, knobs, hardware, name, f"search_spaces/{name}.yaml",
            str(req.model_config.resolve()) if req.model_config else None,
            str(Path(req.traffic).resolve()) if req.traffic not in TRAFFIC_MIXES else None))
        try:
            study = load_study(staged_study)  # the same validation as any study: InputError on anything wrong
            resolve_traffic(study)  # a traffic file is read as `study start` will read it
            notes = (check or check_server_inputs)(study)
        except InputError as exc:  # named by the file it would have been written to (nothing is)
            where = {str(staged_study): study_path, str(staged_space): space_path}.get(exc.source, exc.source)
            raise InputError(f"{where} (not written)", exc.key, exc.expected) from None
    space_path.parent.mkdir(parents=True, exist_ok=True)
    space_path.write_text(space)
    study_path.write_text(final)
    return study_path, space_path, notes


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())


def detect_hardware() -> str:
    """The slice of this machine: a Cloud TPU VM names its type (TPU_ACCELERATOR_TYPE, e.g. v6e-4), nvidia-smi
    names a GPU; otherwise the host CPU."""
    import os
    import subprocess

    tpu = os.environ.get("TPU_ACCELERATOR_TYPE", "").lower()
    if tpu and f"tpu-{tpu}" in SLICES:
        return f"tpu-{tpu}"
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.lower()
    except (OSError, subprocess.TimeoutExpired):
        names = ""
    for chip, slice_name in (("h100", "gpu-h100-80gb"), ("a100", "gpu-a100-80gb")):
        if chip in names:
            return slice_name
    return "cpu"
