"""How the traffic samples its tokens: part of the workload, like its lengths.

Sampling decides whether speculative decoding pays. An n-gram draft is accepted with the probability the target
model gives the drafted token: under greedy decoding a model that repeats itself accepts nearly every draft,
under temperature 1.0 the same model may accept one in seven, and the "3x win" becomes a loss. So tuner measures
with the sampling the user's clients send, and by default with none at all: the request carries no sampling
field and the server applies its own defaults (vLLM: the model's `generation_config.json`, else temperature 1.0),
which is what a production client that leaves sampling alone gets. `vllm bench serve` does the same.

    Sampling          what every request of the study sends (`load.sampling`); all unset = the server's defaults
    ServerDefaults    what the server applies to a field a request leaves out, as read from the model folder
    SamplingInForce   both, recorded with every level, the report, dashboard notes and the export header

The quality guard's probes are greedy regardless (tuner.trial.probes): comparing answers token by token needs a
deterministic answer; that is a separate choice from the traffic's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The OpenAI request fields vLLM reads, in the order they are described.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "seed")
# What vLLM applies when neither the request nor the model's generation config sets a field.
VLLM_BUILTIN_DEFAULTS: dict[str, float | int] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                                                 "repetition_penalty": 1.0}
# The fields vLLM takes from a model's generation_config.json (vllm/config/model.py, get_diff_sampling_param).
GENERATION_CONFIG_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
GENERATION_CONFIG = "generation_config.json"
# Values that leave sampling as it is; a default at one of these goes without saying (temperature and top_p are
# always said).
NEUTRAL: dict[str, float | int] = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
                                   "frequency_penalty": 0.0}


class Sampling(BaseModel):
    """Sampling parameters sent with every request (None: not sent, the server's default applies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0.0, description="0 = greedy")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="0 or -1 = off")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, description="the same seed on every request: reproducible draws per prompt")

    def params(self) -> dict[str, float | int]:
        """The request fields this sets, in SAMPLING_FIELDS order."""
        return {name: value for name in SAMPLING_FIELDS if (value := getattr(self, name)) is not None}

    @property
    def server_defaults(self) -> bool:
        """Nothing set: every request leaves sampling to the server."""
        return not self.params()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class ServerDefaults(BaseModel):
    """What the server applies to a sampling field a request leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[str, float | int] = Field(default_factory=dict)
    source: Literal["generation_config", "vllm", "unknown"] = Field(
        "unknown", description="generation_config: the model's generation_config.json (over vLLM's own);"
        " vllm: vLLM's built-in defaults (no generation config, or --generation-config vllm); unknown: the model"
        " folder was not readable where this was decided")

    def describe(self) -> str:
        if self.source == "unknown":
            return "the server's defaults (the model's generation config was not readable here)"
        whose = "the model's defaults" if self.source == "generation_config" else "vLLM's defaults"
        shown = {k: v for k, v in self.values.items() if NEUTRAL.get(k) != v or k in ("temperature", "top_p")}
        return f"{_params_text(shown)}: {whose}"


class SamplingInForce(BaseModel):
    """The sampling a level was measured with: what the study sent, what the server filled in, and how many of
    the traffic's requests carried sampling of their own (a request log's, sent as given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sent: Sampling = Field(default_factory=Sampling)
    defaults: ServerDefaults = Field(default_factory=ServerDefaults)
    per_request: int = Field(0, ge=0, description="traffic samples with sampling of their own (of the traffic's)")

    def effective(self) -> dict[str, float | int]:
        """What a request without sampling of its own is sampled with (as far as it is known here)."""
        return {**self.defaults.values, **self.sent.params()}

    @property
    def greedy(self) -> bool:
        """Every request is greedy: nothing in the traffic overrides a temperature of 0."""
        return self.effective().get("temperature") == 0 and not self.per_request

    def describe(self) -> str:
        """"temperature 0.8, top_p 0.95: the model's defaults", "temperature 0 (greedy): set by the study",
        "temperature 0.7 set by the study; top_p 0.95: the model's defaults", with ", 120 requests with their own"
        when the traffic carries some."""
        sent = self.sent.params()
        if not sent:
            text = self.defaults.describe()
        else:
            text = f"{_params_text(sent)}{' (greedy)' if self.sent.greedy else ''}: set by the study"
            rest = {k: v for k, v in self.defaults.values.items() if k not in sent}
            if rest and not self.sent.greedy:
                text += f"; {ServerDefaults(values=rest, source=self.defaults.source).describe()}"
        if self.per_request:
            text += f"; {self.per_request} traffic samples carry their own sampling, sent as given"
        return text


def _params_text(values: dict[str, Any]) -> str:
    ordered = [name for name in SAMPLING_FIELDS if name in values]
    return ", ".join(f"{name} {values[name]:g}" if isinstance(values[name], float) else f"{name} {values[name]}"
                     for name in ordered) or "no sampling parameters"


def server_defaults(model: str, flags: dict[str, Any] | None = None) -> ServerDefaults:
    """What vLLM applies to an unset field, read as vLLM reads it: `--generation-config` (auto: the model folder;
    vllm: its built-in defaults; a folder: that folder's generation_config.json), then
    `--override-generation-config`. A model that is not a local folder here (a hub name) is `unknown`."""
    flags = flags or {}
    where = str(flags.get("--generation-config", "auto"))
    override = _override(flags.get("--override-generation-config"))
    if where == "vllm":
        return ServerDefaults(values={**VLLM_BUILTIN_DEFAULTS, **override}, source="vllm")
    folder = Path(model if where == "auto" else where)
    if not folder.is_dir():
        return ServerDefaults(values=override, source="unknown") if override else ServerDefaults()
    read = _generation_config(folder / GENERATION_CONFIG)
    source: Literal["generation_config", "vllm"] = "generation_config" if read or override else "vllm"
    return ServerDefaults(values={**VLLM_BUILTIN_DEFAULTS, **read, **override}, source=source)


def _generation_config(path: Path) -> dict[str, float | int]:
    """The sampling fields of a generation_config.json (empty when there is none or it is not JSON: vLLM then
    falls back to its own defaults too)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # transformers writes do_sample: false for a greedy model; vLLM then still samples at the given temperature,
    # so it is not read here either.
    return {k: data[k] for k in GENERATION_CONFIG_FIELDS
            if isinstance(data.get(k), int | float) and not isinstance(data.get(k), bool)}


def _override(value: object) -> dict[str, float | int]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k in GENERATION_CONFIG_FIELDS and isinstance(v, int | float)}


SAMPLING_SYNTAX = "'defaults' (the server's, from the model), 'greedy', or fields like 'temperature=0.7,top_p=0.95'"


def parse_sampling(text: str) -> Sampling:
    """A command line's sampling: "defaults", "greedy" or "temperature=0.7,top_p=0.95". Raises ValueError saying
    what was expected."""
    text = text.strip()
    if text in ("defaults", "default", "server", "model"):
        return Sampling()
    if text == "greedy":
        return Sampling(temperature=0.0)
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in SAMPLING_FIELDS:
            raise ValueError(f"{SAMPLING_SYNTAX}; {part!r} is not one of {', '.join(SAMPLING_FIELDS)}=VALUE")
        fields[name] = value.strip()
    if not fields:
        raise ValueError(SAMPLING_SYNTAX)
    try:
        return Sampling.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{first['loc'][0]}: {str(first['msg']).lower()}") from None


GREEDY_BEFORE = "temperature 0 (greedy): tuner's fixed choice when these levels were measured"


def describe_sampling(sampling: SamplingInForce | None) -> str:
    """A level's sampling in words; levels stored before sampling was recorded were all greedy."""
    return GREEDY_BEFORE if sampling is None else sampling.describe()
