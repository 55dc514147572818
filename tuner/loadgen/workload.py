"""What each request asks for: prompts of exact token length, unique per request, and the request body.

With a known vocabulary size the prompt is a list of random token ids (vLLM's /v1/completions takes token ids),
so the input length is exact and no two requests share a prefix by accident. Without one (any other server),
prompts are random words and the input length is whatever the server's `usage` reports.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
FIRST_ORDINARY_TOKEN = 16  # skip the low ids, where tokenizers keep their special tokens


@dataclass(frozen=True)
class Workload:
    model: str
    input_len: int
    output_len: int
    endpoint: str = "/v1/completions"
    vocab_size: int | None = None
    seed: int = 0

    @property
    def chat(self) -> bool:
        return self.endpoint.endswith("/chat/completions")


class PromptFactory:
    """Makes request bodies; request i of a run always gets the same prompt for a given seed."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._rng = random.Random(workload.seed)

    def body(self) -> bytes:
        w = self.workload
        common = {
            "model": w.model,
            "max_tokens": w.output_len,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if w.chat:
            body = {**common, "messages": [{"role": "user", "content": self._words()}]}
        else:
            body = {**common, "prompt": self._token_ids() if w.vocab_size and not w.chat else self._words()}
        return json.dumps(body, separators=(",", ":")).encode()

    def _token_ids(self) -> list[int]:
        assert self.workload.vocab_size
        hi = self.workload.vocab_size - 1
        return [self._rng.randint(FIRST_ORDINARY_TOKEN, hi) for _ in range(self.workload.input_len)]

    def _words(self) -> str:
        return " ".join(self._rng.choice(WORDS) for _ in range(self.workload.input_len))


def vocab_size_of(model: str) -> int | None:
    """The vocabulary size from a local model folder's config.json, if there is one."""
    config = Path(model) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    size = data.get("vocab_size") or data.get("text_config", {}).get("vocab_size")
    return int(size) if size else None
