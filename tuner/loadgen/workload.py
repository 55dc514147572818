"""What each request asks for: prompts of exact token length, unique per request, and the request body.

Prompt kinds, best first:
  ids    random token ids sent as the prompt (vLLM's /v1/completions accepts them): exact length, no tokenizer
         needed beyond the vocabulary size
  text   random ids decoded to text with the model's tokenizer (or the server's /tokenize), re-encoded and trimmed
         until the text is exactly the target length (the chat endpoint needs text)
  words  no tokenizer at all: random words; the real input length is whatever the server's `usage` reports
Unique per request: the first block of each prompt's own part is never repeated, so no two requests share a
prefix by accident (prefix caching works in blocks). A shared prefix of `prefix_len` tokens is the same for
every request, on purpose, to measure prefix caching; `input_len` includes it.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Literal

from tuner.loadgen.tokenizer import Tokenizer, vocab_size_in

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
FIRST_ORDINARY_TOKEN = 16  # skip the low ids, where tokenizers keep their special tokens
UNIQUE_BLOCK = 16  # tokens at the start of each prompt's own part that are kept distinct across requests
PromptKind = Literal["ids", "text", "words"]


@dataclass(frozen=True)
class Workload:
    model: str
    input_len: int
    output_len: int
    endpoint: str = "/v1/completions"
    vocab_size: int | None = None
    seed: int = 0
    input_len_max: int | None = None  # lengths drawn uniformly from [input_len, input_len_max]
    output_len_max: int | None = None
    prefix_len: int = 0  # shared by every request, part of input_len
    ignore_eos: bool = True  # exact output lengths
    prompt_kind: PromptKind | None = None  # None: ids when possible, else text with a tokenizer, else words

    @property
    def chat(self) -> bool:
        return self.endpoint.endswith("/chat/completions")

    @property
    def mean_input_len(self) -> int:
        return (self.input_len + (self.input_len_max or self.input_len)) // 2

    @property
    def mean_output_len(self) -> int:
        return (self.output_len + (self.output_len_max or self.output_len)) // 2

    def kind(self, tokenizer: Tokenizer | None) -> PromptKind:
        if self.prompt_kind:
            return self.prompt_kind
        if self.vocab_size and not self.chat:
            return "ids"
        return "text" if tokenizer is not None else "words"


class PromptFactory:
    """Makes request bodies; request i of a run always gets the same prompt for a given seed."""

    def __init__(self, workload: Workload, tokenizer: Tokenizer | None = None) -> None:
        w = workload
        self.workload = w
        self.tokenizer = tokenizer
        self.kind = w.kind(tokenizer)
        if self.kind == "ids" and not w.vocab_size:
            raise ValueError("token-id prompts need the vocabulary size")
        if self.kind == "text" and tokenizer is None:
            raise ValueError("text prompts of exact length need a tokenizer")
        self._rng = random.Random(w.seed)
        # Without a vocabulary size, text prompts draw from the ids of a few words (26 tokenizer calls, once).
        self._word_ids = [tokenizer.encode(" " + word)[-1] for word in WORDS] \
            if self.kind == "text" and not w.vocab_size and tokenizer is not None else []
        self._seen_blocks: set[tuple] = set()
        prefix_rng = random.Random(f"prefix-{w.seed}")
        self._prefix = [self._token(prefix_rng) for _ in range(w.prefix_len)] if self.kind != "words" else \
            [prefix_rng.choice(WORDS) for _ in range(w.prefix_len)]

    def _token(self, rng: random.Random) -> int:
        if not self.workload.vocab_size:
            return rng.choice(self._word_ids)
        return rng.randint(FIRST_ORDINARY_TOKEN, self.workload.vocab_size - 1)

    def lengths(self) -> tuple[int, int]:
        w = self.workload
        i = self._rng.randint(w.input_len, w.input_len_max) if w.input_len_max else w.input_len
        o = self._rng.randint(w.output_len, w.output_len_max) if w.output_len_max else w.output_len
        return max(i, w.prefix_len), o

    def body(self) -> bytes:
        w = self.workload
        input_len, output_len = self.lengths()
        body: dict = {
            "model": w.model,
            "max_tokens": output_len,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if w.ignore_eos:
            body["ignore_eos"] = True
        prompt = self.prompt(input_len)
        if w.chat:
            text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = prompt
        return json.dumps(body, separators=(",", ":")).encode()

    def prompt(self, input_len: int) -> list[int] | str:
        own = input_len - self.workload.prefix_len
        if self.kind == "words":
            return " ".join([*self._prefix, *self._unique(own, lambda: self._rng.choice(WORDS))])
        ids = [*self._prefix, *self._unique(own, lambda: self._token(self._rng))]
        if self.kind == "ids":
            return ids
        return self._text_of_length(ids, input_len)

    def _unique(self, n: int, draw) -> list:
        for _ in range(100):
            part = [draw() for _ in range(n)]
            block = tuple(part[:UNIQUE_BLOCK])
            if block not in self._seen_blocks or n == 0:
                self._seen_blocks.add(block)
                return part
        return part  # tiny vocabularies and lengths: uniqueness cannot be had, keep the last draw

    def _text_of_length(self, ids: list[int], target: int) -> str:
        """Decode, re-encode, trim or extend until the text is `target` tokens (as vLLM's random dataset does)."""
        tok = self.tokenizer
        assert tok is not None
        text = tok.decode(ids)
        for _ in range(10):
            encoded = tok.encode(text)
            if len(encoded) == target:
                return text
            if len(encoded) > target:
                encoded = encoded[:target]
            else:
                encoded = encoded + [self._token(self._rng) for _ in range(target - len(encoded))]
            text = tok.decode(encoded)
        return text  # the closest reached; the server's usage reports the real length


def vocab_size_of(model: str) -> int | None:
    """The vocabulary size from a local model folder's config.json (or tokenizer.json), if there is one."""
    return vocab_size_in(model)
