"""The probe set of one launch, aimed at the edges its config implies (issue 20, first part: planned, not yet sent).

Wrong tokens from a faster config have come from shapes at and just past a padding bucket (tpu-inference #3466: a
full chunked-prefill step padded to the next power of two), from a prefill that exactly fills
--max-num-batched-tokens, and from long contexts. So the probes are prompts of exactly those lengths:
  - each bucket length and one token past it: powers of two up to the padding gap, then multiples of the gap
    (VLLM_TPU_BUCKET_PADDING_GAP; 0: powers of two only), at most MAX_BUCKET_PROBES of them, spread over the range;
  - one prompt that exactly fills --max-num-batched-tokens (a full prefill step) when that fits the context;
  - one near --max-model-len (its output still fits);
  - a few short ones.
Every length leaves room for the probe's output, and one more token for the teacher-forced request, within
--max-model-len.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tuner.contracts.quality import Probe, ProbeAnswer, QualityPlan
from tuner.contracts.serving import ServingFlags
from tuner.inputs.search_space import SearchSpace
from tuner.inputs.spec import Study
from tuner.server.config import build_server_config

PADDING_GAP_ENV = "VLLM_TPU_BUCKET_PADDING_GAP"
MIN_BUCKET = 16
MAX_BUCKET_PROBES = 8  # bucket lengths probed (each with its +1): the first, the last and evenly between
SHORT_LENGTHS = (1, 5, 9)
DEFAULT_OUTPUT_LEN = 16


PROBE_SEED = 2026  # probe prompts depend on nothing but their length: every launch answers the same questions
FIRST_ID = 16  # ids below this are often special tokens (BOS, EOS, padding) in small vocabularies


def bucket_lengths(limit: int, padding_gap: int) -> list[int]:
    """The padded token counts up to `limit`: powers of two up to the gap, then multiples of it (gap 0: powers of
    two only), as tpu-inference pads a step's tokens."""
    buckets, size = [], MIN_BUCKET
    while size <= limit and (padding_gap <= 0 or size <= padding_gap):
        buckets.append(size)
        size *= 2
    if padding_gap > 0:
        step = padding_gap * (1 + (buckets[-1] // padding_gap if buckets else 0))
        while step <= limit:
            buckets.append(step)
            step += padding_gap
    return buckets


def _spread(values: list[int], most: int) -> list[int]:
    if len(values) <= most:
        return values
    picks = {values[round(i * (len(values) - 1) / (most - 1))] for i in range(most)}
    return sorted(picks)


def plan_probes(flags: Mapping[str, Any], env: Mapping[str, str], output_len: int = DEFAULT_OUTPUT_LEN,
                model_max_len: int | None = None) -> list[Probe]:
    """The probes for a config's flags and env; `model_max_len`: the model's context when the config sets none."""
    knobs = ServingFlags.of(flags)
    max_len = knobs.max_model_len or model_max_len or 2048
    # The longest prompt whose answer still fits, with the teacher-forced request (prompt + answer, then one
    # generated token) inside max-model-len too.
    room = max_len - output_len - 1
    if room < 1:
        return []
    gap = int(env.get(PADDING_GAP_ENV) or 0)
    probes = [Probe(name=f"short-{n}", prompt_len=n, output_len=output_len) for n in SHORT_LENGTHS if n <= room]
    for size in _spread(bucket_lengths(room - 1, gap), MAX_BUCKET_PROBES):
        probes.append(Probe(name=f"bucket-{size}", prompt_len=size, output_len=output_len))
        probes.append(Probe(name=f"past-bucket-{size + 1}", prompt_len=size + 1, output_len=output_len))
    batched = knobs.max_num_batched_tokens
    if batched and batched <= room:
        probes.append(Probe(name=f"fills-batch-{batched}", prompt_len=batched, output_len=output_len))
    probes.append(Probe(name=f"near-max-len-{room}", prompt_len=room, output_len=output_len))
    unique: dict[int, Probe] = {}
    for probe in probes:
        unique.setdefault(probe.prompt_len, probe)  # one probe per length; the first name says why it is there
    return sorted(unique.values(), key=lambda p: p.prompt_len)


def probe_prompt(probe: Probe, vocab_size: int) -> list[int]:
    """The probe's prompt: `prompt_len` real token ids, the same for every launch of every config."""
    rng = random.Random(f"{PROBE_SEED}:{probe.prompt_len}")
    low = min(FIRST_ID, max(0, vocab_size - 1))
    return [rng.randrange(low, vocab_size) for _ in range(probe.prompt_len)]


def answer_probes(client: httpx.Client, base_url: str, model: str, plan: QualityPlan) -> list[ProbeAnswer]:
    """Every probe answered greedily (fixed seed, logprobs on), `plan.concurrency` in flight, then the reference's
    tokens (or, for the reference itself, its own) teacher-forced through this server: their logprobs here."""
    prompts = {p.name: probe_prompt(p, plan.vocab_size) for p in plan.probes}
    concurrent = plan.concurrency > 1

    def greedy(probe: Probe) -> ProbeAnswer:
        return _greedy(client, base_url, model, probe, prompts[probe.name], concurrent)

    with ThreadPoolExecutor(max_workers=max(1, plan.concurrency)) as pool:
        answers = list(pool.map(greedy, plan.probes))
        forced_from = {a.probe: a for a in (plan.reference or answers)}

        def forced(answer: ProbeAnswer) -> ProbeAnswer:
            source = forced_from.get(answer.probe)
            if source is None or not source.tokens or answer.error:
                return answer
            if plan.reference is not None and _followed(answer, source.tokens):
                # It chose the reference's tokens itself: its greedy logprobs are the teacher-forced ones (same
                # history, same tokens), so the extra prefill is saved. The reference's own check always forces.
                return answer.model_copy(update={"forced_logprobs": answer.logprobs[:len(source.tokens)]})
            logprobs = _forced_logprobs(client, base_url, model, prompts[answer.probe], source.tokens)
            return answer.model_copy(update={"forced_logprobs": logprobs})

        # The reference checking itself: forced with all of them in flight at once (another batch composition).
        with ThreadPoolExecutor(max_workers=len(answers) if plan.reference is None else max(1, plan.concurrency)) \
                as forcing:
            return list(forcing.map(forced, answers))


def _followed(answer: ProbeAnswer, tokens: Sequence[int]) -> bool:
    n = len(tokens)
    return answer.tokens[:n] == list(tokens) and len(answer.logprobs) >= n


def _post(client: httpx.Client, base_url: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    response = client.post(f"{base_url}/v1/completions", json={**body, "stream": False})
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}: {response.text[:200]}"
    choices = response.json().get("choices") or [{}]
    return dict(choices[0]), ""


def _greedy(client: httpx.Client, base_url: str, model: str, probe: Probe, prompt: list[int],
            concurrent: bool) -> ProbeAnswer:
    body = {"model": model, "prompt": prompt, "max_tokens": probe.output_len, "temperature": 0.0, "seed": 0,
            "logprobs": 0, "return_token_ids": True, "ignore_eos": True}
    choice, error = _post(client, base_url, body)
    if choice is None:
        return ProbeAnswer(probe=probe.name, prompt_len=probe.prompt_len, tokens=[], error=error,
                           concurrent=concurrent)
    logprobs = choice.get("logprobs") or {}
    tokens = choice.get("token_ids") or [int(str(t).rsplit(":", 1)[-1]) for t in logprobs.get("tokens") or []]
    return ProbeAnswer(probe=probe.name, prompt_len=probe.prompt_len, tokens=[int(t) for t in tokens],
                       logprobs=[float(x) for x in logprobs.get("token_logprobs") or [] if x is not None],
                       text=str(choice.get("text", "")), concurrent=concurrent)


def _forced_logprobs(client: httpx.Client, base_url: str, model: str, prompt: list[int],
                     tokens: Sequence[int]) -> list[float] | None:
    """This server's logprob of each of `tokens` after `prompt` and the tokens before it (vLLM's prompt_logprobs)."""
    body = {"model": model, "prompt": [*prompt, *tokens], "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    choice, _ = _post(client, base_url, body)
    entries = (choice or {}).get("prompt_logprobs") or []
    if len(entries) < len(prompt) + len(tokens):
        return None
    values = []
    for entry, token in zip(entries[len(prompt):], tokens):
        value = (entry or {}).get(str(token))
        if not isinstance(value, dict) or "logprob" not in value:
            return None
        values.append(float(value["logprob"]))
    return values


EDGE_FLAGS = ("--max-model-len", "--max-num-batched-tokens")
MAX_STUDY_PROBES = 32


def _edge_values(space: SearchSpace, fixed_flags: Mapping[str, Any], fixed_env: Mapping[str, str],
                 target: str) -> list[Any]:
    """Every value the study can give an edge-setting flag or env var: the space's, else the fixed one."""
    for p in space.parameters.values():
        if (p.env or p.flag) == target and not p.key:
            try:
                return [v for v in p.grid_values() if v is not None] or [None]
            except ValueError:  # a continuous range: its ends
                return list(p.bounds)
    fixed = fixed_env.get(target) if target == PADDING_GAP_ENV else fixed_flags.get(target)
    return [fixed]


def study_probes(space: SearchSpace, fixed_flags: Mapping[str, Any], fixed_env: Mapping[str, str],
                 output_len: int = DEFAULT_OUTPUT_LEN, model_max_len: int | None = None,
                 most: int = MAX_STUDY_PROBES,
                 first: Sequence[tuple[Mapping[str, Any], Mapping[str, str]]] = ()) -> list[Probe]:
    """One probe set for the whole study: the union of every config's edges (each value of max-model-len,
    max-num-batched-tokens and the padding gap the space can take), so that the reference answers them all once
    and each launch answers those that fit its context. The edges of the configs in `first` (flags, env: the
    reference and the user's own configs) are kept whole, bucket and bucket + 1 together; the rest are spread over
    the lengths left when there are more than `most`."""
    kept: dict[int, Probe] = {}
    for flags, env in first:
        for probe in plan_probes(flags, env, output_len, model_max_len):
            if len(kept) < most:
                kept.setdefault(probe.prompt_len, probe)
    found: dict[int, Probe] = {}
    for max_len in _edge_values(space, fixed_flags, fixed_env, "--max-model-len"):
        for batched in _edge_values(space, fixed_flags, fixed_env, "--max-num-batched-tokens"):
            for gap in _edge_values(space, fixed_flags, fixed_env, PADDING_GAP_ENV):
                flags = {"--max-model-len": max_len, "--max-num-batched-tokens": batched}
                env = {PADDING_GAP_ENV: str(gap)} if gap is not None else {}
                for probe in plan_probes(flags, env, output_len, model_max_len):
                    if probe.prompt_len not in kept:
                        found.setdefault(probe.prompt_len, probe)
    rest = _spread(sorted(found), most - len(kept)) if most > len(kept) else []
    chosen = {**kept, **{n: found[n] for n in rest}}
    return [chosen[n] for n in sorted(chosen)]


def study_probe_set(study: Study) -> list[Probe]:
    """The study's probe set, with the edges of the reference and the user's own (enqueued) configs kept whole."""
    spec = study.spec
    own = [p for p in [spec.quality_reference(), *spec.enqueue] if p is not None]
    configs = [build_server_config(spec, study.space, params) for params in own]
    return study_probes(study.space, spec.server.flags, spec.server.env, spec.quality.output_len,
                        first=[(c.flags, c.env) for c in configs])


def probes_for(probes: Sequence[Probe], flags: Mapping[str, Any], model_max_len: int | None = None) -> list[Probe]:
    """The study's probes one config can answer: prompt and answer within its max-model-len."""
    max_len = ServingFlags.of(flags).max_model_len or model_max_len or 2048
    return [p for p in probes if p.prompt_len + p.output_len + 1 <= max_len]
