"""A user's `vllm serve ...` command line, read the way a shell and vLLM would read it: the start of a study.

    VLLM_TPU_BUCKET_PADDING_GAP=256 vllm serve google/gemma-4-26B-A4B-it \\
        --tensor-parallel-size 4 --kv-cache-dtype fp8 --speculative-config '{"method": "ngram", ...}' ...

gives the server command (`vllm serve`, or `python -m vllm.entrypoints.openai.api_server`), the model (positional
or `--model`), the environment set in front of it, and every flag with its value: a flag followed by a word that is
not a flag takes it as its value, otherwise it is a switch (`true`); `--no-x` is `x: false`; `--x=value` works;
underscores read as dashes (vLLM's own parser accepts both); JSON values (`'{"image": 4}'`) are parsed. What is
not one command is refused with one line: a pipeline or list (`|`, `&&`, `;`, redirections), quotes left open, no
model, no `serve`.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import InputError

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1", "&>", "|&"}
_API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class ServeCommand:
    """One `vllm serve` invocation, taken apart."""

    command: tuple[str, ...]  # the argv prefix before the model and flags: ("vllm", "serve")
    model: str
    flags: dict[str, Any] = field(default_factory=dict)  # "--max-num-seqs" -> 256, in the order given
    env: dict[str, str] = field(default_factory=dict)  # VAR=value set in front of the command


def parse_serve_command(text: str, source: str = "--from-command") -> ServeCommand:
    """The command line as a shell would split it (backslash-newline continuations joined). InputError names
    `source` and what is wrong."""
    joined = re.sub(r"\\\r?\n", " ", text).strip()
    try:
        words = shlex.split(joined, comments=False, posix=True)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise InputError(source, "", f"not one shell command: {str(exc).lower()} (quotes left open?)") from None
    operators = [w for w in _shell_tokens(joined) if w in _SHELL_OPERATORS]
    if operators:
        raise InputError(source, "", f"a shell pipeline or list ({operators[0]!r}): give the `vllm serve ...` command"
                         " alone, without pipes, redirections or other commands")
    env: dict[str, str] = {}
    while words and _ENV_ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if words and words[0] == "env":  # `env VAR=1 vllm serve ...`
        words.pop(0)
        while words and _ENV_ASSIGNMENT.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
    command, rest = _split_command(words, source)
    model, flags = _model_and_flags(rest, source)
    return ServeCommand(command=command, model=model, flags=flags, env=env)


def _shell_tokens(text: str) -> list[str]:
    """Operators as the shell sees them (punctuation_chars), outside quotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return []


def _split_command(words: list[str], source: str) -> tuple[tuple[str, ...], list[str]]:
    if not words:
        raise InputError(source, "", "empty: give your `vllm serve MODEL --flag value ...` command")
    if "serve" in words and words.index("serve") <= 2 and words[0].rsplit("/", 1)[-1].startswith("vllm"):
        at = words.index("serve") + 1
        return tuple(words[:at]), words[at:]
    if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == _API_SERVER_MODULE:
        at = words.index("-m") + 2
        return tuple(words[:at]), words[at:]
    raise InputError(source, "", f"not a vLLM server command ({shlex.join(words[:3])} ...): expected `vllm serve"
                     f" MODEL ...` or `python -m {_API_SERVER_MODULE} --model MODEL ...`")


def _model_and_flags(words: list[str], source: str) -> tuple[str, dict[str, Any]]:
    model: str | None = None
    flags: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word == "-":
            if model is not None or flags:
                raise InputError(source, word, "a value without a flag (only the model may stand alone, right after"
                                 " `serve`)")
            model = word
            i += 1
            continue
        name, has_value, value = word.partition("=")
        if not name.startswith("--"):
            raise InputError(source, name, "short options are not read here: write the long form (e.g."
                             " --tensor-parallel-size, not -tp)")
        name = "--" + name[2:].replace("_", "-")
        if has_value:
            flags[name] = parse_value(value)
            i += 1
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            flags[name] = parse_value(words[i + 1])
            i += 2
        elif name.startswith("--no-"):
            flags["--" + name[5:]] = False
            i += 1
        else:
            flags[name] = True
            i += 1
    model = flags.pop("--model", None) or model
    if not model or model is True:
        raise InputError(source, "", "no model: write `vllm serve MODEL ...` or `--model MODEL`")
    return str(model), flags


def parse_value(text: str) -> Any:
    """A flag's value as a study file would hold it: JSON objects and lists parsed, integers and decimals as
    numbers, true/false as booleans, everything else as text."""
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+)([eE]-?\d+)?|-?\d+[eE]-?\d+", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text
