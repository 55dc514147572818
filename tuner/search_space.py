"""The search space: which server flags and env vars Optuna may set, over which values, under which conditions.

A search-space file (search_spaces/*.yaml) looks like:

    json_flags:                      # fixed keys of JSON-valued flags that parameters fill in
      --speculative-config: {method: ngram, prompt_lookup_max: 4}
    parameters:
      max_num_seqs:   {type: int, low: 4, high: 64, log: true, flag: --max-num-seqs}
      spec_tokens:    {type: int, low: 1, high: 5, flag: --speculative-config, key: num_speculative_tokens,
                       condition: {use_spec: true}}
      padding_gap:    {type: categorical, choices: [0, 64, 128], env: VLLM_TPU_BUCKET_PADDING_GAP}

A parameter whose value is null leaves its target unset (the server's default applies). A JSON-valued flag is
sent only when at least one parameter fills one of its keys.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuner._yaml import read_yaml_mapping, validate

FLAG_RE = re.compile(r"^--[a-z0-9]+(-[a-z0-9]+)*$")
ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
ScalarValue = bool | int | float | str | None


def check_flag_name(name: str) -> str:
    if not FLAG_RE.match(name):
        raise ValueError(f"flag {name!r} is not of the form --lowercase-with-dashes")
    return name


def check_env_name(name: str) -> str:
    if not ENV_RE.match(name):
        raise ValueError(f"environment variable {name!r} does not match [A-Z_][A-Z0-9_]*")
    return name


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "float", "categorical", "bool"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[ScalarValue] | None = None
    condition: dict[str, ScalarValue | list[ScalarValue]] | None = Field(
        default=None, description="sample this parameter only when each named parameter has one of the given values"
    )
    flag: str | None = None
    key: str | None = Field(default=None, description="key inside the JSON-valued flag")
    env: str | None = None

    @field_validator("flag")
    @classmethod
    def _flag_name(cls, v: str | None) -> str | None:
        return None if v is None else check_flag_name(v)

    @field_validator("env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        return None if v is None else check_env_name(v)

    @model_validator(mode="after")
    def _consistent(self) -> "Parameter":
        if (self.flag is None) == (self.env is None):
            raise ValueError("give exactly one target: 'flag' (optionally with 'key') or 'env'")
        if self.key is not None and self.flag is None:
            raise ValueError("'key' needs a JSON-valued 'flag' to go into")
        if self.type in ("int", "float"):
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"empty range: low {self.low:g} is above high {self.high:g}")
            if self.choices is not None:
                raise ValueError(f"'choices' belongs to categorical parameters, not {self.type}")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale range needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("'log' and 'step' cannot be combined")
            if self.step is not None and self.step <= 0:
                raise ValueError("'step' must be positive")
            if self.type == "int":
                for name in ("low", "high", "step"):
                    value = getattr(self, name)
                    if value is not None and value != int(value):
                        raise ValueError(f"'{name}' of an int parameter must be a whole number")
                if self.step and (self.high - self.low) % self.step:
                    raise ValueError(f"range {self.low:g}..{self.high:g} is not a whole number of steps of {self.step:g}")
        else:
            if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
                raise ValueError(f"'low', 'high', 'step' and 'log' belong to int and float parameters, not {self.type}")
            if self.type == "categorical" and not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.type == "bool" and self.choices is not None:
                raise ValueError("a bool parameter takes no 'choices'")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.type == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "bool":
            return optuna.distributions.CategoricalDistribution([False, True])
        return optuna.distributions.CategoricalDistribution(self.choices)

    def condition_holds(self, values: dict[str, Any]) -> bool:
        for name, wanted in (self.condition or {}).items():
            if name not in values:
                return False
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if values[name] not in allowed:
                return False
        return True


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    json_flags: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parameters: dict[str, Parameter]

    @field_validator("json_flags")
    @classmethod
    def _json_flag_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in v:
            check_flag_name(name)
        return v

    @field_validator("parameters")
    @classmethod
    def _not_empty(cls, v: dict[str, Parameter]) -> dict[str, Parameter]:
        if not v:
            raise ValueError("at least one parameter is needed")
        return v

    @model_validator(mode="after")
    def _conditions_and_targets(self) -> "SearchSpace":
        for name, p in self.parameters.items():
            for other in p.condition or {}:
                if other not in self.parameters:
                    raise ValueError(f"parameters.{name}.condition: names unknown parameter {other!r}")
                if other == name:
                    raise ValueError(f"parameters.{name}.condition: refers to the parameter itself")
        self.sampling_order()  # raises on a cycle
        seen: dict[tuple[str, str | None], str] = {}
        for name, p in self.parameters.items():
            target = (p.flag or p.env or "", p.key)
            if target in seen and not (p.condition or self.parameters[seen[target]].condition):
                raise ValueError(f"parameters.{name}: sets the same target as {seen[target]!r}; give one of them a condition")
            seen.setdefault(target, name)
        return self

    def sampling_order(self) -> list[str]:
        """Parameters in an order where every condition's parameters come first."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise ValueError(f"parameters.{name}.condition: conditions form a cycle")
            visiting.add(name)
            for other in self.parameters[name].condition or {}:
                visit(other)
            visiting.discard(name)
            order.append(name)

        for name in self.parameters:
            visit(name)
        return order

    def flags_set(self) -> set[str]:
        return {p.flag for p in self.parameters.values() if p.flag} | set(self.json_flags)

    def env_set(self) -> set[str]:
        return {p.env for p in self.parameters.values() if p.env}

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask Optuna for a value of every active parameter, in dependency order."""
        values: dict[str, Any] = {}
        for name in self.sampling_order():
            p = self.parameters[name]
            if p.condition_holds(values):
                values[name] = suggest(trial, name, p)
        return values

    def active(self, params: dict[str, Any]) -> dict[str, Any]:
        """The subset of `params` that applies: unknown names dropped, unmet conditions dropped."""
        values: dict[str, Any] = {}
        for name in self.sampling_order():
            if name in params and self.parameters[name].condition_holds(values):
                values[name] = params[name]
        return values

    def check_values(self, params: dict[str, Any], source: str) -> None:
        """Validate fixed parameter values (enqueued trials) against the space, for a clear error before any launch."""
        for name, value in params.items():
            if name not in self.parameters:
                raise ValueError(f"{source}: unknown parameter {name!r}")
            dist = self.parameters[name].distribution()
            try:
                ok = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise ValueError(f"{source}.{name}: {value!r} is outside the parameter's range or choices")


def suggest(trial: optuna.Trial, name: str, p: Parameter) -> Any:
    if p.type == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    if p.type == "float":
        return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    if p.type == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, p.choices)


def load_search_space(path: Path) -> SearchSpace:
    return validate(SearchSpace, read_yaml_mapping(path), str(path))
