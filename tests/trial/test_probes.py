"""The probe set aims at the config's edges: bucket lengths and one past, a full prefill step, the longest context."""
from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tuner.contracts.quality import QualityPlan
from tuner.inputs.spec import Timeouts
from tuner.scoring.quality import beyond_noise, noise_gap, quality_of
from tuner.server.client import server_client
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.trial.probes import answer_probes, bucket_lengths, plan_probes


def test_buckets_are_powers_of_two_up_to_the_gap_then_multiples_of_it():
    assert bucket_lengths(1100, 0) == [16, 32, 64, 128, 256, 512, 1024]
    assert bucket_lengths(800, 256) == [16, 32, 64, 128, 256, 512, 768]
    assert bucket_lengths(300, 64)[:6] == [16, 32, 64, 128, 192, 256]  # the documented gap=64 example


def test_the_seeds_config_is_probed_at_its_bucket_edges_its_full_step_and_its_context():
    flags = {"--max-model-len": 16384, "--max-num-batched-tokens": 4096}
    probes = plan_probes(flags, {"VLLM_TPU_BUCKET_PADDING_GAP": "256"}, output_len=16)
    lengths = {p.prompt_len for p in probes}
    buckets = [p.prompt_len for p in probes if p.name.startswith("bucket-")]
    assert buckets[0] == 16 and all(n + 1 in lengths for n in buckets)  # every bucket and one token past it
    assert all(n % 256 == 0 for n in buckets if n >= 256) and max(buckets) >= 16000
    assert 4096 in lengths and max(lengths) == 16384 - 16 - 1  # a full prefill step; the longest prompt that fits
    assert {1, 5, 9} <= lengths and len(probes) <= 24
    assert all(p.prompt_len + p.output_len + 1 <= 16384 for p in probes)


def test_a_small_context_keeps_every_probe_inside_it():
    probes = plan_probes({"--max-model-len": 64, "--max-num-batched-tokens": 512}, {}, output_len=16)
    assert all(p.prompt_len + p.output_len + 1 <= 64 for p in probes)
    assert not any(p.name.startswith("fills-batch") for p in probes)  # 512 tokens cannot be one prompt here
    assert len({p.prompt_len for p in probes}) == len(probes)
    assert plan_probes({"--max-model-len": 8}, {}, output_len=16) == []


FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
PROBES = tuple(plan_probes({"--max-model-len": 96, "--max-num-batched-tokens": 48}, {}, output_len=8))


def answers_of(tmp_path, mode: str, reference=None, concurrency: int = 4):
    config = ServerConfig(command=(sys.executable, FAKE), model="fake",
                          flags={"--max-num-batched-tokens": 48}, env={"FAKE_VLLM_MODE": mode})
    with ServerProcess(config, tmp_path / f"{mode}.log", Timeouts(startup_s=120, shutdown_grace_s=2)) as server:
        server.wait_ready()
        with server_client(10.0) as client:
            plan = QualityPlan(probes=PROBES, reference=reference, vocab_size=2048, concurrency=concurrency)
            return answer_probes(client, server.base_url, "fake", plan)


def test_probes_are_answered_greedily_with_logprobs_and_teacher_forced(tmp_path):
    own = answers_of(tmp_path, "ok")
    assert [a.probe for a in own] == [p.name for p in PROBES]
    assert all(len(a.tokens) == 8 and len(a.logprobs) == 8 and not a.error for a in own)
    assert all(a.forced_logprobs == a.logprobs for a in own)  # the reference against itself, another batch
    again = answers_of(tmp_path, "ok", reference=tuple(own), concurrency=1)
    assert [a.tokens for a in again] == [a.tokens for a in own]  # deterministic: same questions, same answers
    quality = quality_of(own, again, noise=noise_gap(own, own))
    assert quality.figure == 1.0 and not quality.diverged


def test_wrong_tokens_past_a_length_are_caught_at_that_length(tmp_path):
    reference = tuple(answers_of(tmp_path, "ok"))
    wrong = answers_of(tmp_path, "wrong-past:20", reference=reference)
    quality = quality_of(reference, wrong, noise=0.0)
    by_name = {c.probe: c for c in quality.diverged}
    # wrong from the first token for every prompt past 20; within the answer for one that grows past it
    assert {n for n, c in by_name.items() if not c.first_token_agrees} == {p.name for p in PROBES if p.prompt_len > 20}
    assert set(by_name) == {p.name for p in PROBES if p.prompt_len + p.output_len - 1 > 20}
    assert by_name["bucket-16"].diverged_at == 5 and by_name["bucket-16"].logprob_gap > 1
    assert beyond_noise(quality)


def test_the_gemma_studys_probes_keep_the_seeds_edges_whole():
    """Its reference and the seed's configs: padding gap 256 (lengths 256 k and 256 k + 1), --max-num-batched-tokens
    4096 filled exactly, the 16,384-token context used to its last token; 32 probes in all."""
    from tuner.inputs.spec import load_study
    from tuner.trial.probes import study_probe_set

    probes = study_probe_set(load_study(Path(__file__).parents[2] / "studies" / "gemma4-26b-v6e-4.yaml"))
    lengths = {p.prompt_len for p in probes}
    long_buckets = [n for n in lengths if n >= 256 and n % 256 == 0]
    assert len(probes) == 32 and len(long_buckets) >= 8
    assert all(n + 1 in lengths for n in long_buckets if n + 1 + 16 < 32768)  # every bucket with its +1
    assert 4096 in lengths  # the seed's full prefill step (also a bucket)
    assert 16384 - 16 - 1 in lengths  # the reference's whole context


class _CountingTransport(httpx.HTTPTransport):
    """The real transport, counting teacher-forced requests (the seam server_client hands a transport through)."""

    forced = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if b'"prompt_logprobs"' in request.content:
            type(self).forced += 1
        return super().handle_request(request)


def test_a_launch_that_follows_the_reference_sends_no_teacher_forced_request(tmp_path):
    """Its greedy logprobs of the reference's tokens are the teacher-forced ones: only probes that diverged pay
    for a second prefill; the reference's own noise check always does."""
    config = ServerConfig(command=(sys.executable, FAKE), model="fake", flags={"--max-num-batched-tokens": 48},
                          env={"FAKE_VLLM_MODE": "wrong-past:20"})
    with ServerProcess(config, tmp_path / "count.log", Timeouts(startup_s=120, shutdown_grace_s=2)) as server:
        server.wait_ready()
        with server_client(10.0, transport=_CountingTransport()) as client:
            own = answer_probes(client, server.base_url, "fake",
                                QualityPlan(probes=PROBES, vocab_size=2048, concurrency=4))
            assert _CountingTransport.forced == len(PROBES)  # the reference: every probe forced
            _CountingTransport.forced = 0
            truth = [a.model_copy(update={"tokens": [t + 1 for t in a.tokens]}) if a.prompt_len > 20 else a
                     for a in own]  # a reference that the long prompts do not follow
            judged = answer_probes(client, server.base_url, "fake",
                                   QualityPlan(probes=PROBES, reference=tuple(truth), vocab_size=2048))
    diverged = [a for a in judged if a.tokens != next(t.tokens for t in truth if t.probe == a.probe)]
    assert _CountingTransport.forced == len(diverged) > 0
    assert all(a.forced_logprobs is not None for a in judged)
