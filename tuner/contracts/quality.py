"""What the output-quality guard exchanges between stages (issue 20, first part): the probes a launch is asked to
answer and the answers it gives. The probes are planned from the config (tuner.trial.probes), answered by the
trial, and compared with the reference's answers by scoring (tuner.scoring.quality)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Probe(BaseModel):
    """One deterministic question: a prompt of an exact token length, answered greedily."""

    model_config = ConfigDict(frozen=True)

    name: str  # what edge it aims at: "bucket-256", "past-bucket-257", "fills-batch-4096", "near-max-len", "short-8"
    prompt_len: int = Field(ge=1)
    output_len: int = Field(ge=1)


class ProbeAnswer(BaseModel):
    """A probe's greedy answer as the server returned it: each chosen token and its logprob, and, when asked,
    this server's logprobs of the reference's own tokens (teacher-forced: a divergence does not cascade)."""

    probe: str
    prompt_len: int
    tokens: list[int]
    logprobs: list[float] = Field(default_factory=list)
    text: str = ""
    forced_logprobs: list[float] | None = None
    concurrent: bool = False  # answered while the whole set was in flight (the batched and speculative paths)
    error: str = ""  # the server did not answer it (HTTP status and message): it counts as diverged


class QualityPlan(BaseModel):
    """What a launch is asked to answer before its sweep: the probes, and the reference's answers to them (their
    tokens are teacher-forced through this launch). No reference: this launch is the reference, and checks
    itself in another batch composition (its noise floor)."""

    model_config = ConfigDict(frozen=True)

    probes: tuple[Probe, ...]
    reference: tuple[ProbeAnswer, ...] | None = None
    vocab_size: int  # probe prompts are token ids below it
    concurrency: int = 1  # probes in flight at once: the config's batch size, at most the set
