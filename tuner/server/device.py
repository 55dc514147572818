"""Who else holds accelerator memory: the evidence that tells "the config asks for too much" from "someone else is
using the device" when vLLM finds less free memory than it was told to take.

Only NVIDIA GPUs can be asked (nvidia-smi). CPU and TPU hosts have no such list: the answer there is None (unknown),
and the classifier decides from the log's numbers alone.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

_APPS_QUERY = ("nvidia-smi", "--query-compute-apps=pid,used_memory,gpu_uuid", "--format=csv,noheader,nounits")
_GPUS_QUERY = ("nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader")
_TIMEOUT_S = 10


@dataclass(frozen=True)
class DeviceUser:
    """A process holding memory on an accelerator."""
    pid: int
    used_gib: float | None  # None: the driver would not say ("[N/A]", e.g. in some containers)
    device: str = ""  # the GPU's UUID


def other_device_users(own_pgid: int | None, visible_devices: str | None = None) -> list[DeviceUser] | None:
    """Processes outside the server's own process group holding memory on the server's GPUs.

    `visible_devices`: the server's CUDA_VISIBLE_DEVICES (indices or UUIDs); None means every GPU is the server's.
    Returns None when this host cannot tell (no nvidia-smi, or it failed).
    """
    if shutil.which("nvidia-smi") is None:
        return None
    apps = _run(_APPS_QUERY)
    if apps is None:
        return None
    devices = _server_devices(visible_devices)
    return [user for user in parse_compute_apps(apps)
            if (devices is None or user.device in devices) and _belongs_to_another_group(user.pid, own_pgid)]


def parse_compute_apps(csv_text: str) -> list[DeviceUser]:
    """nvidia-smi's `--query-compute-apps=pid,used_memory,gpu_uuid --format=csv,noheader,nounits` (MiB)."""
    users = []
    for line in csv_text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 2 or not fields[0].isdigit():
            continue  # "No running processes found" and the like
        used = fields[1].removesuffix("MiB").strip()
        used_gib = float(used) / 1024 if used.replace(".", "", 1).isdigit() else None
        users.append(DeviceUser(int(fields[0]), used_gib, fields[2] if len(fields) > 2 else ""))
    return users


def _belongs_to_another_group(pid: int, own_pgid: int | None) -> bool:
    try:
        return os.getpgid(pid) != own_pgid
    except OSError:
        # Not visible from here: nvidia-smi in a container may report host PIDs, the server's own among them.
        # Only a process we can see to be someone else's counts as evidence.
        return False


def _server_devices(visible_devices: str | None) -> set[str] | None:
    """UUIDs of the GPUs the server could use (None: all of them, or the mapping could not be read)."""
    if visible_devices is None:
        return None
    wanted = [entry.strip() for entry in visible_devices.split(",") if entry.strip()]
    if all(entry.startswith(("GPU-", "MIG-")) for entry in wanted):
        return set(wanted)
    listing = _run(_GPUS_QUERY)
    if listing is None:
        return None
    uuid_by_index = {}
    for line in listing.splitlines():
        index, _, uuid = (part.strip() for part in line.partition(","))
        uuid_by_index[index] = uuid
    return {uuid_by_index.get(entry, entry) for entry in wanted}


def _run(argv: tuple[str, ...]) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
