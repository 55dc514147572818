"""A real multi-node Ray cluster on one machine, for tests: a head and worker nodes started with `ray start` as
separate processes, each in a session of its own and each advertising one `slice` (a custom resource standing in
for TPU or GPU), so a trial can only land where a slice is free.

Nothing here stops Ray by name (`ray stop` would end every Ray process on the machine, other users' too): every
node is ended through the session its `ray start --block` leads, and `leftovers()` says which of its processes
are still alive.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
SLICE = "slice"
START_TIMEOUT_S = 120  # a node starting on two busy cores takes 5-20 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after "(comm)": state ppid pgrp session ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry))
    return members


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class RayNode:
    """One `ray start --block` and everything it started: they share its session (its pid)."""

    name: str
    proc: subprocess.Popen
    log: Path
    head: bool

    @property
    def sid(self) -> int:
        return self.proc.pid

    def members(self) -> list[int]:
        return session_members(self.sid)

    def raylet(self) -> int | None:
        return next((p for p in self.members() if "/raylet" in cmdline(p).split(" ", 1)[0]), None)

    def started(self) -> bool:
        return "Ray runtime started" in self.log.read_text(errors="replace") if self.log.exists() else False

    def kill_raylet(self) -> int:
        """What a lost host looks like to the cluster: its raylet is gone at once (SIGKILL). Returns its pid."""
        raylet = self.raylet()
        assert raylet is not None, f"node {self.name} has no raylet"
        os.kill(raylet, signal.SIGKILL)
        return raylet

    def end(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the node's session (`ray start --block` stops its processes), then SIGKILL what remains."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for pid in self.members():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.2)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


@dataclass
class RayCluster:
    """`with RayCluster(workers=1) as cluster:` a head and `workers` worker nodes, one slice each."""

    workers: int = 1
    cpus_per_node: int = 1
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Short: Ray's unix socket paths live under the temp dir and must stay under ~107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Token authentication off: the cluster listens on 127.0.0.1 only, and its nodes and the tuner driver would
        # otherwise have to share a token file (a real cluster's is set up as docs/cluster.md says).
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)

    def __enter__(self) -> RayCluster:
        try:
            self._start("head", ["--head", "--port", str(self.port), "--include-dashboard=false",
                                 "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port())])
            for i in range(self.workers):
                self._start(f"worker{i + 1}", ["--address", self.address])
            self.wait_for_nodes(1 + self.workers)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    @property
    def worker_nodes(self) -> list[RayNode]:
        return self.nodes[1:]

    def _start(self, name: str, role: list[str]) -> RayNode:
        log = self.temp_dir / f"{name}.log"
        ports = {flag: free_port() for flag in ("--node-manager-port", "--object-manager-port",
                                                "--metrics-export-port", "--dashboard-agent-listen-port",
                                                "--dashboard-agent-grpc-port", "--runtime-env-agent-port")}
        argv = [RAY, "start", *role, "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus_per_node),
                "--resources", json.dumps({SLICE: 1}), "--temp-dir", str(self.temp_dir),
                "--object-store-memory", str(80 * 1024 * 1024), "--disable-usage-stats", "--block",
                *(x for flag, port in ports.items() for x in (flag, str(port)))]
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        node = RayNode(name, proc, log, head=name == "head")
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not node.started():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        return node

    def node_ids(self) -> dict[str, str]:
        """Node name (head, worker1, ...) -> Ray node id, from each raylet's command line."""
        ids = {}
        for node in self.nodes:
            raylet = node.raylet()
            args = cmdline(raylet).split() if raylet else []
            ids[node.name] = next((a.split("=", 1)[1] for a in args if a.startswith("--node_id=")), "")
        return ids

    def alive_nodes(self) -> dict[str, dict[str, float]]:
        """Node id -> resources of every node the cluster's GCS holds ALIVE."""
        from ray._raylet import GcsClient  # the GCS's own client: no driver needs to join the cluster to ask
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        infos = GcsClient(address=self.address).get_all_node_info(timeout=10)
        return {info.node_id.hex(): dict(info.resources_total) for info in infos.values()
                if info.state == GcsNodeInfo.GcsNodeState.ALIVE}

    def wait_for_nodes(self, count: int, timeout_s: float = START_TIMEOUT_S) -> dict[str, dict[str, float]]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                alive = self.alive_nodes()
            except Exception:  # the GCS still starting
                alive = {}
            if len(alive) == count:
                return alive
            if time.monotonic() > deadline:
                raise RuntimeError(f"expected {count} alive Ray nodes, found {len(alive)}")
            time.sleep(0.5)

    def node_of(self, pid: int) -> RayNode | None:
        """The node whose session holds `pid` or one of its ancestors (a Ray worker runs in its raylet's session;
        a trial's server runs in a session of its own under the worker)."""
        while pid > 1:
            fields = proc_stat(pid)
            if fields is None:
                return None
            for node in self.nodes:
                if int(fields[3]) == node.sid:
                    return node
            pid = int(fields[1])
        return None

    def leftovers(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.members()]

    def close(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head (and its GCS) last
            node.end()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
