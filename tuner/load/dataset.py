"""The user's own traffic from a file: request shapes or prompts, read into `Sample`s for `Workload.samples`.

A file is either JSON Lines (one JSON object per line; blank lines are skipped) or one JSON array of the same
objects (the ShareGPT file `vllm bench serve --dataset-name sharegpt` uses, ShareGPT_V3_unfiltered_cleaned_split.json,
is one). Each object is recognised by its keys, so one file may mix them:

1. Lengths:  {"input_len": 512, "output_len": 128}
   A generated prompt of exactly input_len tokens, max_tokens=output_len.
2. Prompts:  {"prompt": "...", "output_len": 128}   ("output_tokens" also works: vllm bench serve's custom format)
   The text is sent as is. "output_len" may be left out when a "completion" (or "output") text is given and a
   tokenizer is (output_len = its token count). input_len = the prompt's token count when a tokenizer is given,
   else an explicit "input_len" if there is one, else unknown (reports estimate it as characters / 4).
3. Conversations (ShareGPT):
       {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}, ...]}
   "from" may also be "user"/"assistant", and "messages" with "role"/"content" is read the same way. The prompt is
   the first human/user turn; output_len is the token count of the assistant turn after it (so a tokenizer is
   needed, unless the object gives an explicit "output_len"). As `vllm bench serve` does, conversations with fewer
   than 2 turns are skipped (so are those with no assistant turn after the first human one), and so are prompts or
   outputs shorter than 4 tokens (a prompt nobody counted is measured as characters / 4). Unlike vLLM's sharegpt
   sampling, long conversations (prompt > 1024 or prompt + output > 2048 tokens) are kept: they are the user's
   traffic, and the server's max_model_len is the study's business.

Every object may carry a "weight" (a positive number, default 1): how often it is drawn relative to the others.

Every object may carry its own sampling, as OpenAI-style request logs do: "temperature", "top_p", "top_k",
"min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed" at the top level (the request body's
own keys). They are sent with that request as given, over the study's `load.sampling`.

Sampling: with `limit` smaller than the number of usable entries, `limit` of them are taken at random with
random.Random(seed): the same file and seed give the same samples, returned in file order. Entries are visited in
that random order and counted with the tokenizer only until `limit` usable ones are found, so a large ShareGPT file
costs `limit`-and-a-few tokenizer calls, not one per conversation.

Bad input raises tuner.errors.InputError(path, "line N" (or "entry N" in a JSON array file), what was expected):
a missing or unreadable file, malformed JSON, an object of none of the formats, a non-positive length or weight, a
conversation whose output cannot be counted without a tokenizer, or no usable entry at all (key "").
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuner.contracts.sampling import SAMPLING_FIELDS, Sampling
from tuner.errors import InputError
from tuner.load.workload import CHARS_PER_TOKEN, Sample

MIN_TOKENS = 4  # vLLM's sharegpt filter: prompts or outputs shorter than this are dropped
HUMAN_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "chatgpt", "bard", "bing", "model"}
FORMATS = ('one of {"input_len": N, "output_len": N}, {"prompt": "...", "output_len": N} or'
           ' {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}')

CountTokens = Callable[[str], int]


@dataclass
class _Entry:
    """One object of the file, checked for its structure; tokens are counted later (only for entries taken)."""
    where: str
    prompt: str | None = None
    input_len: int | None = None
    output_len: int | None = None
    output_text: str | None = None
    weight: float = 1.0
    conversation: bool = False
    sampling: Sampling | None = None


def load_dataset(path: Path, limit: int | None = None, seed: int = 0,
                 count_tokens: Callable[[str], int] | None = None) -> tuple[Sample, ...]:
    """The usable entries of a dataset file as Samples (see the module docstring), at most `limit` of them."""
    path = Path(path)
    source = str(path)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(source, "", f"the dataset limit must be a positive number of samples, not {limit!r}")
    entries = [_parse(obj, where, source, count_tokens) for where, obj in _objects(path)]
    if not entries:
        raise InputError(source, "", f"no entries: expected JSON Lines or a JSON array of objects, {FORMATS}")
    order = list(range(len(entries)))
    if limit is not None and limit < len(entries):
        random.Random(seed).shuffle(order)
    taken: list[tuple[int, Sample]] = []
    skipped = 0
    for i in order:
        if limit is not None and len(taken) >= limit:
            break
        sample = _resolve(entries[i], source, count_tokens)
        if sample is None:
            skipped += 1
        else:
            taken.append((i, sample))
    if not taken:
        raise InputError(source, "", f"no usable entries: all {skipped} conversations were skipped (fewer than 2"
                                     f" turns, no assistant reply, or a prompt or reply shorter than {MIN_TOKENS}"
                                     " tokens)")
    return tuple(sample for _, sample in sorted(taken, key=lambda t: t[0]))


def _objects(path: Path) -> list[tuple[str, Any]]:
    """(where, decoded JSON value) for each line of a JSONL file, or each element of a JSON array file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(source, "", "no such dataset file") from None
    except IsADirectoryError:
        raise InputError(source, "", "a dataset file, not a directory") from None
    except UnicodeDecodeError as exc:
        raise InputError(source, "", f"UTF-8 text (byte {exc.start} is not)") from None
    except OSError as exc:
        raise InputError(source, "", f"a readable dataset file ({exc.strerror or exc})") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(source, f"line {exc.lineno}", f"a valid JSON array ({exc.msg})") from None
        if not isinstance(data, list):
            raise InputError(source, "", "a JSON array of objects")
        return [(f"entry {n}", obj) for n, obj in enumerate(data, 1)]
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            objects.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(source, f"line {n}", f"one JSON object per line (JSON Lines) or one JSON array of"
                                                  f" objects; this line is not valid JSON ({exc.msg})") from None
    return objects


def _positive_int(obj: dict, key: str, source: str, where: str) -> int | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(source, where, f'"{key}" must be a positive whole number of tokens, not {obj[key]!r}')
    return value


def _weight(obj: dict, source: str, where: str) -> float:
    value = obj.get("weight", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(source, where, f'"weight" must be a positive number, not {value!r}')
    return float(value)


def _sampling(obj: dict, source: str, where: str) -> Sampling | None:
    """The request's own sampling fields, if it has any."""
    given = {key: obj[key] for key in SAMPLING_FIELDS if obj.get(key) is not None}
    if not given:
        return None
    try:
        return Sampling(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = error["loc"][0] if error["loc"] else ""
        raise InputError(source, where, f'"{key}": {error["msg"].lower()}, not {given.get(str(key))!r}') from None


def _text(obj: dict, key: str, source: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(source, where, f'"{key}" must be text, not {type(value).__name__}')
    return value


def _parse(obj: Any, where: str, source: str, count_tokens: CountTokens | None) -> _Entry:
    if not isinstance(obj, dict):
        raise InputError(source, where, f"a JSON object, {FORMATS}; not {type(obj).__name__}")
    # "output_tokens" is what `vllm bench serve --dataset-name custom` reads: one file serves both tools.
    output_key = "output_len" if "output_len" in obj else "output_tokens"
    entry = _Entry(where, weight=_weight(obj, source, where),
                   output_len=_positive_int(obj, output_key, source, where), sampling=_sampling(obj, source, where))
    if "conversations" in obj or "messages" in obj:
        return _parse_conversation(obj, entry, source, count_tokens)
    if "prompt" in obj:
        prompt = _text(obj, "prompt", source, where)
        if not prompt:
            raise InputError(source, where, '"prompt" must be a non-empty text')
        entry.prompt = prompt
        entry.input_len = _positive_int(obj, "input_len", source, where)
        if entry.output_len is None:
            entry.output_text = _text(obj, "completion", source, where) or _text(obj, "output", source, where)
            if entry.output_text is None:
                raise InputError(source, where, 'a prompt needs "output_len", or a "completion" text and a tokenizer'
                                                " to count it")
            if count_tokens is None:
                raise InputError(source, where, 'counting the "completion" text needs a tokenizer; give'
                                                ' "output_len" instead, or the model\'s tokenizer')
        return entry
    if "input_len" in obj:
        entry.input_len = _positive_int(obj, "input_len", source, where)
        if entry.output_len is None:
            raise InputError(source, where, '"output_len" next to "input_len"')
        return entry
    raise InputError(source, where, f"{FORMATS}; found keys {sorted(obj)[:6]}")


def _parse_conversation(obj: dict, entry: _Entry, source: str, count_tokens: CountTokens | None) -> _Entry:
    where = entry.where
    key = "conversations" if "conversations" in obj else "messages"
    turns = obj[key]
    if not isinstance(turns, list):
        raise InputError(source, where, f'"{key}" must be a list of turns')
    roles_texts = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise InputError(source, where, f'each turn of "{key}" must be an object like {{"from": "human",'
                                            ' "value": "..."} or {"role": "user", "content": "..."}')
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if not isinstance(role, str) or not isinstance(text, str):
            raise InputError(source, where, 'each turn needs a "from" (or "role") and a "value" (or "content") text')
        roles_texts.append((role.lower(), text))
    entry.conversation = True
    if len(roles_texts) < 2:
        return entry  # skipped later, as vllm bench serve does
    human = next((i for i, (role, _) in enumerate(roles_texts) if role in HUMAN_ROLES), None)
    if human is None:
        return entry
    reply = next((text for role, text in roles_texts[human + 1:] if role in ASSISTANT_ROLES), None)
    entry.prompt = roles_texts[human][1]
    entry.output_text = reply
    if reply is not None and entry.output_len is None and count_tokens is None:
        raise InputError(source, where, "counting the assistant turn's tokens (the output length) needs a tokenizer;"
                                        ' give the model\'s tokenizer, or an "output_len" in each conversation')
    return entry


def _resolve(entry: _Entry, source: str, count_tokens: CountTokens | None) -> Sample | None:
    """The entry's Sample, its tokens counted; None when a conversation is skipped."""
    if entry.conversation and (entry.prompt is None or entry.output_text is None):
        return None
    input_len = entry.input_len
    if entry.prompt is not None and count_tokens is not None:
        input_len = count_tokens(entry.prompt)
    output_len = entry.output_len
    if output_len is None and entry.output_text is not None and count_tokens is not None:
        output_len = count_tokens(entry.output_text)
    if entry.conversation:
        prompt_len = input_len if input_len is not None else len(entry.prompt or "") // CHARS_PER_TOKEN
        if prompt_len < MIN_TOKENS or (output_len or 0) < MIN_TOKENS:
            return None
    if output_len is None or output_len < 1:
        raise InputError(source, entry.where, "an output of at least 1 token (the completion text counts 0)")
    if input_len is not None and input_len < 1:
        if entry.prompt is None:
            raise InputError(source, entry.where, '"input_len" must be a positive whole number of tokens')
        input_len = None  # a prompt the tokenizer counts as 0 tokens (whitespace): sent as is, length unknown
    return Sample(output_len=output_len, input_len=input_len, prompt=entry.prompt, weight=entry.weight,
                  sampling=entry.sampling)
