"""Does a config still answer like the trusted reference? (issue 20, first part: the comparison, not yet wired
into the trial or the score.)

vLLM is not batch-invariant: two launches of one config can pick different greedy tokens where two candidates are
close, and a divergence then changes every later token. So exact equality is not the bar, and the comparison uses
measures that do not cascade:
  - first-token agreement: the greedy choice right after the prompt (where padded-shape bugs show, #3466);
  - greedy prefix: the share of the reference's answer matched before the first divergence;
  - teacher-forced logprob gap: the trial's logprobs of the reference's own tokens against the reference's
    logprobs of them, mean absolute difference per token. Every position is scored on the same history, so
    one flipped token does not make the rest differ.
A probe agrees when its first token matches and its logprob gap is within the noise floor (the reference checked
against itself: a second launch, another batch composition) plus `tolerance`; without teacher-forced logprobs,
when its whole greedy answer matches. The quality figure is the mean over probes of 1 for an agreeing probe, else
its greedy prefix share: in [0, 1], 1 when every probe agrees.
"""
from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuner.contracts.quality import Probe, ProbeAnswer

DEFAULT_TOLERANCE = 0.05  # nats per token beyond the noise floor, and quality points below the reference's own


class ProbeComparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    probe: str
    first_token_agrees: bool
    prefix_share: float  # reference tokens matched before the first divergence / reference tokens
    diverged_at: int | None  # the first output position that differs; None: the whole answer agrees
    logprob_gap: float | None  # mean |trial - reference| logprob of the reference's tokens; None: not measured
    agrees: bool
    reference_text: str = ""
    answer_text: str = ""


class QualityEvidence(BaseModel):
    """A launch's quality figure and what it rests on (stored with the trial once the guard is wired in)."""

    figure: float  # in [0, 1]
    probes: int
    first_token_agreement: float  # share of probes
    logprob_gap: float | None  # median over probes
    noise_gap: float  # the reference against itself
    tolerance: float
    diverged: list[ProbeComparison] = Field(default_factory=list)  # the probes that did not agree, first first
    after_soak: bool = False  # this is a confirmation run's check after its soak (worse than the one before)

    def describe(self) -> str:
        agree = self.probes - len(self.diverged)
        gap = "n/a" if self.logprob_gap is None else f"{self.logprob_gap:.3f}"
        when = " after the soak" if self.after_soak else ""
        return (f"greedy answers{when} agree with the reference on {agree} of {self.probes} probes, first token"
                f" {self.first_token_agreement:.0%}, logprob divergence {gap} vs noise {self.noise_gap:.3f}")


def _prefix(reference: Sequence[int], answer: Sequence[int]) -> int:
    n = 0
    for a, b in zip(reference, answer):
        if a != b:
            break
        n += 1
    return n


def logprob_gap(reference: ProbeAnswer, answer: ProbeAnswer) -> float | None:
    """Mean absolute difference per token between the answer's teacher-forced logprobs of the reference's tokens
    and the reference's own logprobs of them."""
    forced = answer.forced_logprobs
    if not forced or not reference.logprobs:
        return None
    pairs = list(zip(reference.logprobs, forced))
    return statistics.fmean(abs(r - f) for r, f in pairs)


def compare_probe(reference: ProbeAnswer, answer: ProbeAnswer, noise_gap: float, tolerance: float) -> ProbeComparison:
    matched = _prefix(reference.tokens, answer.tokens)
    whole = matched == len(reference.tokens) == len(answer.tokens)
    first = bool(reference.tokens) and bool(answer.tokens) and reference.tokens[0] == answer.tokens[0]
    gap = logprob_gap(reference, answer)
    agrees = first and gap <= noise_gap + tolerance if gap is not None else whole
    return ProbeComparison(probe=reference.probe, first_token_agrees=first,
                           prefix_share=matched / len(reference.tokens) if reference.tokens else 1.0,
                           diverged_at=None if whole else matched, logprob_gap=gap, agrees=agrees,
                           reference_text=reference.text, answer_text=answer.text)


def noise_gap(first: Sequence[ProbeAnswer], second: Sequence[ProbeAnswer]) -> float:
    """The reference against itself (two launches, or two batch compositions): the largest per-probe logprob gap,
    so that no probe of the reference would ever be flagged against itself. 0 when nothing was measured."""
    by_name = {a.probe: a for a in second}
    gaps = [g for a in first if a.probe in by_name and (g := logprob_gap(a, by_name[a.probe])) is not None]
    return max(gaps, default=0.0)


def quality_of(reference: Sequence[ProbeAnswer], answers: Sequence[ProbeAnswer], noise: float,
               tolerance: float = DEFAULT_TOLERANCE) -> QualityEvidence:
    """Compare a launch's answers with the reference's, probe by probe (by name); a probe the launch did not
    answer counts as diverged at its first token."""
    got = {a.probe: a for a in answers}
    comparisons = []
    for ref in reference:
        answer = got.get(ref.probe) or ProbeAnswer(probe=ref.probe, prompt_len=ref.prompt_len, tokens=[])
        comparisons.append(compare_probe(ref, answer, noise, tolerance))
    scores = [1.0 if c.agrees else c.prefix_share for c in comparisons]
    gaps = [c.logprob_gap for c in comparisons if c.logprob_gap is not None]
    return QualityEvidence(
        figure=statistics.fmean(scores) if scores else 1.0, probes=len(comparisons),
        first_token_agreement=statistics.fmean(c.first_token_agrees for c in comparisons) if comparisons else 1.0,
        logprob_gap=statistics.median(gaps) if gaps else None, noise_gap=noise, tolerance=tolerance,
        diverged=[c for c in comparisons if not c.agrees])


def beyond_noise(evidence: QualityEvidence, reference_figure: float = 1.0) -> bool:
    """A config whose figure falls below the reference's own (against itself) by more than the tolerance answers
    differently: infeasible (`wrong_output`), whatever its speed."""
    return reference_figure - evidence.figure > evidence.tolerance


class QualityReference(BaseModel):
    """The reference config's answers, recorded once per study (tuner.study.records) on its own launch, with the
    noise floor that launch measured (the reference against itself in another batch composition)."""

    key: str  # the model and the probe set: when either changes, the reference is recorded again
    params: dict[str, Any]
    trial: int
    answers: list[ProbeAnswer]
    noise: float
    server_version: str = ""  # what the reference's server reported: another version records the reference again

    def answering(self, names: set[str]) -> list[ProbeAnswer]:
        return [a for a in self.answers if a.probe in names and a.tokens and not a.error]


def reference_key(model: str, probes: Sequence[Probe]) -> str:
    text = json.dumps([model, [p.model_dump() for p in probes]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class QualityCheck:
    """What scoring needs to judge a launch's answers: the study's reference and its tolerance."""

    reference: QualityReference | None  # None until the reference's own launch has recorded it
    tolerance: float = DEFAULT_TOLERANCE

    def evidence(self, answers: Sequence[ProbeAnswer]) -> QualityEvidence | None:
        """The launch's quality against the reference, over the probes both answered (None: nothing to compare)."""
        if self.reference is None:
            return None
        reference = self.reference.answering({a.probe for a in answers})
        if not reference:
            return None
        return quality_of(reference, answers, self.reference.noise, self.tolerance)
