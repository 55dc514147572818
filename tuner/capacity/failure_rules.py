"""What a measured failure says about configs not yet launched: monotone rules, applied before a launch.

kv_capacity: vLLM refuses to start when one request of max-model-len L does not fit the KV cache it has left after
the weights and the profiling run. A config that asks for at least L tokens with no more KV memory cannot fit
either, so it is recorded as predicted kv_capacity (marked predicted, never as measured) instead of launched.
"No more KV memory" is read off the server flags, every other flag and env var being equal:
  - --gpu-memory-utilization, --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE the same or lower (less memory);
  - --max-num-batched-tokens, --max-num-seqs the same or higher (a larger profiling run leaves less for the cache).
A flag on one side only (the server's default on the other) never compares: no rule is drawn from it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tuner.contracts.outcomes import FailureClass

LENGTH = "--max-model-len"
MORE_IS_MORE_KV = ("--gpu-memory-utilization", "--kv-cache-memory-bytes", "VLLM_CPU_KVCACHE_SPACE")
MORE_IS_LESS_KV = ("--max-num-batched-tokens", "--max-num-seqs")


@dataclass(frozen=True)
class KnownFailure:
    """A launched trial that failed kv_capacity, with the exact flags and env it ran with."""

    number: int
    flags: Mapping[str, Any]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Predicted:
    failure_class: FailureClass
    learned_from: int
    detail: str


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _at_most(new: Any, old: Any) -> bool:
    a, b = _number(new), _number(old)
    return a is not None and b is not None and a <= b


def _settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    return {**flags, **env}


def cannot_fit_either(flags: Mapping[str, Any], env: Mapping[str, str], failed: KnownFailure) -> bool:
    """True when this config asks for at least the failed one's max-model-len with no more KV memory."""
    new, old = _settings(flags, env), _settings(failed.flags, failed.env)
    if LENGTH not in new or LENGTH not in old or not _at_most(old[LENGTH], new[LENGTH]):
        return False
    for key in set(new) | set(old):
        if key == LENGTH:
            continue
        if (key in new) != (key in old):
            return False
        if key in MORE_IS_MORE_KV:
            if not _at_most(new[key], old[key]):
                return False
        elif key in MORE_IS_LESS_KV:
            if not _at_most(old[key], new[key]):
                return False
        elif str(new[key]) != str(old[key]):
            return False
    return True


def predict_kv_capacity(flags: Mapping[str, Any], env: Mapping[str, str],
                        failures: Iterable[KnownFailure]) -> Predicted | None:
    """The first measured kv_capacity failure that rules this config out, as a prediction; None: launch it."""
    for failed in failures:
        if cannot_fit_either(flags, env, failed):
            return Predicted(FailureClass.KV_CAPACITY, failed.number,
                             f"predicted kv_capacity, not launched: trial {failed.number} failed kv_capacity at"
                             f" {LENGTH} {failed.flags[LENGTH]} with at least this much KV memory; this config asks"
                             f" for {flags[LENGTH]}")
    return None
