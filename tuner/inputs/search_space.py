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

`rules` name combinations the server would reject; a config that breaks one is never launched:

    rules:
      - {name: batched-tokens-aligned, multiple_of: {name: max_num_batched_tokens, of: 128}}
      - {name: no-async-with-ngram, forbid: {spec_method: ngram, --async-scheduling: true}}
      - {name: lookup-bounds-ordered, less_equal: [prompt_lookup_min, prompt_lookup_max]}

A rule refers to a parameter by name, to a flag (`--flag`, or `--flag.key` inside a JSON-valued flag) or to an
environment variable, whether a parameter or the study's fixed flags set it. A rule whose names have no value
(an inactive parameter, an unset flag) does not apply.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuner.inputs._yaml import read_yaml_mapping, validate

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
    def _consistent(self) -> Parameter:
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

    @property
    def flag_name(self) -> str:
        """The server flag a flag parameter sets (a parameter sets either a flag, maybe a key in it, or an env var)."""
        if self.flag is None:
            raise TypeError("an env parameter sets no flag")
        return self.flag

    @property
    def bounds(self) -> tuple[float, float]:
        """low and high of an int or float parameter (the validator requires both)."""
        if self.low is None or self.high is None:
            raise TypeError(f"a {self.type} parameter has no range")
        return self.low, self.high

    @property
    def options(self) -> list[ScalarValue]:
        """The values of a categorical or bool parameter."""
        return [False, True] if self.type == "bool" else list(self.choices or [])

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "int":
            low, high = self.bounds
            return optuna.distributions.IntDistribution(int(low), int(high), log=self.log, step=int(self.step or 1))
        if self.type == "float":
            return optuna.distributions.FloatDistribution(*self.bounds, log=self.log, step=self.step)
        return optuna.distributions.CategoricalDistribution(self.options)

    def grid_values(self) -> list[Any]:
        """Every value a grid search tries; ValueError for a range without a step (it has no finite grid)."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "bool":
            return [False, True]
        if self.step is None and not (self.type == "int" and not self.log):
            raise ValueError(f"a {'log-scale ' if self.log else ''}{self.type} range has no grid: give it a 'step'"
                             " or make it categorical")
        step = self.step or 1
        low, high = self.bounds
        count = round((high - low) / step) + 1
        values = [low + i * step for i in range(count)]
        return [int(v) for v in values] if self.type == "int" else values

    def admits(self, value: Any) -> bool:
        """Whether a fixed value (an enqueued trial's) lies in this parameter's range or choices."""
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "categorical":
            return any(value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in self.choices or [])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        low, high = self.bounds
        if not low <= value <= high:
            return False
        step = self.step or (1 if self.type == "int" else None)
        if step is None:
            return True
        steps = (value - low) / step
        return abs(steps - round(steps)) < 1e-9

    def condition_holds(self, values: dict[str, Any]) -> bool:
        for name, wanted in (self.condition or {}).items():
            if name not in values:
                return False
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if values[name] not in allowed:
                return False
        return True


class MultipleOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    of: float = Field(gt=0)
    allow_zero: bool = Field(default=True, description="0 often means 'off' (e.g. VLLM_TPU_BUCKET_PADDING_GAP)")


class Rule(BaseModel):
    """One constraint checked before launch. Exactly one of multiple_of, forbid, less_equal."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    why: str = ""
    multiple_of: MultipleOf | None = None
    forbid: dict[str, ScalarValue | list[ScalarValue]] | None = Field(
        default=None, description="broken when every named value is one of the given values")
    less_equal: list[str] | None = Field(default=None, min_length=2, max_length=2,
                                         description="[a, b]: broken when a > b")

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k in ("multiple_of", "forbid", "less_equal") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'multiple_of', 'forbid', 'less_equal'")
        if self.forbid is not None and not self.forbid:
            raise ValueError("'forbid' needs at least one name")
        return self

    def kind_name(self) -> str:
        return next(k for k in ("multiple_of", "forbid", "less_equal") if getattr(self, k) is not None)

    def names(self) -> list[str]:
        if self.multiple_of is not None:
            return [self.multiple_of.name]
        if self.forbid is not None:
            return list(self.forbid)
        return list(self.less_equal or [])

    def violation(self, view: dict[str, Any]) -> str | None:
        """A one-line reason when `view` (name -> value) breaks the rule, else None."""
        if any(view.get(n) is None for n in self.names()):
            return None  # unset or inactive: the rule does not apply
        if self.multiple_of is not None:
            m = self.multiple_of
            value = _number(view[m.name])
            if value is None:
                return f"{self.name}: {m.name}={view[m.name]!r} is not a number"
            if value == 0 and m.allow_zero:
                return None
            if value % m.of:
                return self._say(f"{m.name}={view[m.name]} is not a multiple of {m.of:g}")
            return None
        if self.forbid is not None:
            for n, wanted in self.forbid.items():
                allowed = wanted if isinstance(wanted, list) else [wanted]
                if not any(_same(view[n], w) for w in allowed):
                    return None
            return self._say(" with ".join(f"{n}={view[n]}" for n in self.forbid) + " is not allowed")
        a, b = self.less_equal or ["", ""]
        va, vb = _number(view[a]), _number(view[b])
        if va is None or vb is None:
            return f"{self.name}: {a} and {b} must be numbers"
        if va > vb:
            return self._say(f"{a}={view[a]} is above {b}={view[b]}")
        return None

    def _say(self, what: str) -> str:
        return f"{self.name}: {what}" + (f" ({self.why})" if self.why else "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _same(value: Any, wanted: Any) -> bool:
    # Env vars arrive as strings and flags as YAML scalars: "1" == 1 == true for this purpose.
    if value == wanted:
        return True
    norm = {"true": "1", "false": "0"}
    a, b = str(value).lower(), str(wanted).lower()
    return norm.get(a, a) == norm.get(b, b)


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    json_flags: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parameters: dict[str, Parameter]
    rules: list[Rule] = Field(default_factory=list, description="checked before launch; a broken rule is never run")

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
    def _conditions_and_targets(self) -> SearchSpace:
        for name, p in self.parameters.items():
            for other in p.condition or {}:
                if other not in self.parameters:
                    raise ValueError(f"parameters.{name}.condition: names unknown parameter {other!r}")
                if other == name:
                    raise ValueError(f"parameters.{name}.condition: refers to the parameter itself")
        self.sampling_order()  # raises on a cycle
        for i, rule in enumerate(self.rules):
            for n in rule.names():
                if not (n in self.parameters or FLAG_RE.match(n.split(".", 1)[0]) or ENV_RE.match(n)):
                    raise ValueError(f"rules.{i}.{rule.kind_name()}: {n!r} is neither a parameter, a --flag"
                                     " (or --flag.key) nor an ENV_VAR")
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

    def grid(self) -> dict[str, list[Any]]:
        """Parameter -> every value a grid search tries (ValueError naming a parameter without a finite grid)."""
        grid = {}
        for name, p in self.parameters.items():
            try:
                grid[name] = p.grid_values()
            except ValueError as exc:
                raise ValueError(f"parameters.{name}: {exc}") from None
        return grid

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
            if not self.parameters[name].admits(value):
                raise ValueError(f"{source}.{name}: {value!r} is outside the parameter's range or choices")
        broken = self.violations(params)
        if broken:
            raise ValueError(f"{source}: breaks rule {broken[0]}")

    def rule_view(self, params: dict[str, Any], flags: dict[str, Any] | None = None,
                  env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every value a rule may name: active parameters, and the flags and env they and the study set."""
        view: dict[str, Any] = {}
        for flag, value in (flags or {}).items():
            view[flag] = value
            if isinstance(value, dict):
                view.update({f"{flag}.{k}": v for k, v in value.items()})
        view.update(env or {})
        active = self.active(params)
        filled: set[str] = set()
        for name, value in active.items():
            p = self.parameters[name]
            view[name] = value
            if value is None:
                continue
            if p.env:
                view[p.env] = value
            elif p.key:
                view[f"{p.flag_name}.{p.key}"] = value
                filled.add(p.flag_name)
            else:
                view[p.flag_name] = value
        for flag in filled:  # a JSON flag that is sent carries its fixed keys too
            for k, v in self.json_flags.get(flag, {}).items():
                view.setdefault(f"{flag}.{k}", v)
        return view

    def violations(self, params: dict[str, Any], flags: dict[str, Any] | None = None,
                   env: dict[str, Any] | None = None) -> list[str]:
        """Rules the config breaks (empty: it may be launched). Pass the study's fixed server flags and env too."""
        view = self.rule_view(params, flags, env)
        return [v for rule in self.rules if (v := rule.violation(view)) is not None]


def suggest(trial: optuna.Trial, name: str, p: Parameter) -> Any:
    if p.type == "int":
        low, high = p.bounds
        return trial.suggest_int(name, int(low), int(high), step=int(p.step or 1), log=p.log)
    if p.type == "float":
        return trial.suggest_float(name, *p.bounds, step=p.step, log=p.log)
    return trial.suggest_categorical(name, p.options)


def load_search_space(path: Path) -> SearchSpace:
    return validate(SearchSpace, read_yaml_mapping(path), str(path))
