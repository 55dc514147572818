"""What is compared: a side is a label and the server config it launches."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import yaml

from tuner.errors import InputError
from tuner.inputs.spec import Study
from tuner.server.config import ServerConfig, build_server_config

_TRIAL = re.compile(r"^(?:(?P<study>[^:]+):)?(?P<number>\d+)$")


@dataclass(frozen=True)
class Side:
    label: str  # what the user typed (a YAML by its file name): how the table names the side
    config: ServerConfig


def resolve_side(text: str, study: Study, server_command: str | None = None) -> Side:
    """A `--config` YAML path, a trial (N or STUDY:N, in the study file's storage), or a `vllm serve ...` command
    line. `server_command` replaces the study's (another vLLM install, e.g. an upgrade to check)."""
    if Path(text).suffix in (".yaml", ".yml"):
        config = _from_yaml(Path(text), study)
    elif (match := _TRIAL.match(text)) is not None:
        config = _from_trial(match["study"] or study.spec.name, int(match["number"]), study, text)
    elif " " in text.strip():
        config = _from_command(text, study)
    else:
        raise InputError(text, "", "a config YAML (.yaml), a trial (N or STUDY:N) or a quoted `vllm serve` command")
    if server_command:
        config = replace(config, command=tuple(shlex.split(server_command)))
    label = Path(text).name if Path(text).suffix in (".yaml", ".yml") else " ".join(text.split())
    return Side(label=label, config=config)


def _base(study: Study, model: str, flags: dict[str, Any]) -> ServerConfig:
    spec = study.spec
    return ServerConfig(command=tuple(spec.server.command), model=model, flags=flags, env=dict(spec.server.env),
                        nice=spec.server.nice)


def _from_yaml(path: Path, study: Study) -> ServerConfig:
    """What `vllm serve --config FILE` reads: flag names without their dashes as keys, `model` among them."""
    if not path.is_file():
        raise InputError(str(path), "", "no such file; give the YAML that `tuner study export` wrote")
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(str(path), "", f"not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(mapping, dict):
        raise InputError(str(path), "", "a mapping of vLLM flags (as `vllm serve --config` reads)")
    model = str(mapping.pop("model", study.spec.model))
    return _base(study, model, {f"--{key}": value for key, value in mapping.items()})


def _from_trial(name: str, number: int, study: Study, text: str) -> ServerConfig:
    try:
        stored = optuna.load_study(study_name=name, storage=study.spec.storage)
    except KeyError:
        raise InputError(text, "", f"no study {name!r} in {study.spec.storage}") from None
    trials = [t for t in stored.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise InputError(text, "", f"study {name!r} has no trial {number}")
    return build_server_config(study.spec, study.space, dict(trials[0].params))


def _from_command(text: str, study: Study) -> ServerConfig:
    """`vllm serve MODEL --flag value --switch ...` (or `... api_server --model MODEL ...`): its flags as given."""
    tokens = shlex.split(text)
    first = next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))
    head = tokens[:first]
    model = head[head.index("serve") + 1] if "serve" in head[:-1] else study.spec.model
    flags: dict[str, Any] = {}
    i = first
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise InputError(text, token, "flags as --name value or --switch after the model")
        name, _, inline = token.partition("=")
        if inline:
            flags[name], i = inline, i + 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            flags[name], i = tokens[i + 1], i + 2
        else:
            flags[name], i = True, i + 1
    return _base(study, str(flags.pop("--model", model)), flags)
