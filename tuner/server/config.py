"""ServerConfig: exactly what one trial launches, as an argv list and an env mapping (never a shell string).

`flags` keeps the values in the same forms a `vllm serve --config` file uses (scalars, booleans, lists,
mappings for JSON-valued flags), so one structure gives both the argv and the exported YAML.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from tuner.inputs.search_space import SearchSpace
from tuner.inputs.spec import DEFAULT_SERVER_NICE, StudySpec

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)
REDACTED = "***"
COMPILE_CACHE_ENV = "VLLM_XLA_CACHE_PATH"  # the XLA compile cache (TPU); set per worker by the study


@dataclass(frozen=True)
class ServerConfig:
    command: tuple[str, ...]
    model: str
    flags: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # How far the server steps back when it and tuner's load client want the same CPU (0-19; not a vLLM setting,
    # never exported). See tuner.server._reaper.
    nice: int = DEFAULT_SERVER_NICE

    def argv(self, host: str, port: int) -> list[str]:
        return [*self.command, "--model", self.model, *flags_to_argv(self.flags), "--host", host, "--port", str(port)]

    def redacted_env(self) -> dict[str, str]:
        return redact_env(self.env)


def flag_to_argv(flag: str, value: Any) -> list[str]:
    if value is None:
        return []
    if value is True:
        return [flag]
    if value is False:
        return ["--no-" + flag[2:]]
    if isinstance(value, dict):
        return [flag, json.dumps(value, separators=(",", ":"))]
    if isinstance(value, (list, tuple)):
        return [flag, *(str(v) for v in value)]
    return [flag, str(value)]


def flags_to_argv(flags: dict[str, Any]) -> list[str]:
    return [arg for flag, value in flags.items() for arg in flag_to_argv(flag, value)]


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if SECRET_NAME.search(k) else v) for k, v in env.items()}


def secret_values(env: dict[str, str]) -> list[str]:
    """Values of secret-named variables in `env` and in this process's own environment (the server inherits it)."""
    values = {v for source in (env, os.environ) for k, v in source.items() if SECRET_NAME.search(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)  # longest first, so a secret containing another is fully hidden


def redact_text(text: str, env: dict[str, str]) -> str:
    """Replace the values of secret env vars wherever they appear (a server may log its environment)."""
    for value in secret_values(env):
        text = text.replace(value, REDACTED)
    return text


def with_compile_cache(config: ServerConfig, cache_dir: str | None) -> ServerConfig:
    """Point the server at the worker's persistent compile cache, unless the study already sets the variable."""
    if not cache_dir or COMPILE_CACHE_ENV in config.env:
        return config
    return replace(config, env={**config.env, COMPILE_CACHE_ENV: cache_dir})


def build_server_config(spec: StudySpec, space: SearchSpace, params: dict[str, Any]) -> ServerConfig:
    """Merge the study's fixed flags and env with the sampled parameters into one ServerConfig, pointed at the
    study's compile cache (`compile_cache_dir`): the one way every launch, plan and matrix run gets its config."""
    flags: dict[str, Any] = dict(spec.server.flags)
    env: dict[str, str] = dict(spec.server.env)
    json_keys: dict[str, dict[str, Any]] = {}
    for name, value in space.active(params).items():
        p = space.parameters[name]
        if value is None:
            continue  # null leaves the target at the server's default
        if p.env:
            env[p.env] = str(int(value) if isinstance(value, bool) else value)
        elif p.key:
            json_keys.setdefault(p.flag_name, {})[p.key] = value
        else:
            flags[p.flag_name] = value
    for flag, keys in json_keys.items():
        flags[flag] = {**space.json_flags.get(flag, {}), **keys}
    config = ServerConfig(command=tuple(spec.server.command), model=spec.model, flags=flags, env=env,
                          nice=spec.server.nice)
    return with_compile_cache(config, spec.compile_cache_dir)
