"""The quality probes against the real CPU vLLM: the requests tuner sends (token-id prompts, greedy with logprobs
and return_token_ids, teacher-forced prompt_logprobs) are ones vLLM answers, and the reference checked against
itself in another batch composition is within its own noise. Slow: one real launch."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuner.contracts.quality import QualityPlan
from tuner.inputs.spec import Timeouts
from tuner.load.tokenizer import vocab_size_of_config
from tuner.scoring.quality import noise_gap, quality_of
from tuner.server.client import server_client
from tuner.server.config import ServerConfig
from tuner.server.process import ServerProcess
from tuner.trial.probes import answer_probes, plan_probes

pytestmark = pytest.mark.e2e


def test_the_real_server_answers_the_probe_set(vllm_env, tmp_path):
    flags = {"--max-num-seqs": 8, "--max-model-len": 1024, "--max-num-batched-tokens": 512,
             "--kv-cache-memory-bytes": 8388608, "--enforce-eager": True}
    config = ServerConfig(command=tuple(vllm_env["command"]), model=vllm_env["model"], flags=flags,
                          env={**vllm_env["env"], "TUNER_TEST_TAG": str(tmp_path)})
    probes = tuple(plan_probes(flags, {}, output_len=8))
    with ServerProcess(config, tmp_path / "server.log", Timeouts(startup_s=300, shutdown_grace_s=10)) as server:
        server.wait_ready()
        with server_client(120.0) as client:
            vocab = vocab_size_of_config(Path(vllm_env["model"]) / "config.json")
            assert vocab is not None
            plan = QualityPlan(probes=probes, vocab_size=vocab, concurrency=8)
            answers = answer_probes(client, server.base_url, vllm_env["model"], plan)
            again = answer_probes(client, server.base_url, vllm_env["model"],
                                  plan.model_copy(update={"reference": tuple(answers), "concurrency": 1}))
    assert [a.probe for a in answers] == [p.name for p in probes] and not any(a.error for a in answers), answers
    assert all(len(a.tokens) == 8 and len(a.logprobs) == 8 and a.forced_logprobs is not None for a in answers)
    assert all(len(a.forced_logprobs or []) == 8 for a in again)
    noise = noise_gap(answers, answers)
    quality = quality_of(answers, again, noise=noise, tolerance=0.05)
    print(f"noise floor {noise:.4f}; sequential against batched: {quality.describe()}")
    assert quality.figure >= 0.9, quality.describe()
