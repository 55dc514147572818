"""Parameters -> argv and env: flags, JSON-valued flags with fixed keys, env vars, null and booleans."""
from __future__ import annotations

import json

from tuner.inputs.search_space import SearchSpace
from tuner.inputs.spec import StudySpec
from tuner.server.config import ServerConfig, build_server_config, flags_to_argv, redact_env

SPACE = SearchSpace.model_validate({
    "json_flags": {"--speculative-config": {"prompt_lookup_max": 4, "prompt_lookup_min": 2}},
    "parameters": {
        "seqs": {"type": "int", "low": 8, "high": 512, "flag": "--max-num-seqs"},
        "method": {"type": "categorical", "choices": [None, "ngram"], "flag": "--speculative-config", "key": "method"},
        "tokens": {"type": "int", "low": 1, "high": 5, "flag": "--speculative-config", "key": "num_speculative_tokens",
                   "condition": {"method": "ngram"}},
        "gap": {"type": "categorical", "choices": [0, 64, 256], "env": "VLLM_TPU_BUCKET_PADDING_GAP"},
        "prefix": {"type": "bool", "flag": "--enable-prefix-caching"},
    },
})
SPEC = StudySpec.model_validate({
    "name": "s", "model": "google/gemma", "search_space": "x.yaml",
    "server": {"command": ["vllm", "serve"], "flags": {"--tensor-parallel-size": 4, "--dtype": "bfloat16"},
               "env": {"HF_TOKEN": "hf_secret", "FOO": 1}},
})


def test_flags_env_and_json_keys():
    config = build_server_config(SPEC, SPACE, {"seqs": 256, "method": "ngram", "tokens": 3, "gap": 256, "prefix": True})
    assert config.flags["--max-num-seqs"] == 256
    assert config.flags["--speculative-config"] == {"prompt_lookup_max": 4, "prompt_lookup_min": 2, "method": "ngram",
                                                    "num_speculative_tokens": 3}
    assert config.env == {"HF_TOKEN": "hf_secret", "FOO": "1", "VLLM_TPU_BUCKET_PADDING_GAP": "256"}
    argv = config.argv("127.0.0.1", 8000)
    assert argv[:4] == ["vllm", "serve", "--model", "google/gemma"]
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "8000"]
    spec_json = argv[argv.index("--speculative-config") + 1]
    assert json.loads(spec_json)["num_speculative_tokens"] == 3
    assert "--enable-prefix-caching" in argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"


def test_null_and_unmet_condition_leave_targets_unset():
    config = build_server_config(SPEC, SPACE, {"seqs": 8, "method": None, "tokens": 3, "gap": 0, "prefix": False})
    assert "--speculative-config" not in config.flags  # no parameter filled any key: flag omitted
    assert config.env["VLLM_TPU_BUCKET_PADDING_GAP"] == "0"
    assert "--no-enable-prefix-caching" in config.argv("h", 1)


def test_argv_forms():
    assert flags_to_argv({"--a": True, "--b": False, "--c": None, "--d": [1, 2], "--e": {"k": 1}, "--f": 0.5}) == [
        "--a", "--no-b", "--d", "1", "2", "--e", '{"k":1}', "--f", "0.5"]


def test_values_are_never_shell_interpreted():
    config = ServerConfig(command=("vllm", "serve"), model="m; rm -rf /", flags={"--x": "$(touch pwned)"})
    argv = config.argv("h", 1)
    assert "m; rm -rf /" in argv and "$(touch pwned)" in argv  # one argv element each, no shell anywhere


def test_secrets_redacted():
    assert redact_env({"HF_TOKEN": "x", "MY_API_KEY": "y", "DB_PASSWORD": "z", "AWS_SECRET": "s", "PLAIN": "p"}) == {
        "HF_TOKEN": "***", "MY_API_KEY": "***", "DB_PASSWORD": "***", "AWS_SECRET": "***", "PLAIN": "p"}
