"""What `tuner study plan` prints: a dry run showing the exact commands and memory estimates of N configs.

Configs are drawn the way the study will draw them: the enqueued ones first (Optuna fills any parameter they leave
out), then sampled ones. Each shows the exact argv and env a trial would launch, the rules it breaks (such a
config is never launched), and the memory-fit estimate. Nothing is launched and no accelerator time is spent.

The rules and the memory estimate are those of the study loop's pre-launch check (tuner/planning/prelaunch.py).
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from tuner.errors import InputError
from tuner.planning.prelaunch import ModelContext, PlannedConfig, estimate_config

if TYPE_CHECKING:
    from tuner.capacity.roofline import Roofline, SliceLimits
    from tuner.inputs.spec import Study
    from tuner.load.workload import Sample

PLAN_PORT = 8000  # placeholder: a real trial binds a free port chosen at launch


# -- rendering --------------------------------------------------------------------------------------------------
def render_plan(study: Study, planned: list[PlannedConfig], ctx: ModelContext) -> str:
    from tuner.capacity.memory_fit import format_bytes

    spec = study.spec
    n_enq = sum(p.enqueued for p in planned)
    lines = [f"study {spec.name}: {len(planned)} configs ({n_enq} enqueued, {len(planned) - n_enq} sampled); "
             f"dry run, nothing is launched. Each trial reserves {spec.resources}; startup timeout "
             f"{spec.timeouts.startup_s:g} s; the port ({PLAN_PORT} below) is chosen free at launch.",
             _goals_line(study), _cost_line(study)]
    if ctx.shape is not None:
        s = ctx.shape
        moe = f", MoE {s.num_experts} experts top-{s.experts_per_token}" if s.is_moe else ""
        lines.append(f"model {spec.model}: {_count(s.total_params)} parameters ({_count(s.active_params)} active"
                     f"{moe}), {s.num_layers} layers; config {s.source}")
        for k in s.layer_kinds:
            where = f"sliding window {k.window}" if k.window else "global attention"
            lines.append(f"  {k.layers} layers with {where}: {k.kv_heads} KV heads x head_dim {k.head_dim}"
                         + (", K shared with V in the checkpoint (vLLM stores both)" if k.k_eq_v else ""))
    if ctx.hardware is not None:
        h = ctx.hardware
        mem = "host RAM (KV size set explicitly)" if h.memory_per_device is None else \
            f"{h.devices} x {format_bytes(h.memory_per_device)}"
        lines.append(f"hardware {h.name}: {mem}, KV block {h.block_size} tokens")
    if ctx.why_not:
        lines.append(f"memory estimate unavailable: {ctx.why_not}")
    from tuner.planning.traffic import resolve_traffic

    samples = resolve_traffic(study).samples  # the traffic is read once (a dataset may be large)
    lines.extend(_sampling_lines(study, samples))
    limits = _limits_line(ctx, lines)
    prompt = _prompt_len(study, samples) if limits is not None else 0
    for p in planned:
        lines.append("")
        lines.extend(_render_one(p, ctx, spec.server.host))
        if limits is not None:
            lines.extend(_ceiling_lines(study, p, ctx, limits, prompt))
    if limits is not None and spec.claims:
        lines.append("")
        lines.extend(_claim_lines(study, planned, ctx, limits, prompt))
    return "\n".join(lines)


# -- the slice's ceilings (tuner/capacity/roofline.py) ---------------------------------------------------------
def _limits_line(ctx: ModelContext, lines: list[str]) -> SliceLimits | None:
    from tuner.capacity.roofline import slice_limits

    if ctx.shape is None or ctx.hardware is None:
        return None
    limits = slice_limits(ctx.hardware)
    flops = "unknown" if limits.peak_flops is None else f"{limits.peak_flops / 1e12:,.0f} TFLOP/s ({limits.flops_source})"
    bandwidth = ("unknown" if limits.bandwidth_bytes_s is None
                 else f"{limits.bandwidth_bytes_s / 1e12:,.2f} TB/s ({limits.bandwidth_source})")
    lines.append(f"ceilings of {limits.name}: compute {flops}; memory bandwidth {bandwidth}")
    return limits


def _roofline(p: PlannedConfig, ctx: ModelContext, limits: SliceLimits) -> Roofline:
    from tuner.capacity.roofline import Roofline, ServingKnobs

    assert ctx.shape is not None
    return Roofline(ctx.shape, limits, ServingKnobs.from_flags(p.config.flags, ctx.shape, ctx.hardware))


def _prompt_len(study: Study, samples: tuple[Sample, ...]) -> int:
    """The study traffic's mean prompt length, the context a decode step reads at least."""
    from tuner.load.workload import Workload

    load = study.spec.load
    workload = Workload(model=study.spec.model, input_len=load.input_len, output_len=load.output_len,
                        input_len_max=load.input_len_max, output_len_max=load.output_len_max,
                        samples=samples)
    return workload.mean_input_len


SPECULATION_FLAGS = ("--speculative-config", "--speculative_config")


def searches_speculation(study: Study) -> bool:
    """The space proposes speculative decoding, or the server's fixed flags turn it on."""
    in_space = any(p.flag_name in SPECULATION_FLAGS for p in study.space.parameters.values() if p.flag)
    return in_space or any(flag in study.spec.server.flags for flag in SPECULATION_FLAGS)


def _sampling_lines(study: Study, samples: tuple[Sample, ...]) -> list[str]:
    """The sampling every level is measured with, and a warning when drafts are judged under greedy traffic only:
    there they are accepted far more often than under the sampling most clients use."""
    from tuner.contracts.sampling import SamplingInForce, server_defaults

    spec = study.spec
    in_force = SamplingInForce(sent=spec.load.sampling, defaults=server_defaults(spec.model, spec.server.flags),
                               per_request=sum(1 for s in samples if s.sampling is not None))
    lines = [f"sampling: {in_force.describe()}"]
    if in_force.greedy and searches_speculation(study):
        lines.append("WARNING: the space searches speculative decoding, but every request is greedy (temperature 0):"
                     " drafts are accepted far more often than under sampled traffic, so a speculative config can win"
                     " here and lose in production. Unless your clients really send temperature 0, remove"
                     " load.sampling (the model's defaults) or set the temperature they use.")
    return lines


def _ceiling_lines(study: Study, p: PlannedConfig, ctx: ModelContext, limits: SliceLimits, prompt: int) -> list[str]:
    """Both ceilings at the study's top concurrency and mean prompt: what no measurement of this config can beat."""
    roof = _roofline(p, ctx, limits)
    claimed = {c.concurrency for c in study.spec.claims}  # every config at the claims' loads, to compare
    out = [f"  ceiling at {prompt:,}-token prompts (the traffic's mean):"]
    for users in sorted({max(study.spec.load.concurrency), *claimed}):
        decode = roof.decode(users, prompt)
        if decode is None:
            out.append("          decode: off (no known memory bandwidth)")
            break
        experts = (f" ({decode.experts_read:.1f} of {decode.experts_total} experts per layer)"
                   if decode.experts_read is not None else "")
        drafts = (f"; with all {decode.draft_tokens} drafts accepted {decode.ceiling_tok_s:,.0f} tok/s"
                  if decode.draft_tokens else "")
        out.append(f"          decode at {users:,} users: batch {decode.batch} reads"
                   f" {_gb(decode.weight_bytes_per_step)} of weights{experts} + {_gb(decode.kv_bytes_per_step)} of"
                   f" KV ({decode.kv_cache_dtype}) per step = {decode.steps_per_s:,.1f} steps/s:"
                   f" {decode.steps_per_s * decode.batch:,.0f} output tok/s at one token per step{drafts}")
    if limits.peak_flops is None:
        out.append("          compute: off (no known FLOP/s)")
    else:
        per_token = roof.flop_per_prompt_token(prompt)
        out.append(f"          compute: {per_token / 1e9:,.2f} GFLOP per prompt token ="
                   f" {limits.peak_flops / per_token:,.0f} prompt tok/s at 100% of peak with nothing else computed")
    return out


def _claim_lines(study: Study, planned: list[PlannedConfig], ctx: ModelContext, limits: SliceLimits,
                 prompt: int) -> list[str]:
    """Figures measured elsewhere for the enqueued configs, against the same ceilings."""
    by_label = {p.label: p for p in planned if p.enqueued}
    out = ["claims (throughput measured elsewhere), against these ceilings:"]
    for claim in study.spec.claims:
        p = by_label.get(claim.config)
        source = f" ({claim.source})" if claim.source else ""
        out.append(f"  {claim.output_tok_s:,.0f} tok/s at {claim.concurrency:,} users, {claim.config!r}{source}")
        if p is None:
            out.append("      not among the planned configs (raise --trials to include every enqueued one)")
            continue
        roof = _roofline(p, ctx, limits)
        decode = roof.decode(claim.concurrency, prompt)
        if decode is not None:
            verdict = ("within it" if claim.output_tok_s <= decode.ceiling_tok_s
                       else "NOT PHYSICALLY POSSIBLE as output tokens")
            out.append(f"      decode ceiling {decode.ceiling_tok_s:,.0f} tok/s (batch {decode.batch}, "
                       f"{decode.tokens_per_step:.0f} tokens per step at most): {verdict}")
            if claim.output_tok_s > decode.ceiling_tok_s:
                out.append("      " + roof.what_it_needs(claim.output_tok_s, decode))
            plain = decode.steps_per_s * decode.batch
            if decode.draft_tokens and plain < claim.output_tok_s <= decode.ceiling_tok_s:
                need = (claim.output_tok_s / plain - 1.0) / decode.draft_tokens
                out.append(f"      needs {need:.0%} of its {decode.draft_tokens} drafts accepted")
        if limits.peak_flops is not None:
            share = claim.output_tok_s * roof.flop_per_output_token(prompt) / limits.peak_flops
            out.append(f"      compute: {share:.0%} of peak for the output tokens alone (2 x active params +"
                       " attention per token)")
    return out


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.2f} MB"


def _cost_line(study: Study) -> str:
    """The plan's expected slice time before any launch is measured (an estimate, and said to be one)."""
    from tuner.planning.launch_time import estimated_launch_s

    spec = study.spec
    per_launch, how = estimated_launch_s(spec)
    search = spec.trials if spec.budget is None or "trials" in spec.model_fields_set else None
    confirm = spec.confirm.repeats * spec.confirm.candidates
    budget = f"; budget {spec.budget.slice_hours:g} slice-hours" if spec.budget else ""
    if search is None:
        return (f"expected cost: up to {spec.budget.slice_hours if spec.budget else 0:g} slice-hours (the budget);"
                f" each launch ~{per_launch / 60:.0f} min ({how})")
    hours = (search + confirm) * per_launch / 3600
    price = f" ({hours * spec.price_per_slice_hour:,.2f})" if spec.price_per_slice_hour else ""
    return (f"expected cost: {search} search + {confirm} confirmation launches x ~{per_launch / 60:.0f} min ="
            f" at most {hours:,.1f} slice-hours{price}{budget} ({how}; measured launches replace it once a study"
            " runs)")


def _goals_line(study: Study) -> str:
    """What the study optimises, under which limits, on which traffic, and how the front is confirmed."""
    spec = study.spec
    load = spec.load
    slo = spec.goals().describe_slo() or "none"
    if load.dataset is not None:
        traffic = f"dataset {load.dataset.path.name}" + (f" ({load.dataset.samples} samples)" if load.dataset.samples
                                                         else "")
    elif load.shapes:
        traffic = f"mix of {len(load.shapes)} shapes"
    else:
        inputs = f"{load.input_len}" + (f"-{load.input_len_max}" if load.input_len_max else "")
        outputs = f"{load.output_len}" + (f"-{load.output_len_max}" if load.output_len_max else "")
        traffic = f"{inputs} -> {outputs} tokens"
    confirm = (f"{spec.confirm.repeats} relaunches of up to {spec.confirm.candidates} front configs"
               if spec.confirm.repeats else "off")
    return (f"objectives {', '.join(spec.objectives)}; SLOs {slo}; traffic {traffic} at concurrency "
            f"{', '.join(map(str, load.concurrency))}; confirmation {confirm}")


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _render_one(p: PlannedConfig, ctx: ModelContext, host: str) -> list[str]:
    from tuner.capacity.memory_fit import format_bytes

    out = [f"[{p.number + 1}] {p.label}"]
    out.append("  params  " + ", ".join(f"{k}={v}" for k, v in p.params.items()))
    out.append("  argv    " + shlex.join(p.config.argv(host, PLAN_PORT)))
    env = p.config.redacted_env()
    out.append("  env     " + (" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) or "(none)"))
    if p.violations:
        out.append("  RULES   never launched: " + "; ".join(p.violations))
    if ctx.shape is None or ctx.hardware is None:
        return out
    try:
        est = estimate_config(ctx, p.config)
    except InputError as exc:
        out.append(f"  memory  no estimate: {exc}")
        return out
    per_tok = ", ".join(f"{d} {format_bytes(b)}" for d, b in est.kv_bytes_per_token.items())
    beyond = ", ".join(f"{d} {format_bytes(b)}" for d, b in est.kv_bytes_per_token_beyond_window.items())
    verdict = "FITS" if est.fits else f"DOES NOT FIT (predicted {est.predicted_failure})"
    out.append(f"  memory  weights {format_bytes(est.weights_bytes)} ({format_bytes(est.weights_per_device)}/device"
               f" at tp {est.tensor_parallel_size}); workspace ~{format_bytes(est.workspace_per_device)}/device;"
               f" KV cache {format_bytes(max(est.kv_memory_per_device, 0))}/device")
    out.append(f"          KV per token: {per_tok}" + (f"; past the sliding window: {beyond}"
                                                      if beyond != per_tok else ""))
    out.append(f"          KV capacity ({est.kv_cache_dtype}): {est.kv_capacity_tokens:,} tokens = "
               f"{est.max_concurrency:.2f} x {est.max_model_len:,}-token sequences; {verdict}: {est.reason}")
    if not est.fits or est.max_concurrency < 2:
        from tuner.capacity.memory_fit import knobs_from_flags, max_fitting_model_len

        knobs = knobs_from_flags(p.config.flags, p.config.env, ctx.shape, ctx.hardware)
        longest = max_fitting_model_len(ctx.shape, ctx.hardware, knobs)
        out.append(f"          largest max-model-len predicted to fit: {longest:,}")
    for note in est.notes:
        out.append(f"          note: {note}")
    return out
