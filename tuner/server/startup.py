"""Startup cost of a trial: load, compile and total time from the server log, and a warm or cold compile cache.

On TPU a trial's startup (weights plus XLA compilation of every bucket) can cost more than its measurement, so it
is recorded per trial. Every worker gets a persistent compile cache on its own disk (`VLLM_XLA_CACHE_PATH`),
shared by the trials it runs; comparing the cache directory before and after a launch says whether the trial
started warm (nothing new compiled), partial (some programs reused, some compiled) or cold (empty cache).

Log markers (vLLM 0.32; the TPU ones come from tpu-inference and are matched loosely, verify on a first run):
    "Starting to load model"                                   load starts
    "Loading weights took X seconds" / "Model loading took ... and X seconds"
    "torch.compile took X s in total" / "init engine (...) took X s (compilation: Y s)"   GPU/CPU compile
    "Compilation finished in X [secs]" / "... compil... took X s"                             XLA compile (summed)
    "Directly load the compiled graph(s) ... from the cache"   warm (torch.compile cache)
    "Compiling a graph for compile range"                      cold (torch.compile cache)
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from tuner.server.config import COMPILE_CACHE_ENV, ServerConfig, with_compile_cache

__all__ = ["COMPILE_CACHE_ENV", "with_compile_cache"]  # re-exported: the cache's env var is the config's (config)
CacheState = Literal["warm", "partial", "cold", "none", "unknown"]

_TS = re.compile(r"(?:INFO|WARNING|ERROR|DEBUG|CRITICAL)\s+(\d\d-\d\d \d\d:\d\d:\d\d)")
_LOAD_START = re.compile(r"Starting to load model")
_MODEL_LOADING = re.compile(r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) ?s")
_WEIGHTS = re.compile(r"Loading weights took ([\d.]+) ?s")
_TORCH_COMPILE = re.compile(r"torch\.compile (?:took|takes) ([\d.]+) ?s in total")
_INIT_ENGINE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s"
                          r"(?: \(compilation: ([\d.]+) ?s)?")
_XLA_COMPILE = re.compile(r"Compilation finished in ([\d.]+) ?\[?s|XLA compil\w* (?:took|finished in) ([\d.]+) ?s",
                          re.IGNORECASE)
_WARM = re.compile(r"Directly load the compiled graph")
_COLD = re.compile(r"Compiling a graph for compile range")
_READY = re.compile(r"Starting vLLM (?:API )?server|Application startup complete")


@dataclass(frozen=True)
class CacheSnapshot:
    path: str
    files: int
    bytes: int


def snapshot_cache(path: str | Path | None) -> CacheSnapshot | None:
    """Count the files in a compile cache directory (None when no cache is configured)."""
    if path is None:
        return None
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(root, name))
                files += 1
            except OSError:  # a file written or removed while walking
                continue
    return CacheSnapshot(str(path), files, size)


@dataclass(frozen=True)
class StartupPhases:
    load_s: float | None = None
    compile_s: float | None = None
    compile_source: str = ""  # which marker gave compile_s
    init_engine_s: float | None = None
    total_s: float | None = None
    compile_cache: CacheState = "unknown"
    cache_files_before: int | None = None
    cache_files_after: int | None = None

    def as_attrs(self) -> dict[str, object]:
        """Trial attributes, prefixed so they sort together in the dashboard."""
        return {f"startup_{k}": v for k, v in asdict(self).items()}


def _timestamps(lines: list[str]) -> list[tuple[int, float]]:
    """(line index, seconds) of timestamped lines; vLLM logs month-day and time without a year."""
    out: list[tuple[int, float]] = []
    last = None
    day_offset = 0.0
    for i, line in enumerate(lines):
        m = _TS.search(line)
        if not m:
            continue
        t = datetime.strptime("2000-" + m.group(1), "%Y-%m-%d %H:%M:%S")
        seconds = t.timestamp() + day_offset
        if last is not None and seconds < last - 3600:  # past New Year's Eve: month-day wrapped
            day_offset += 366 * 86400
            seconds += 366 * 86400
        last = seconds
        out.append((i, seconds))
    return out


def _time_at(stamps: list[tuple[int, float]], index: int) -> float | None:
    """The timestamp of the line at `index`, or of the nearest timestamped line before it."""
    best = None
    for i, t in stamps:
        if i > index:
            break
        best = t
    return best


def parse_startup(log_text: str, measured_total_s: float | None = None,
                  before: CacheSnapshot | None = None, after: CacheSnapshot | None = None) -> StartupPhases:
    lines = log_text.splitlines()
    stamps = _timestamps(lines)
    load_s = compile_s = init_s = None
    source = ""
    xla_total = 0.0
    load_start = load_end = ready = None
    warm = cold = False
    for i, line in enumerate(lines):
        if load_start is None and _LOAD_START.search(line):
            load_start = i
        if (m := _MODEL_LOADING.search(line)) or ((m := _WEIGHTS.search(line)) and load_s is None):
            load_s, load_end = float(m.group(1)), i
        if m := _TORCH_COMPILE.search(line):
            compile_s, source = float(m.group(1)), "torch.compile"
        if m := _INIT_ENGINE.search(line):
            init_s = float(m.group(1))
            if m.group(2) and compile_s is None:
                compile_s, source = float(m.group(2)), "init engine (compilation)"
        if m := _XLA_COMPILE.search(line):
            xla_total += float(m.group(1) or m.group(2))
        if _READY.search(line):
            ready = i
        warm = warm or bool(_WARM.search(line))
        cold = cold or bool(_COLD.search(line))
    if xla_total and compile_s is None:
        compile_s, source = xla_total, "xla"
    if compile_s is None and init_s is not None:
        # TPU backends compile every bucket while warming up; without a compile marker, engine init is the bound.
        compile_s, source = init_s, "init engine (upper bound)"
    # Loading spans more than reading weights (sharding, device transfer): prefer the wall time between markers.
    if load_start is not None and load_end is not None:
        t0, t1 = _time_at(stamps, load_start), _time_at(stamps, load_end)
        if t0 is not None and t1 is not None and t1 - t0 > (load_s or 0):
            load_s = t1 - t0
    total = measured_total_s
    if total is None and stamps and ready is not None:
        t_ready = _time_at(stamps, ready)
        total = None if t_ready is None else t_ready - stamps[0][1]
    return StartupPhases(load_s=load_s, compile_s=compile_s, compile_source=source, init_engine_s=init_s,
                         total_s=total, compile_cache=cache_state(before, after, warm, cold),
                         cache_files_before=before.files if before else None,
                         cache_files_after=after.files if after else None)


def cache_state(before: CacheSnapshot | None, after: CacheSnapshot | None, warm_marker: bool = False,
                cold_marker: bool = False) -> CacheState:
    """Warm: programs came from the cache and nothing new was compiled. Cold: the cache was empty (or absent)."""
    if warm_marker and cold_marker:
        return "partial"
    if warm_marker:
        return "warm"
    if before is None or after is None:
        return "cold" if cold_marker else "unknown"
    if before.files == 0:
        return "cold"
    return "warm" if after.files <= before.files and not cold_marker else "partial"


def compile_cache_dir_of(config: ServerConfig) -> str | None:
    return config.env.get(COMPILE_CACHE_ENV)


def prepare_compile_cache(config: ServerConfig) -> CacheSnapshot | None:
    """On the worker, before launch: create the config's compile cache directory and count what it holds."""
    cache_dir = compile_cache_dir_of(config)
    if cache_dir is None:
        return None
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the server reports an unusable cache itself; the snapshot then counts nothing
    return snapshot_cache(cache_dir)


def startup_attrs(config: ServerConfig, log_text: str, measured_total_s: float | None,
                  before: CacheSnapshot | None) -> dict[str, object]:
    """On the worker, after the server stopped: the trial's startup phases as `startup_*` attributes."""
    after = snapshot_cache(compile_cache_dir_of(config)) if before is not None else None
    return parse_startup(log_text, measured_total_s, before, after).as_attrs()
