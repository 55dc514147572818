"""The study's traffic, resolved once on the driver: the load spec's shapes or dataset as request samples, the
per-request SLO limits for goodput, and the plausibility check's hardware — everything a SweepPlan carries to the
workers (the dataset file is read here, so workers on other machines never need it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuner.capacity.memory_fit import ModelShape
from tuner.contracts.goals import LATENCY_RE
from tuner.contracts.hardware import Hardware
from tuner.errors import ModelConfigError, TokenizerUnavailable
from tuner.inputs.spec import Study
from tuner.load.dataset import load_dataset
from tuner.load.stats import SLO
from tuner.load.tokenizer import LocalTokenizer
from tuner.load.workload import Sample
from tuner.trial.sweep_plan import SweepPlan


@dataclass(frozen=True)
class Traffic:
    samples: tuple[Sample, ...]
    label: str


def resolve_traffic(study: Study) -> Traffic:
    """Samples of the study's mix or dataset (empty for fixed lengths and ranges). InputError for a bad dataset."""
    load = study.spec.load
    if load.shapes:
        return Traffic(tuple(Sample(output_len=s.output_len, input_len=s.input_len, weight=s.weight)
                             for s in load.shapes), "")
    if load.dataset is None:
        return Traffic((), "")
    d = load.dataset
    samples = load_dataset(d.path, limit=d.samples, seed=d.seed, count_tokens=_token_counter(study.spec.model))
    return Traffic(samples, d.path.name)  # Workload.describe() says "dataset <label>: ..."


def _token_counter(model: str):
    """The model's own tokenizer, when the model is a local folder with tokenizer.json (else lengths come from the
    file or from the server's usage report)."""
    if not Path(model).is_dir():
        return None
    try:
        tokenizer = LocalTokenizer(model)
    except TokenizerUnavailable:
        return None
    return lambda text: len(tokenizer.encode(text))


def goodput_slo(study: Study) -> SLO | None:
    """Per-request limits for goodput (`vllm bench serve --goodput`): each latency SLO's limit applied to every
    request, whatever percentile the SLO names. ITL has no per-request form there and is left out."""
    limits: dict[str, float] = {}
    for name, limit in study.spec.slo.items():
        metric = LATENCY_RE.match(name).group(1)  # type: ignore[union-attr]
        if metric != "itl":
            limits[f"{metric}_ms"] = min(limit, limits.get(f"{metric}_ms", limit))
    return SLO(**limits) if limits else None


def plausibility_inputs(study: Study) -> tuple[Hardware | None, ModelShape | None]:
    """The slice and the model's shape, when the study names them (else no check against the slice's ceilings)."""
    from tuner.planning.prelaunch import model_context

    try:
        context = model_context(study)  # a CPU-only study's slice is the host (vLLM's CPU backend)
    except ModelConfigError:
        return None, None  # a config.json tuner cannot read: the server will say what it thinks of it
    if context.shape is None or context.hardware is None:
        return None, None
    return context.hardware, context.shape


def sweep_plan(study: Study, traffic: Traffic) -> SweepPlan:
    """The plan of a search launch; `SweepPlan.with_soak` makes a confirmation run's from it."""
    hardware, shape = plausibility_inputs(study)
    return SweepPlan(load=study.spec.load, samples=traffic.samples, workload_label=traffic.label,
                     slo=goodput_slo(study), hardware=hardware, model_shape=shape,
                     soak_requests=study.spec.confirm.soak_requests, goals=study.spec.goals())
