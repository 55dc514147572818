"""The quality probes against the real CPU vLLM serving the trained tiny model: the requests tuner sends (token-id
prompts, greedy with logprobs and return_token_ids, teacher-forced prompt_logprobs) are ones vLLM answers; the
reference against itself over three launches is never flagged (no false alarms: a test of it over five launches
passed, and the guard's README figures come from that); n-gram speculation answers like the reference; fp8 KV
cache is measured and decided by the tolerance. Slow: five real launches."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuner.contracts.quality import ProbeAnswer, QualityPlan
from tuner.errors import ServerStartupFailed
from tuner.inputs.spec import Timeouts
from tuner.load.tokenizer import vocab_size_of_config
from tuner.scoring.quality import beyond_noise, noise_gap, quality_of
from tuner.server.client import server_client
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.trial.probes import answer_probes, plan_probes

pytestmark = pytest.mark.e2e

FLAGS = {"--max-num-seqs": 8, "--max-model-len": 1024, "--max-num-batched-tokens": 512,
         "--kv-cache-memory-bytes": 8388608, "--enforce-eager": True}
PROBES = tuple(plan_probes(FLAGS, {}, output_len=8))


def launch(vllm_env: dict, tmp_path: Path, name: str, reference: tuple[ProbeAnswer, ...] | None = None,
           **flags: Any) -> list[ProbeAnswer]:
    """One launch answering the probe set (teacher-forcing the reference's tokens, or its own without one)."""
    config = ServerConfig(command=tuple(vllm_env["command"]), model=vllm_env["model"], flags={**FLAGS, **flags},
                          env={**vllm_env["env"], "TUNER_TEST_TAG": str(tmp_path)})
    vocab = vocab_size_of_config(Path(vllm_env["model"]) / "config.json")
    assert vocab is not None
    plan = QualityPlan(probes=PROBES, reference=reference, vocab_size=vocab, concurrency=8)
    with ServerProcess(config, tmp_path / f"{name}.log", Timeouts(startup_s=300, shutdown_grace_s=10)) as server:
        server.wait_ready()
        with server_client(120.0) as client:
            return answer_probes(client, server.base_url, vllm_env["model"], plan)


def test_the_real_server_answers_no_false_alarm_and_the_knobs_measured(vllm_env, tmp_path):
    reference = tuple(launch(vllm_env, tmp_path, "reference"))
    assert [a.probe for a in reference] == [p.name for p in PROBES] and not any(a.error for a in reference), reference
    assert all(len(a.tokens) == 8 and len(a.logprobs) == 8 and len(a.forced_logprobs or []) == 8 for a in reference)
    assert max(a.logprobs[0] for a in reference) > -1.0  # the trained model is confident: its answers mean something
    noise = noise_gap(reference, reference)
    for i in range(2):  # the reference against itself, launch after launch: never flagged
        again = quality_of(reference, launch(vllm_env, tmp_path, f"again-{i}", reference), noise)
        assert not beyond_noise(again) and again.figure == 1.0, again.describe()
    ngram = quality_of(reference, launch(vllm_env, tmp_path, "ngram", reference, **{
        "--speculative-config": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3}}), noise)
    assert not beyond_noise(ngram), ngram.describe()  # speculation is meant to be lossless
    try:
        fp8_answers = launch(vllm_env, tmp_path, "fp8", reference, **{"--kv-cache-dtype": "fp8"})
    except ServerStartupFailed as exc:  # vLLM's CPU fp8 KV cache needs AVX-512 or AMX: a host without them rejects it
        assert exc.failure_class == "invalid_config" and "AVX-512" in exc.detail, exc.detail
        pytest.skip(f"fp8 KV cache not measurable on this host (the server says: {exc.detail[:160]}); the rest passed")
    fp8 = quality_of(reference, fp8_answers, noise)
    print(f"noise floor {noise:.4f}; ngram: {ngram.describe()}; fp8 KV cache: {fp8.describe()} (figure"
          f" {fp8.figure:.3f}, {'beyond' if beyond_noise(fp8) else 'within'} the tolerance {fp8.tolerance})")
    assert fp8.logprob_gap is not None  # lossy by design: measured, and the tolerance decides
