"""Loading YAML files into pydantic models, with one-line errors that name the file and the key."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from tuner.errors import InputError

M = TypeVar("M", bound=pydantic.BaseModel)
_KEY_PREFIX = re.compile(r"^Value error, ([\w.\-]+): (.*)$", re.DOTALL)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(str(path), "", "file not found") from None
    except OSError as exc:
        raise InputError(str(path), "", f"cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(str(path), "", f"malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "", "expected a YAML mapping at the top level")
    return data


def validate(model: type[M], data: Any, source: str, context: dict[str, Any] | None = None) -> M:
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc, source) from None


def input_error_from(exc: pydantic.ValidationError, source: str) -> InputError:
    err = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in err["loc"])
    message = err["msg"]
    named = _KEY_PREFIX.match(message)
    if named:  # model-level validators name the key themselves: "Value error, parameters.x.condition: ..."
        key = f"{key}.{named.group(1)}" if key else named.group(1)
        message = "Value error, " + named.group(2)
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "input" in err and err["type"] not in ("missing",):
        message = f"{message} (got {err['input']!r})"
    return InputError(source, key, message)
