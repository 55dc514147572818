"""The comparison with the reference: measures that do not cascade, judged against the reference's own noise."""
from __future__ import annotations

import pytest

from tuner.contracts.quality import ProbeAnswer
from tuner.scoring.quality import beyond_noise, compare_probe, noise_gap, quality_of


def answer(name, tokens, logprobs=None, forced=None):
    return ProbeAnswer(probe=name, prompt_len=8, tokens=tokens, logprobs=logprobs or [-0.1] * len(tokens),
                       forced_logprobs=forced, text=" ".join(map(str, tokens)))


def test_a_late_flip_within_the_noise_is_not_a_divergence():
    ref = answer("p", [5, 6, 7, 8], [-0.1, -0.2, -0.7, -0.1])
    # greedy flipped at position 2 (two close candidates), but the reference's tokens are as likely as before
    got = answer("p", [5, 6, 9, 9], forced=[-0.1, -0.21, -0.72, -0.1])
    c = compare_probe(ref, got, noise_gap=0.02, tolerance=0.0)
    assert c.agrees and c.first_token_agrees and c.diverged_at == 2 and c.prefix_share == 0.5
    assert c.logprob_gap == pytest.approx(0.0075)


def test_a_wrong_first_token_disagrees_whatever_the_logprobs():
    c = compare_probe(answer("p", [5, 6]), answer("p", [4, 6], forced=[-0.1, -0.1]), noise_gap=0.1, tolerance=0.1)
    assert not c.agrees and not c.first_token_agrees and c.prefix_share == 0.0


def test_without_logprobs_only_the_whole_answer_agrees():
    assert compare_probe(answer("p", [1, 2]), answer("p", [1, 2]), 0.0, 0.0).agrees
    assert not compare_probe(answer("p", [1, 2]), answer("p", [1, 3]), 0.0, 0.0).agrees


def test_the_figure_and_its_evidence():
    ref = [answer("a", [1, 2, 3, 4]), answer("b", [5, 6, 7, 8]), answer("c", [9, 9])]
    got = [answer("a", [1, 2, 3, 4], forced=[-0.1] * 4),
           answer("b", [5, 6, 0, 0], forced=[-0.1, -0.1, -3.0, -3.0])]  # c never answered
    q = quality_of(ref, got, noise=0.01, tolerance=0.05)
    assert q.probes == 3 and [d.probe for d in q.diverged] == ["b", "c"]
    assert q.figure == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert q.first_token_agreement == pytest.approx(2 / 3)
    assert beyond_noise(q) and "agree with the reference on 1 of 3 probes" in q.describe()


def test_the_noise_floor_is_the_reference_against_itself():
    first = [answer("a", [1, 2], [-0.1, -0.2]), answer("b", [3], [-0.5])]
    second = [answer("a", [1, 2], forced=[-0.12, -0.2]), answer("b", [3], forced=[-0.53])]
    assert noise_gap(first, second) == pytest.approx(0.03)
    assert not beyond_noise(quality_of(first, second, noise=noise_gap(first, second), tolerance=0.0))
