"""Token counting for exact prompt lengths: the model's own tokenizer, or the server's /tokenize.

The local tokenizer reads a tokenizer.json with the `tokenizers` library when that is installed (it is not a
dependency of tuner); the vocabulary size alone is read from the JSON files without any library, which is all
token-id prompts need.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import httpx

from tuner.errors import ServerGone, TokenizerUnavailable
from tuner.server.client import server_client


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


def vocab_size_of_config(config_json: str | Path) -> int | None:
    """`vocab_size` of a model's config.json (multimodal models keep it under text_config)."""
    try:
        data = json.loads(Path(config_json).read_text())
        size = data.get("vocab_size") or data.get("text_config", {}).get("vocab_size")
        return int(size) if size else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def vocab_size_in(folder: str | Path) -> int | None:
    """The vocabulary size from a model folder: config.json's vocab_size, else tokenizer.json's vocab."""
    folder = Path(folder)
    size = vocab_size_of_config(folder / "config.json")
    if size:
        return size
    try:
        data = json.loads((folder / "tokenizer.json").read_text())
        vocab = data.get("model", {}).get("vocab") or {}
        ids = list(vocab.values()) if isinstance(vocab, dict) else range(len(vocab))
        ids = [*ids, *(t.get("id", 0) for t in data.get("added_tokens", []))]
        return max(ids) + 1 if ids else None
    except (OSError, ValueError, AttributeError):
        return None


class LocalTokenizer:
    def __init__(self, folder: str | Path) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise TokenizerUnavailable("the `tokenizers` package is not installed") from None
        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise TokenizerUnavailable(f"no tokenizer.json in {folder}")
        self._tok = HFTokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)


class ServerTokenizer:
    """vLLM's /tokenize and /detokenize (special tokens off, so counts match the prompt text alone).

    A server that does not answer raises ServerGone (tuner.server.client), as does a 5xx: the server's outcome. A
    server that answers without these endpoints raises TokenizerUnavailable: the user's setup, not the server's
    fault nor tuner's."""

    def __init__(self, base_url: str, model: str, headers: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._client = server_client(30.0, headers, transport)
        probe = self._client.post(f"{self.base_url}/detokenize", json={"model": model, "tokens": [100]})
        if probe.status_code >= 500:
            raise ServerGone("POST /detokenize", f"error {probe.status_code}", probe.text[:200])
        if probe.status_code != 200 or "prompt" not in _json(probe):
            raise TokenizerUnavailable(
                f"{self.base_url}/detokenize answered {probe.status_code}: prompts of exact token length need the"
                " server's /tokenize and /detokenize (vLLM's), or the model's config.json (model_info.config_json)"
                " or a local model folder as `model`")

    def encode(self, text: str) -> list[int]:
        r = self._call("/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False})
        tokens = r["tokens"]
        if not isinstance(tokens, list):
            raise TokenizerUnavailable(f"{self.base_url}/tokenize answered without a token list")
        return [int(t) for t in tokens]

    def decode(self, ids: list[int]) -> str:
        return str(self._call("/detokenize", {"model": self.model, "tokens": ids})["prompt"])

    def _call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        r = self._client.post(f"{self.base_url}{path}", json=body)
        if r.status_code >= 500:
            raise ServerGone(f"POST {path}", f"error {r.status_code}", r.text[:200])
        if r.status_code != 200:
            raise TokenizerUnavailable(f"{self.base_url}{path} answered {r.status_code}: {r.text[:200]}")
        return _json(r)

    def close(self) -> None:
        self._client.close()


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
