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

The user's own traffic: `Workload.samples`, a weighted mix of request shapes (or a dataset file read by
tuner.load.dataset). Each request takes one sample, drawn by weight from an rng seeded with the workload's seed
(request i of a level always gets the same sample for a given seed), or, with `cycle`, sample i % len(samples)
(a soak that covers every shape). A sample with `prompt` sends that text as is (completions: "prompt", chat: the
message's content; the shared prefix is not added to it, and a text drawn twice is sent twice, so the server may
serve the second from its prefix cache, as `vllm bench serve` datasets do); a sample with only `input_len` gets a
generated prompt of exactly that many tokens, like the length ranges (ids, text or words; the shared prefix
included). Either way max_tokens is the sample's output_len.

Sampling (tuner.contracts.sampling): the workload's `sampling` fields are sent with every request; none set (the
default) sends none, so the server applies its own defaults, as `vllm bench serve` does. A sample's own sampling
(a request log's) is sent as given, over the workload's.
"""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Literal

from tuner.contracts.sampling import Sampling
from tuner.load.tokenizer import Tokenizer, vocab_size_in

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]
FIRST_ORDINARY_TOKEN = 16  # skip the low ids, where tokenizers keep their special tokens
UNIQUE_BLOCK = 16  # tokens at the start of each prompt's own part that are kept distinct across requests
PromptKind = Literal["ids", "text", "words"]
CHARS_PER_TOKEN = 4  # estimate of a text prompt's length when no tokenizer counted it (English text, BPE)
DESCRIBE_SHAPES = 4  # describe() lists the shapes of a mix up to this many, else gives the mean


@dataclass(frozen=True)
class Sample:
    """One request shape of the user's traffic."""
    output_len: int
    input_len: int | None = None  # tokens; None when `prompt` is given and its length is whatever the tokenizer says
    prompt: str | None = None  # the user's own text prompt (dataset), sent as is
    weight: float = 1.0
    sampling: Sampling | None = None  # this request's own sampling (a request log's), sent over the workload's

    def __post_init__(self) -> None:
        if isinstance(self.output_len, bool) or not isinstance(self.output_len, int) or self.output_len < 1:
            raise ValueError(f"Sample.output_len must be a positive integer, not {self.output_len!r}")
        if self.input_len is not None and (isinstance(self.input_len, bool) or not isinstance(self.input_len, int)
                                           or self.input_len < 1):
            raise ValueError(f"Sample.input_len must be a positive integer or None, not {self.input_len!r}")
        if self.prompt is None and self.input_len is None:
            raise ValueError("a Sample needs a prompt text or an input_len")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError(f"Sample.prompt must be text, not {type(self.prompt).__name__}")
        if not (isinstance(self.weight, (int, float)) and not isinstance(self.weight, bool)
                and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"Sample.weight must be a positive number, not {self.weight!r}")

    @property
    def estimated_input_len(self) -> int:
        """input_len when known (given, or counted by a tokenizer when the dataset was loaded); otherwise the
        prompt's characters / CHARS_PER_TOKEN (at least 1), a rough estimate for reports only."""
        if self.input_len is not None:
            return self.input_len
        return max(1, len(self.prompt or "") // CHARS_PER_TOKEN)


def _span(lo: int, hi: int | None) -> str:
    return f"{lo}–{hi}" if hi and hi != lo else str(lo)


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
    samples: tuple[Sample, ...] = ()  # the user's traffic: when given, replaces the input/output lengths above
    cycle: bool = False  # samples in order (i % len(samples)) instead of drawn by weight
    label: str = ""  # a name for describe(), e.g. the dataset's file name
    sampling: Sampling = Sampling()  # noqa: RUF009 (frozen, so one shared default is safe); sent with every request; nothing set: the server's defaults

    def __post_init__(self) -> None:
        if not isinstance(self.samples, tuple):  # a list would make the frozen dataclass unhashable
            object.__setattr__(self, "samples", tuple(self.samples))
        if not all(isinstance(s, Sample) for s in self.samples):
            raise ValueError("Workload.samples must hold Sample objects")

    @property
    def chat(self) -> bool:
        return self.endpoint.endswith("/chat/completions")

    def _sample_input_len(self, sample: Sample) -> int:
        """What the sample sends: a generated prompt is at least the shared prefix long; a text prompt is estimated
        when its length was not counted."""
        return max(sample.input_len, self.prefix_len) if sample.prompt is None and sample.input_len is not None \
            else sample.estimated_input_len

    @property
    def own_sampling(self) -> int:
        """How many of the traffic's samples carry sampling of their own."""
        return sum(1 for s in self.samples if s.sampling is not None)

    def _weights(self) -> list[float]:
        # In cycle mode every sample is sent equally often, whatever its weight.
        return [1.0 if self.cycle else s.weight for s in self.samples]

    def _mean(self, values: list[int]) -> int:
        weights = self._weights()
        return round(sum(w * v for w, v in zip(weights, values)) / sum(weights))

    @property
    def mean_input_len(self) -> int:
        """Mean prompt tokens per request: the middle of the range, or the weighted mean over samples (equal
        weights in cycle mode); a text sample whose length no tokenizer counted counts as len(prompt) // 4."""
        if self.samples:
            return self._mean([self._sample_input_len(s) for s in self.samples])
        return (self.input_len + (self.input_len_max or self.input_len)) // 2

    @property
    def mean_output_len(self) -> int:
        """Mean max_tokens per request: the middle of the range, or the weighted mean over samples."""
        if self.samples:
            return self._mean([s.output_len for s in self.samples])
        return (self.output_len + (self.output_len_max or self.output_len)) // 2

    def describe(self) -> str:
        """A short human label: "128→256 tokens", "64–512→128 tokens",
        "mix of 3 shapes (weights 50% 128→256, 30% 512→128, 20% 2048→64)", "cycle of 3 shapes (...)",
        "mix of 12 shapes, mean 412→198 tokens" (more than DESCRIBE_SHAPES), or with a label
        "dataset chats.jsonl: 200 samples, seed 0, mean 412→198 tokens"; a "~" marks an estimated input length."""
        prefix = f", {self.prefix_len}-token shared prefix" if self.prefix_len else ""
        if not self.samples:
            text = f"{_span(self.input_len, self.input_len_max)}→{_span(self.output_len, self.output_len_max)} tokens"
            return f"{self.label}: {text}{prefix}" if self.label else text + prefix
        estimated = "~" if any(s.prompt is not None and s.input_len is None for s in self.samples) else ""
        mean = f"mean {estimated}{self.mean_input_len}→{self.mean_output_len} tokens"
        order = ", in order" if self.cycle else ""
        n = len(self.samples)
        if self.label:
            return f"dataset {self.label}: {n} sample{'s' * (n != 1)}, seed {self.seed}{order}, {mean}{prefix}"
        if n == 1:
            return f"{self._shape(self.samples[0])} tokens{prefix}"
        if n > DESCRIBE_SHAPES:
            return f"{'cycle' if self.cycle else 'mix'} of {n} shapes, {mean}{prefix}"
        shapes = [self._shape(s) for s in self.samples]
        weights = [s.weight for s in self.samples]
        if self.cycle:
            return f"cycle of {n} shapes ({', '.join(shapes)}){prefix}"
        if len(set(weights)) == 1:
            return f"mix of {n} shapes (equal weights: {', '.join(shapes)}){prefix}"
        total = sum(weights)
        shares = ", ".join(f"{w / total:.0%} {shape}" for w, shape in zip(weights, shapes))
        return f"mix of {n} shapes (weights {shares}){prefix}"

    def _shape(self, sample: Sample) -> str:
        known = sample.prompt is None or sample.input_len is not None
        return f"{'' if known else '~'}{self._sample_input_len(sample)}→{sample.output_len}"

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
        generates = not w.samples or any(s.prompt is None for s in w.samples)  # only the user's texts: nothing to make
        if generates and self.kind == "ids" and not w.vocab_size:
            raise ValueError("token-id prompts need the vocabulary size")
        if generates and self.kind == "text" and tokenizer is None:
            raise ValueError("text prompts of exact length need a tokenizer")
        self._rng = random.Random(w.seed)
        # Samples are chosen by their own rng, so the choice for request i does not depend on the prompt kind.
        self._sample_rng = random.Random(f"samples-{w.seed}")
        self._cum_weights = list(itertools.accumulate(s.weight for s in w.samples))
        self._requests = 0
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

    def next_sample(self) -> Sample | None:
        """The sample of the next request (None without samples): drawn by weight, or the next in order."""
        w = self.workload
        if not w.samples:
            return None
        i = self._requests
        self._requests += 1
        if w.cycle:
            return w.samples[i % len(w.samples)]
        return w.samples[self._sample_rng.choices(range(len(w.samples)), cum_weights=self._cum_weights)[0]]

    def lengths(self) -> tuple[int, int]:
        """Input and output length of the next request drawn from the workload's ranges (samples not used)."""
        w = self.workload
        i = self._rng.randint(w.input_len, w.input_len_max) if w.input_len_max else w.input_len
        o = self._rng.randint(w.output_len, w.output_len_max) if w.output_len_max else w.output_len
        return max(i, w.prefix_len), o

    def body(self) -> bytes:
        w = self.workload
        sample = self.next_sample()
        if sample is None:
            input_len, output_len = self.lengths()
            prompt: list[int] | str = self.prompt(input_len)
        elif sample.prompt is not None:
            output_len, prompt = sample.output_len, sample.prompt
        else:
            output_len, prompt = sample.output_len, self.prompt(max(sample.input_len or 0, w.prefix_len))
        body: dict = {
            "model": w.model,
            "max_tokens": output_len,
            **w.sampling.params(),
            **(sample.sampling.params() if sample is not None and sample.sampling is not None else {}),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if w.ignore_eos:
            body["ignore_eos"] = True
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
