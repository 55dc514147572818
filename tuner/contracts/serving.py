"""The serving knobs tuner reads back from a config's flags, typed: one place that knows the flag names and value
forms (`vllm serve --config` keys, as a ServerConfig holds them), instead of each stage reading strings."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


@dataclass(frozen=True)
class ServingFlags:
    """None: the flag is absent, and vLLM's default applies."""

    max_num_seqs: int | None = None
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str = "auto"
    speculative_config: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, flags: Mapping[str, Any]) -> ServingFlags:
        spec = flags.get("--speculative-config")
        return cls(max_num_seqs=_int(flags.get("--max-num-seqs")), max_model_len=_int(flags.get("--max-model-len")),
                   max_num_batched_tokens=_int(flags.get("--max-num-batched-tokens")),
                   kv_cache_dtype=str(flags.get("--kv-cache-dtype") or "auto"),
                   speculative_config=spec if isinstance(spec, Mapping) else None)

    @property
    def draft_tokens(self) -> int:
        """num_speculative_tokens of --speculative-config; 0 without speculation."""
        return int(self.speculative_config.get("num_speculative_tokens") or 0) if self.speculative_config else 0
