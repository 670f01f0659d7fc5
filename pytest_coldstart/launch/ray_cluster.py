"""A real multi-node Ray cluster on this machine: ``ray start --head`` plus ``ray start --address=...`` workers.

Every node is an owned ``ray start --block`` process (own session) on loopback,
with its own logical CPUs, a ``coldstart_replica_slot`` resource (one LLM
replica per node, so replicas land on different nodes), its own temp dir and
explicitly chosen free ports, so it never meets another Ray on the machine.
Tear-down stops each node's session, then sweeps anything whose command line
names this cluster's temp dir or GCS address, and says what (if anything) is left.

Written against Ray 2.60 (``ray start`` flags as in ``ray start --help`` there).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import ConfigError, LaunchError

#: One LLM replica per node: the scale-out bundles ask for one of these.
REPLICA_SLOT = "coldstart_replica_slot"
NODE_START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0
SWEEP_ROUNDS = 5
_STARTED_TEXT = "Ray runtime started"


@dataclass(frozen=True)
class NodeSpec:
    """One node: logical CPUs and the replica slots it offers."""

    num_cpus: int
    replica_slots: int = 1
    object_store_bytes: int = 200 * 1024 * 1024


@dataclass(frozen=True)
class ClusterSpec:
    """The head node (Serve controller, proxy and ingress live there too) and the workers."""

    head: NodeSpec = NodeSpec(num_cpus=6)
    workers: tuple[NodeSpec, ...] = (NodeSpec(num_cpus=4),)


def parse_nodes(value: str) -> ClusterSpec:
    """``"6,4"`` -> a head with 6 logical CPUs and one worker with 4 (one replica slot each)."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 2 for p in parts):
        raise ConfigError(f"ray nodes {value!r}: expected logical CPUs per node, head first, each >= 2, e.g. 6,4")
    nodes = [NodeSpec(num_cpus=int(p)) for p in parts]
    return ClusterSpec(head=nodes[0], workers=tuple(nodes[1:]))


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with what to do, if a Ray address does not accept TCP connections.

    ``ray.init(address=...)`` on an unreachable GCS retries for about a minute
    and then raises deep inside Ray (2.60); a plain connect says it in seconds.
    """
    if not address or address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ConfigError(f"Ray address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"Ray cluster address {address!r} is unreachable ({exc}); start the cluster "
                          "(`ray start --head --port PORT`) or drop --coldstart-ray-address to start a local Ray") from exc


@dataclass
class _Node:
    name: str
    process: OwnedProcess
    temp_dir: Path
    ports: dict[str, int] = field(default_factory=dict)


def _node_argv(ray_bin: str, spec: NodeSpec, temp_dir: Path, ports: Mapping[str, int], *,
               head_address: str | None) -> list[str]:
    argv = [ray_bin, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(spec.num_cpus),
            "--num-gpus", "0", "--resources", json.dumps({REPLICA_SLOT: spec.replica_slots}),
            "--object-store-memory", str(spec.object_store_bytes), "--temp-dir", str(temp_dir),
            "--disable-usage-stats"]
    if head_address is None:
        argv += ["--head", "--port", str(ports["gcs"]), "--include-dashboard", "false",
                 "--ray-client-server-port", str(ports["client"])]
    else:
        argv += ["--address", head_address]
    for flag in ("node-manager-port", "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
                 "dashboard-agent-grpc-port", "runtime-env-agent-port", "min-worker-port", "max-worker-port"):
        argv += [f"--{flag}", str(ports[flag])]
    return argv


#: Ports one node's workers may bind (Ray takes a range, ``--min-worker-port``..``--max-worker-port``).
WORKER_PORTS = 40
#: The lowest port handed to a node; Ray's own defaults sit below (client server 10001, workers 10002-19999).
LOWEST_PORT = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _port_pool() -> range:
    """Ports below the kernel's ephemeral range (where the OS picks ports for outgoing connections and
    ``bind(0)``), so no connection opened meanwhile takes a node's port or a worker block before Ray binds it;
    the whole ephemeral range where it leaves too little room below it."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - LOWEST_PORT >= 50 * WORKER_PORTS:
        return range(LOWEST_PORT, low)
    return range(low, high + 1)


def _node_ports(names: Sequence[str], taken: set[int], rng: random.Random) -> dict[str, int]:
    """Free ports for one node: each name's and a block of ``WORKER_PORTS`` for its workers, none of them in
    *taken* (the ports and worker blocks of the nodes before it), which this adds them to.

    All nodes share 127.0.0.1, and a worker block is only bound when Ray starts a worker, so the OS still calls
    those ports free: drawn independently, a node's object manager could land inside an earlier node's (or its
    own) worker block, and `ray start` refuses it ("Ray component worker_ports is trying to use a port number
    ... that is used by other components", Ray 2.60; seen on a 2-core runner).
    """
    pool = _port_pool()
    low, high = _worker_port_range(pool, taken, rng)
    taken.update(range(low, high + 1))
    ports: dict[str, int] = {}
    for _ in range(100 * len(names)):
        if len(ports) == len(names):
            break
        port = rng.randrange(pool.start, pool.stop)
        if port not in taken and _port_free(port):
            ports[names[len(ports)]] = port
            taken.add(port)
    else:
        raise LaunchError(f"too few free ports on 127.0.0.1 between {pool.start} and {pool.stop - 1} for a Ray node",
                          hint="stop other Ray clusters or servers on this machine and run again")
    ports["min-worker-port"], ports["max-worker-port"] = low, high
    return ports


def _worker_port_range(pool: range, taken: set[int], rng: random.Random) -> tuple[int, int]:
    """A block of ``WORKER_PORTS`` free ports in *pool*, none in *taken*, for one node's workers."""
    for _ in range(200):
        base = rng.randrange(pool.start, pool.stop - WORKER_PORTS)
        block = range(base, base + WORKER_PORTS)
        if taken.isdisjoint(block) and all(_port_free(p) for p in block):
            return block.start, block.stop - 1
    raise LaunchError(f"no block of {WORKER_PORTS} free ports for Ray workers on 127.0.0.1 between {pool.start} "
                      f"and {pool.stop - 1}", hint="stop other Ray clusters or servers on this machine and run again")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalRayCluster:
    """``with LocalRayCluster(spec, log_dir, clock) as cluster: cluster.address``"""

    def __init__(self, spec: ClusterSpec, log_dir: Path, clock: Clock, *, env: Mapping[str, str] | None = None,
                 ray_bin: str | None = None, start_timeout_s: float = NODE_START_TIMEOUT_S) -> None:
        self.spec = spec
        self.log_dir = log_dir
        self.clock = clock
        self.start_timeout_s = start_timeout_s
        self.ray_bin = ray_bin or shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        base = dict(os.environ if env is None else env)
        # Loopback only; token auth (default since Ray 2.5x) would tie joins to a
        # per-user token file shared with every other Ray user on the machine.
        base["RAY_AUTH_MODE"] = "disabled"
        base["RAY_USAGE_STATS_ENABLED"] = "0"
        base["RAY_DEDUP_LOGS"] = "0"
        self.env = base
        # Short: Ray's unix sockets live under it (108-byte path limit).
        self.root = Path(tempfile.mkdtemp(prefix="csray-", dir="/tmp"))
        self.nodes: list[_Node] = []
        self.address = ""
        self.leftover: list[str] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        names = ("gcs", "client", "node-manager-port", "object-manager-port", "metrics-export-port",
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
        taken: set[int] = set()
        rng = random.Random()
        for index, spec in enumerate((self.spec.head, *self.spec.workers)):
            ports = _node_ports(names, taken, rng)
            if index == 0:
                self.address = f"127.0.0.1:{ports['gcs']}"
            name = "head" if index == 0 else f"worker{index}"
            temp_dir = self.root / name
            temp_dir.mkdir()
            argv = _node_argv(self.ray_bin, spec, temp_dir, ports, head_address=None if index == 0 else self.address)
            process = OwnedProcess(argv, env=self.env, log_path=self.log_dir / f"ray-{name}.log", clock=self.clock)
            process.start()
            self.nodes.append(_Node(name, process, temp_dir, ports))
            self._wait_started(self.nodes[-1])

    def _wait_started(self, node: _Node) -> None:
        deadline = self.clock.monotonic_s() + self.start_timeout_s
        while self.clock.monotonic_s() < deadline:
            if any(_STARTED_TEXT in line.text for line in node.process.lines()):
                return
            code = node.process.poll()
            if code is not None:
                raise LaunchError(f"`ray start` for the {node.name} node exited with code {code}",
                                  log_tail=node.process.tail(30), log_path=str(node.process.log_path),
                                  exit_code=code, hint="see the node's log; a port taken meanwhile is retried by "
                                                       "running again")
            self.clock.sleep(0.5)
        raise LaunchError(f"the {node.name} node did not start within {self.start_timeout_s:.0f} s",
                          log_tail=node.process.tail(30), log_path=str(node.process.log_path),
                          hint="the machine may be overloaded; run again when it is quieter")

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def stop(self) -> list[str]:
        """Stop every node (workers first), sweep, and return what is still alive (ideally nothing)."""
        for node in reversed(self.nodes):
            # TERM to `ray start --block` stops the node's raylet/GCS/workers (Ray 2.60);
            # the group/session sweep catches what it left.
            node.process.stop(grace_s=STOP_GRACE_S)
        self.leftover = []
        for _ in range(SWEEP_ROUNDS):
            left = self.processes()
            if not left:
                break
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            time.sleep(1.0)
        self.leftover = [f"{p.pid} {' '.join(_cmdline(p))[:120]}" for p in self.processes()]
        if not self.leftover:
            shutil.rmtree(self.root, ignore_errors=True)
        return self.leftover

    def processes(self) -> list[psutil.Process]:
        """Live processes of this cluster: by node session, temp dir or GCS address in the command line."""
        marks = [str(self.root)] + ([self.address] if self.address else [])
        sessions = {node.process.pid for node in self.nodes}
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmd = " ".join(_cmdline(proc))
                if any(mark in cmd for mark in marks) or os.getsid(proc.pid) in sessions:
                    found[proc.pid] = proc
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@contextlib.contextmanager
def local_cluster(spec: ClusterSpec, log_dir: Path, clock: Clock, *, env: Mapping[str, str] | None = None,
                  ray_bin: str | None = None, start_timeout_s: float = NODE_START_TIMEOUT_S) -> Iterator[LocalRayCluster]:
    cluster = LocalRayCluster(spec, log_dir, clock, env=env, ray_bin=ray_bin, start_timeout_s=start_timeout_s)
    with cluster:
        yield cluster
