"""A real multi-node Docker Swarm on one machine, for tests (field notes §10).

Each node is a `dockerd` of its own, started with ``nsenter --net=/run/netns/<node>`` (never
``ip netns exec``, which remounts /sys and hides the cgroup tree from dockerd) in a network
namespace of its own, with its own UTS namespace (so every node has its own hostname: ``docker
node ls`` and ``docker service ps`` tell them apart), data root, exec root, socket, pid file,
containerd (managed by that dockerd, in a containerd namespace of its own) and cgroup parent. The
nodes' ``eth0`` are veth pairs whose other ends sit on a bridge in yet another namespace; their
addresses (10.213.K.N/24) exist only inside those namespaces. Nothing is created in the host's
network namespace, no host iptables rule is touched, and the main engine is never a swarm node.

Per swarm, names are unique (``wsw<6 hex>``: namespaces ``wsw…-br``, ``wsw…-n1``…, cgroups
``/wsw…-n1``…, directories ``/run/watcher-swarm/wsw…`` and ``/var/tmp/watcher-swarm/wsw…``), and
so are the node subnet (10.213.K.0/24) and the swarm's default address pool, so swarms of two
xdist workers live side by side. ``owner.json`` in the run directory names the process that made
the swarm (pid and start time); every start first removes what swarms of dead owners left (a
killed run), and `leftovers` lists whatever of a swarm remains (a test asserts it is nothing).

Images reach the nodes through a registry (Debian's docker-registry) running in node 1's
namespace at ``<node 1>:5000``: `Swarm.push` copies an image of the main engine there (``docker
save`` | ``docker -H <node 1> load``, ``tag``, ``push``), so services can be pinned by digest.

The edge: a Caddy container (tests/harness/images.py `build_caddy_image`) on node 1, attached to
an attachable overlay network, its Caddyfile and run directory (route files, the admin socket)
bind-mounted from the host, its port published on node 1's loopback and address (with
``--bridge=none`` Docker attaches the container to ``docker_gwbridge`` inside the node's
namespace, and docker-proxy serves the published ports). The load generator
(tests/harness/load.py, loopback targets only) runs in node 1's namespace against
``http://127.0.0.1:<port>``, or with ``direct=True`` in the edge container's own namespace
against Caddy's :80: see `Swarm.start_load`.

Measured on the 2-core CI machine: a 3-node swarm is up (Ready nodes, registry, edge network)
in 1.5-2.5 s and gone in 2-4 s; a 1-node swarm in about 1.2 s and 1.8 s. A worker cut off with
`Node.link` is Down after ~12 s at Docker's default heartbeat (~2.8 s with
``dispatcher_heartbeat="1s"``), its task re-placed after ~18 s (~8 s).

Swarm services must use ``--endpoint-mode dnsrr`` (this kernel has no IPVS: VIPs time out), and
Caddy reaches them as ``dynamic a tasks.<service> <port>``.

CLI: ``python -m tests.harness.swarm sweep|leftovers|measure [--nodes N]``.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness.leftovers import machine_lock, process_started

REPO = Path(__file__).resolve().parents[2]
RUN_ROOT = Path("/run/watcher-swarm")  # small: owner files, sockets, exec roots
DATA_ROOT = Path("/var/tmp/watcher-swarm")  # large: data roots, the registry's storage
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ID_RE = re.compile(r"wsw[0-9a-f]{6}")
SUBNETS = range(1, 64)  # K of 10.213.K.0/24; K also picks the swarm's default address pool
REGISTRY_PORT = 5000
EDGE_PORT = 8080
DEFAULT_EDGE_NETWORK = "watcher-edge"
#: At most this many swarms run on the machine at once (CPU: ~8 s of dockerd start per node).
MAX_SWARMS = int(os.environ.get("WATCHER_SWARM_MAX", "2"))
TOOLS = ("nsenter", "ip", "dockerd", "docker", "docker-registry", "curl", "umount")

# Runs as `python -I -S -c WRAPPER <cgroup.procs> <hostname> argv...`: joins the swarm's tracking
# cgroup (so everything it starts, containerd and its shims included, can be found and killed),
# enters a UTS namespace of its own with that hostname (if not empty), then execs argv (nsenter).
WRAPPER = r"""
import ctypes, os, sys
procs, hostname, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(procs, "w") as f:
    f.write(str(os.getpid()))
if hostname:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x04000000) != 0:  # CLONE_NEWUTS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    name = hostname.encode()
    if libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), "sethostname")
os.execvp(argv[0], argv)
"""


class SwarmError(RuntimeError):
    """The swarm could not be set up or torn down as asked."""


def missing_tools() -> list[str]:
    """What this machine lacks to run a swarm (empty when all is there)."""
    missing = [f"{tool} (not on PATH)" for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (network namespaces, cgroups and dockerd need it)")
    if _tracking_hierarchy() is None:
        missing.append("a writable cgroup hierarchy under /sys/fs/cgroup")
    return missing


# ---------------------------------------------------------------------------------- processes


def _run(
    argv: Sequence[str], *, timeout: float = 60, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise SwarmError(f"{' '.join(argv)} exited {out.returncode}: {(out.stderr or out.stdout).strip()}")
    return out


def _docker_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(name, None)
    return env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes_of(swarm_id: str) -> list[int]:
    """Processes whose command line or cgroup names the swarm (dockerd, containerd, shims, the
    registry, docker-proxy, the containers' processes)."""
    me = os.getpid()
    marks = (f"/watcher-swarm/{swarm_id}", f"/run/netns/{swarm_id}-")
    return [
        pid
        for pid in _pids()
        if pid != me
        and (
            any(mark in _read(f"/proc/{pid}/cmdline") for mark in marks)
            or f"/{swarm_id}-" in _read(f"/proc/{pid}/cgroup")
        )
        and _alive(pid)
    ]


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# ------------------------------------------------------------------------------------ cgroups


def _tracking_hierarchy() -> Path | None:
    """The cgroup hierarchy the swarm's daemons are tracked in: v1 `pids`, else the v2 root."""
    for candidate in (CGROUP_ROOT / "pids", CGROUP_ROOT):
        if (candidate / "cgroup.procs").exists() and os.access(candidate, os.W_OK):
            return candidate
    return None


def _hierarchies() -> list[Path]:
    found = [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.procs").exists() else []
    with contextlib.suppress(OSError):
        found += [p for p in CGROUP_ROOT.iterdir() if (p / "cgroup.procs").exists()]
    return found


def _cgroup_dirs(swarm_id: str) -> list[Path]:
    """Top-level cgroup directories of the swarm, in every hierarchy."""
    return [d for h in _hierarchies() for d in h.glob(f"{swarm_id}-*") if d.is_dir()]


def _remove_cgroup(top: Path, timeout: float = 5) -> bool:
    """rmdir ``top`` and its children, deepest first; True when it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        if not top.exists() or time.monotonic() > deadline:
            return not top.exists()
        time.sleep(0.1)


# ------------------------------------------------------------------------------ names and state


def _mounts_of(swarm_id: str) -> list[str]:
    """Mount points (host mount namespace) that belong to the swarm, deepest first."""
    points = []
    for line in _read("/proc/self/mounts").splitlines():
        parts = line.split()
        if len(parts) > 1:
            point = parts[1].encode().decode("unicode_escape")
            if swarm_id in point:
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _netns_of(swarm_id: str) -> list[str]:
    with contextlib.suppress(OSError):
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{swarm_id}-"))
    return []


def leftovers(swarm_id: str) -> list[str]:
    """Whatever of the swarm ``swarm_id`` still exists: namespaces, mounts, processes, cgroup
    directories, directories. Empty after a clean teardown."""
    found = [f"netns {name}" for name in _netns_of(swarm_id)]
    found += [f"mount {point}" for point in _mounts_of(swarm_id)]
    found += [f"process {pid} {_read(f'/proc/{pid}/cmdline')[:120]}" for pid in _processes_of(swarm_id)]
    found += [f"cgroup {d}" for d in _cgroup_dirs(swarm_id)]
    found += [f"dir {d}" for d in (RUN_ROOT / swarm_id, DATA_ROOT / swarm_id) if d.exists()]
    return found


def _known_ids() -> set[str]:
    """Every swarm id anything on this machine still carries."""
    names: list[str] = []
    for root in (RUN_ROOT, DATA_ROOT, NETNS_DIR):
        with contextlib.suppress(OSError):
            names += [p.name for p in root.iterdir()]
    for hierarchy in _hierarchies():
        with contextlib.suppress(OSError):
            names += [p.name for p in hierarchy.iterdir() if p.name.startswith("wsw")]
    names += _mounts_text_ids()
    for pid in _pids():
        cmdline = _read(f"/proc/{pid}/cmdline")
        names += re.findall(r"(?:/watcher-swarm/|/run/netns/)(wsw[0-9a-f]{6})", cmdline)
    return {m.group() for name in names for m in ID_RE.finditer(name)}


def _mounts_text_ids() -> list[str]:
    return [line for line in _read("/proc/self/mounts").splitlines() if "wsw" in line]


def _owner_alive(swarm_id: str) -> bool:
    try:
        owner = json.loads((RUN_ROOT / swarm_id / "owner.json").read_text())
        return process_started(int(owner["pid"])) == owner["started"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _state(swarm_id: str) -> dict[str, Any]:
    try:
        return json.loads((RUN_ROOT / swarm_id / "owner.json").read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One process of this machine at a time allocates subnets and sweeps."""
    with machine_lock(RUN_ROOT / ".lock"):
        yield


def _destroy(
    swarm_id: str, *, term_timeout: float = 20, timings: dict[str, float] | None = None
) -> list[str]:
    """Tear down everything of ``swarm_id`` (also of a swarm whose owner was killed); return
    what could not be removed (empty on success). ``timings`` gets the seconds of each step."""
    timings = timings if timings is not None else {}
    t0 = time.monotonic()
    if not ID_RE.fullmatch(swarm_id):
        raise ValueError(f"not a swarm id: {swarm_id!r}")
    state = _state(swarm_id)
    # 1. The daemons: SIGTERM (dockerd stops its containers and containerd, unmounts, exits).
    daemons = [
        int(pid)
        for pid in state.get("daemons", {}).values()
        if _alive(int(pid)) and swarm_id in _read(f"/proc/{pid}/cmdline")
    ]
    _signal(daemons, signal.SIGTERM)
    _signal(_wait_gone(daemons, term_timeout), signal.SIGKILL)
    _wait_gone(daemons, 5)
    timings["stop_daemons"] = time.monotonic() - t0
    # 2. Whatever they left (containerd and its shims after a SIGKILL, containers): SIGKILL.
    for _ in range(3):
        rest = _processes_of(swarm_id)
        if not rest:
            break
        _signal(rest, signal.SIGKILL)
        _wait_gone(rest, 5)
    timings["stop_rest"] = time.monotonic() - t0
    # 3. Mounts (overlay layers, container namespaces, /run/netns entries), deepest first.
    for point in _mounts_of(swarm_id):
        if point.startswith(f"{NETNS_DIR}/"):
            continue  # `ip netns del` below
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    # 4. Network namespaces (their interfaces, the bridge and veths go with them).
    for name in _netns_of(swarm_id):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    # 5. Cgroup directories, then the directories on disk, the owner file last.
    for top in _cgroup_dirs(swarm_id):
        _remove_cgroup(top)
    if not _mounts_of(swarm_id):  # never delete below a mount
        shutil.rmtree(DATA_ROOT / swarm_id, ignore_errors=True)
        run_dir = RUN_ROOT / swarm_id
        if run_dir.exists():
            for child in run_dir.iterdir():
                if child.name != "owner.json":
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
            (run_dir / "owner.json").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
    return leftovers(swarm_id)


def sweep() -> list[str]:
    """Remove the swarms whose owner process is gone (a killed or crashed run); return their ids."""
    with _machine_lock():
        return _sweep_locked()


def _sweep_locked() -> list[str]:
    swept = []
    for swarm_id in sorted(_known_ids()):
        if not _owner_alive(swarm_id):
            _destroy(swarm_id, term_timeout=10)
            swept.append(swarm_id)
    return swept


def _allocate(swarm_id: str, owner: dict[str, Any]) -> int:
    """Sweep, pick a free subnet K and write the owner file: all under the machine lock, so two
    processes never pick the same K and a sweep never sees a half-made swarm without an owner."""
    with _machine_lock():
        _sweep_locked()
        used = set()
        with contextlib.suppress(OSError):
            for run_dir in RUN_ROOT.iterdir():
                if ID_RE.fullmatch(run_dir.name):
                    used.add(_state(run_dir.name).get("k"))
        free = [k for k in SUBNETS if k not in used]
        if not free:
            raise SwarmError(f"all {len(SUBNETS)} swarm subnets are in use")
        run_dir = RUN_ROOT / swarm_id
        run_dir.mkdir(parents=True)
        owner = {**owner, "k": free[0]}
        _write_json(run_dir / "owner.json", owner)
        return free[0]


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


@contextlib.contextmanager
def _slot(timeout: float = 900) -> Iterator[None]:
    """One of MAX_SWARMS machine-wide slots, held while the swarm lives (a flock: a killed
    holder frees it)."""
    slots = RUN_ROOT / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for i in range(max(1, MAX_SWARMS)):
            handle = (slots / str(i)).open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"no swarm slot free within {timeout:.0f} s (WATCHER_SWARM_MAX={MAX_SWARMS})")
        time.sleep(0.5)


def _ping(sock: str, timeout: float = 1.0) -> bool:
    """GET /_ping on a dockerd unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SwarmError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


# ------------------------------------------------------------------------------------- nodes


@dataclass
class Node:
    """One swarm node: a dockerd in network namespace ``netns``."""

    swarm: Swarm = field(repr=False)
    index: int  # 1-based
    name: str  # also its hostname and the suffix of its namespace: "<swarm id>-n<index>"
    address: str  # 10.213.K.<index>, only inside the swarm's namespaces
    socket: str  # the dockerd's unix socket (a host path)
    data_root: Path
    exec_root: Path
    pid: int | None = None

    @property
    def netns(self) -> str:
        return self.name

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(
        self, *args: str, check: bool = False, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """The docker CLI against this node (``docker -H unix://<socket> ARGS``)."""
        argv = ["docker", "-H", self.host, *args]
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, env=_docker_env()
        )
        if check and out.returncode != 0:
            raise SwarmError(
                f"{self.name}: docker {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}"
            )
        return out

    def exec(
        self, argv: Sequence[str], *, check: bool = False, timeout: float = 120, cwd: str | Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside this node's network namespace (``nsenter --net=/run/netns/…``)."""
        return _run(
            ["nsenter", f"--net={NETNS_DIR / self.netns}", *argv], timeout=timeout, check=check, cwd=cwd
        )

    def link(self, state: str) -> None:
        """Cut (``"down"``) or restore (``"up"``) this node's cable: its veth's bridge end goes
        down, so the node's eth0 loses carrier and packets are dropped silently (a partition,
        not a refused connection)."""
        if state not in ("down", "up"):
            raise ValueError(f"link state must be 'down' or 'up', not {state!r}")
        _run(["ip", "-n", self.swarm.bridge_netns, "link", "set", f"v{self.index}", state])

    def refuse(self, target: str, refused: bool = True) -> None:
        """Refuse (``refused``) or let through again this node's TCP connections to ``target``
        (``host:port``): an iptables rule in the node's own namespace, never the host's."""
        host, port = target.rsplit(":", 1)
        rule = [
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            host,
            "--dport",
            port,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
        self.exec(["iptables", "-I" if refused else "-D", *rule], check=True)

    @property
    def node_id(self) -> str:
        """The swarm's ID of this node."""
        if not hasattr(self, "_node_id"):
            out = self.docker("info", "--format", "{{.Swarm.NodeID}}", check=True)
            self._node_id = out.stdout.strip()
        return self._node_id


@dataclass
class LoadSummary:
    """What one run of tests/harness/load.py saw (its ``--json`` output)."""

    sent: int
    ok: int
    failed: int
    errors: dict[str, int]
    versions: dict[str, int]
    raw: dict[str, Any]


# ------------------------------------------------------------------------------------- swarm

_LIVE: weakref.WeakSet[Swarm] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for live in list(_LIVE):
        with contextlib.suppress(Exception):
            live.close()


class Swarm:
    """An N-node swarm (1 manager, N-1 workers unless ``managers``), its registry, its edge.

    ``with Swarm(3) as swarm: ...``; `close` is idempotent and also runs at exit.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        managers: int = 1,
        edge_network: str | None = DEFAULT_EDGE_NETWORK,
        registry: bool = True,
        dispatcher_heartbeat: str | None = None,
    ) -> None:
        if nodes < 1 or nodes > 9:
            raise ValueError("nodes must be within 1..9")
        if not 1 <= managers <= nodes:
            raise ValueError("managers must be within 1..nodes")
        self.size = nodes
        self.managers = managers
        self.edge_network = edge_network
        self.with_registry = registry
        self.dispatcher_heartbeat = dispatcher_heartbeat
        self.id = f"wsw{secrets.token_hex(3)}"
        self.run_dir = RUN_ROOT / self.id
        self.data_dir = DATA_ROOT / self.id
        self.bridge_netns = f"{self.id}-br"
        self.nodes: list[Node] = []
        self.k: int | None = None
        self.timings: dict[str, float] = {}
        self.edge_port = EDGE_PORT
        self.edge_container = f"{self.id}-edge"
        self._daemons: dict[str, int] = {}
        self._procs: list[subprocess.Popen] = []
        self._slot: contextlib.ExitStack | None = None
        self._closed = False
        self._started = False
        self._pushed: dict[tuple[str, str, str], str] = {}
        self._loaded: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ addresses and names

    @property
    def subnet(self) -> str:
        return f"10.213.{self.k}.0/24"

    @property
    def address_pool(self) -> str:
        """The swarm's default address pool (overlay networks, ingress): a /19 of its own."""
        assert self.k is not None
        return f"10.{214 + self.k // 8}.{(self.k % 8) * 32}.0/19"

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def registry(self) -> str:
        """``host:port`` of the swarm's registry (reachable from the nodes only)."""
        return f"{self.manager.address}:{REGISTRY_PORT}"

    @property
    def edge_url(self) -> str:
        """The edge's URL inside node 1's network namespace (a published port on its loopback)."""
        return f"http://127.0.0.1:{self.edge_port}"

    @property
    def edge_address_url(self) -> str:
        """The edge's URL at node 1's address (from any node's namespace)."""
        return f"http://{self.manager.address}:{self.edge_port}"

    @property
    def edge_dir(self) -> Path:
        return self.run_dir / "edge"

    @property
    def edge_caddyfile(self) -> Path:
        """Host path of the edge's Caddyfile (/etc/caddy/Caddyfile in the container)."""
        return self.edge_dir / "etc" / "Caddyfile"

    @property
    def edge_run_dir(self) -> Path:
        """Host path of the edge's /run/watcher: route files, the admin socket, logs."""
        return self.edge_dir / "run"

    @property
    def edge_admin_socket(self) -> Path:
        return self.edge_run_dir / "caddy-admin.sock"

    def node(self, name_or_index: str | int) -> Node:
        for node in self.nodes:
            if name_or_index in (node.index, node.name, f"n{node.index}"):
                return node
        raise KeyError(name_or_index)

    # ------------------------------------------------------------------------- life cycle

    def __enter__(self) -> Swarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Swarm:
        """Set the swarm up: namespaces and cable, the registry, the dockerds (in parallel),
        ``swarm init`` and ``join``, the edge network. On any failure everything is torn down."""
        if self._started:
            raise SwarmError("already started")
        self._started = True
        t0 = time.monotonic()
        self._slot = contextlib.ExitStack()
        self._slot.enter_context(_slot())
        self.timings["slot_wait"] = time.monotonic() - t0
        t1 = time.monotonic()
        owner = {
            "pid": os.getpid(),
            "started": process_started(os.getpid()),
            "created": time.time(),
            "nodes": self.size,
        }
        try:
            self.k = _allocate(self.id, owner)
            _LIVE.add(self)
            self._setup()
        except BaseException:
            self.close()
            raise
        self.timings["start"] = time.monotonic() - t1
        return self

    def _setup(self) -> None:
        self.data_dir.mkdir(parents=True)
        for i in range(1, self.size + 1):
            name = f"{self.id}-n{i}"
            exec_root = self.run_dir / f"n{i}"
            exec_root.mkdir()
            self.nodes.append(
                Node(
                    self,
                    i,
                    name,
                    f"10.213.{self.k}.{i}",
                    str(exec_root / "docker.sock"),
                    self.data_dir / f"n{i}",
                    exec_root / "exec",
                )
            )
        self._save_state()
        tracking = _tracking_hierarchy()
        if tracking is None:
            raise SwarmError("no writable cgroup hierarchy")
        self._tracking = tracking / f"{self.id}-d"
        self._tracking.mkdir()
        with _machine_lock():  # the first `ip netns add` of a machine mounts /run/netns: one at a time
            self._network()
        (self.run_dir / "daemon.json").write_text("{}\n")
        if self.with_registry:
            self._start_registry()
        for node in self.nodes:
            self._start_dockerd(node)
        self._save_state()
        deadline = time.monotonic() + 90
        for node in self.nodes:
            while not _ping(node.socket):
                proc = next(p for p in self._procs if p.pid == node.pid)
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SwarmError(
                        f"dockerd of {node.name} did not come up (exit {proc.poll()}):\n"
                        + _tail(self.run_dir / f"{node.name}.log")
                    )
                time.sleep(0.1)
        self.timings["dockerd"] = time.monotonic() - self._t_spawn
        self._init_and_join()
        if self.edge_network:
            self.create_network(self.edge_network)
        if self.with_registry:
            self._wait_registry()

    def _wait_registry(self) -> None:
        url = f"http://{self.registry}/v2/"
        _wait(
            "the swarm registry",
            lambda: (
                self.manager.exec(["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", url]).returncode == 0
            ),
            30,
            0.2,
        )

    def _save_state(self) -> None:
        state = _state(self.id)
        state["daemons"] = self._daemons
        state["netns"] = [self.bridge_netns, *(n.netns for n in self.nodes)]
        _write_json(self.run_dir / "owner.json", state)

    def _network(self) -> None:
        ip = ["ip"]
        br = ["ip", "-n", self.bridge_netns]
        cmds = [[*ip, "netns", "add", self.bridge_netns]]
        cmds += [[*ip, "netns", "add", n.netns] for n in self.nodes]
        cmds += [
            [*br, "link", "set", "lo", "up"],
            [*br, "link", "add", "br0", "type", "bridge"],
            [*br, "link", "set", "br0", "up"],
        ]
        for n in self.nodes:
            nn = ["ip", "-n", n.netns]
            cmds += [
                [*br, "link", "add", f"v{n.index}", "type", "veth", "peer", "name", "eth0", "netns", n.netns],
                [*br, "link", "set", f"v{n.index}", "master", "br0", "up"],
                [*nn, "link", "set", "lo", "up"],
                [*nn, "addr", "add", f"{n.address}/24", "dev", "eth0"],
                [*nn, "link", "set", "eth0", "up"],
            ]
        for cmd in cmds:
            _run(cmd)

    def _spawn(self, name: str, netns: str, argv: list[str], hostname: str = "") -> subprocess.Popen:
        log = (self.run_dir / f"{name}.log").open("ab")
        wrapped = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            WRAPPER,
            str(self._tracking / "cgroup.procs"),
            hostname,
            "nsenter",
            f"--net={NETNS_DIR / netns}",
            *argv,
        ]
        try:
            proc = subprocess.Popen(
                wrapped, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        finally:
            log.close()
        self._procs.append(proc)
        self._daemons[name] = proc.pid
        return proc

    def start_process(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Run ``argv`` (from the repository's root) in node 1's network namespace until the swarm
        closes: a service the CLI there must reach on loopback (its Redis, a notification
        receiver). Its output goes to ``<run dir>/<swarm id>-<name>.log``."""
        return self._spawn(f"{self.id}-{name}", self.manager.netns, ["env", "-C", str(REPO), *argv])

    def _start_registry(self, notify: str = "") -> None:
        storage = self.data_dir / "registry"
        storage.mkdir(exist_ok=True)
        config = self.run_dir / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            "  cache:\n    blobdescriptor: inmemory\n"
            f"http:\n  addr: {self.registry}\n  secret: {self.id}-registry\n{notify}"
        )
        self._spawn(f"{self.id}-registry", self.manager.netns, ["docker-registry", "serve", str(config)])

    def notify_from_registry(self, url: str, token_file: Path) -> None:
        """Restart the registry (its storage kept) sending its push notifications to ``url``
        with the bearer token in ``token_file``, as a user's registry tells watcher of a push."""
        name = f"{self.id}-registry"
        proc = next(p for p in self._procs if p.pid == self._daemons[name])
        proc.terminate()
        proc.wait(timeout=30)
        self._procs.remove(proc)
        token = token_file.read_text().strip()
        self._start_registry(
            "notifications:\n  endpoints:\n    - name: watcher\n"
            f"      url: {url}\n      headers:\n        Authorization: [Bearer {token}]\n"
            "      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
        )
        self._save_state()
        self._wait_registry()

    def _start_dockerd(self, node: Node) -> None:
        if not hasattr(self, "_t_spawn"):
            self._t_spawn = time.monotonic()
        argv = [
            "dockerd",
            "--config-file",
            str(self.run_dir / "daemon.json"),
            "--data-root",
            str(node.data_root),
            "--exec-root",
            str(node.exec_root),
            "-H",
            node.host,
            "--pidfile",
            str(self.run_dir / f"n{node.index}" / "docker.pid"),
            "--bridge=none",
            f"--cgroup-parent=/{node.name}",
            "--containerd-namespace",
            node.name,
            "--containerd-plugins-namespace",
            f"{node.name}-plugins",
            "--insecure-registry",
            self.registry,
            "--shutdown-timeout",
            "1",  # at teardown the swarm's cluster stop hangs until this cuts it
            "--log-level",
            "warn",
        ]
        node.pid = self._spawn(node.name, node.netns, argv, hostname=node.name).pid

    def _init_and_join(self) -> None:
        m = self.manager
        init = ["swarm", "init", "--advertise-addr", m.address, "--listen-addr", f"{m.address}:2377"]
        init += ["--default-addr-pool", self.address_pool, "--default-addr-pool-mask-length", "24"]
        if self.dispatcher_heartbeat:
            init += ["--dispatcher-heartbeat", self.dispatcher_heartbeat]
        m.docker(*init, check=True)
        tokens = {
            role: m.docker("swarm", "join-token", "-q", role, check=True).stdout.strip()
            for role in ("manager", "worker")
        }

        def join(node: Node) -> None:
            role = "manager" if node.index <= self.managers else "worker"
            node.docker(
                "swarm",
                "join",
                "--token",
                tokens[role],
                "--advertise-addr",
                node.address,
                "--listen-addr",
                f"{node.address}:2377",
                f"{m.address}:2377",
                check=True,
            )

        with concurrent.futures.ThreadPoolExecutor(max(1, self.size - 1)) as pool:
            list(pool.map(join, self.nodes[1:]))
        _wait(f"{self.size} Ready nodes", lambda: len(self.ready_nodes()) == self.size, 60, 0.2)

    def close(self) -> None:
        """Tear everything down (idempotent). Raises SwarmError if anything is left."""
        with self._lock:
            if self._closed or not self._started:
                return
            self._closed = True
        t0 = time.monotonic()
        try:
            if self.k is not None:
                left = _destroy(self.id, timings=self.timings)
                for proc in self._procs:
                    with contextlib.suppress(Exception):
                        proc.wait(timeout=1)
                if left:
                    raise SwarmError(f"swarm {self.id} left: {left}")
        finally:
            _LIVE.discard(self)
            if self._slot is not None:
                self._slot.close()
            self.timings["stop"] = time.monotonic() - t0

    # ---------------------------------------------------------------------- swarm queries

    def nodes_status(self) -> list[dict[str, str]]:
        """``docker node ls`` of the manager: hostname, status, availability, manager status."""
        out = self.manager.docker("node", "ls", "--format", "{{json .}}", check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def ready_nodes(self) -> list[str]:
        return [n["Hostname"] for n in self.nodes_status() if n.get("Status") == "Ready"]

    def wait_node(self, node: Node, status: str = "Down", timeout: float = 60) -> float:
        """Wait until the manager reports ``node`` with ``status`` (Ready, Down, Unknown);
        return the seconds it took. With Docker's default 5 s dispatcher heartbeat a cut node is
        Down after ~12 s; ``Swarm(dispatcher_heartbeat="1s")``: ~2.5 s."""
        t0 = time.monotonic()
        _wait(
            f"{node.name} {status}",
            lambda: any(n["Hostname"] == node.name and n["Status"] == status for n in self.nodes_status()),
            timeout,
            0.25,
        )
        return time.monotonic() - t0

    def daemon_log(self, node: Node, lines: int = 50) -> str:
        """The last ``lines`` of the node's dockerd log (kept in the run directory until close)."""
        return _tail(self.run_dir / f"{node.name}.log", lines)

    def drain(self, node: Node) -> None:
        """Set ``node`` to availability drain (Swarm moves its tasks away)."""
        self.manager.docker("node", "update", "--availability", "drain", node.node_id, check=True)

    def activate(self, node: Node) -> None:
        self.manager.docker("node", "update", "--availability", "active", node.node_id, check=True)

    def create_network(self, name: str) -> None:
        """An attachable overlay network (services and plain containers can join it)."""
        self.manager.docker("network", "create", "--driver", "overlay", "--attachable", name, check=True)

    def stack_deploy(self, name: str, compose: str) -> subprocess.CompletedProcess:
        """``docker stack deploy`` of the compose text ``compose`` as stack ``name`` on the manager
        (the file is kept in the run directory as ``stack-<name>.yml``)."""
        path = self.run_dir / f"stack-{name}.yml"
        path.write_text(compose)
        return self.manager.docker("stack", "deploy", "--compose-file", str(path), name, check=True)

    def stack_rm(self, name: str) -> None:
        self.manager.docker("stack", "rm", name, check=True)

    def tasks(self, service: str) -> list[dict[str, str]]:
        """``docker service ps`` rows (Node is the node's name)."""
        out = self.manager.docker(
            "service", "ps", "--no-trunc", "--format", "{{json .}}", service, check=True
        )
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def running_tasks(self, service: str) -> list[dict[str, str]]:
        return [
            t
            for t in self.tasks(service)
            if t.get("DesiredState") == "Running" and t.get("CurrentState", "").startswith("Running")
        ]

    def wait_running(self, service: str, replicas: int, timeout: float = 90) -> list[dict[str, str]]:
        """Wait until ``replicas`` tasks of ``service`` run; return them."""
        _wait(
            f"{replicas} running tasks of {service}",
            lambda: len(self.running_tasks(service)) == replicas,
            timeout,
            0.3,
        )
        return self.running_tasks(service)

    # ----------------------------------------------------------------------------- images

    def load_images(self, *refs: str, nodes: Sequence[Node] | None = None) -> None:
        """Copy images of the main engine to ``nodes`` (default node 1): ``docker save`` | ``docker
        -H <node> load``. For images a node runs as plain containers (the edge's Caddy)."""
        targets = list(nodes) if nodes is not None else [self.manager]
        for node in targets:
            wanted = [r for r in refs if _image_id_main(r) not in self._loaded.get(node.name, set())]
            if not wanted:
                continue
            save = subprocess.Popen(
                ["docker", "save", *wanted], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_docker_env()
            )
            assert save.stdout is not None
            load = subprocess.run(
                ["docker", "-H", node.host, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
                env=_docker_env(),
                timeout=300,
            )
            save.stdout.close()
            err = save.stderr.read().decode() if save.stderr else ""
            if save.wait(timeout=60) != 0 or load.returncode != 0:
                raise SwarmError(
                    f"copying {wanted} to {node.name} failed: {err.strip()} {load.stderr.strip()}"
                )
            self._loaded.setdefault(node.name, set()).update(_image_id_main(r) for r in wanted)

    def push(self, local_ref: str, repo: str, tag: str = "latest") -> str:
        """Copy ``local_ref`` (an image of the main engine) into the swarm's registry as
        ``<registry>/<repo>:<tag>``; return the digest-pinned ref ``<registry>/<repo>@sha256:…``."""
        key = (_image_id_main(local_ref), repo, tag)
        if key in self._pushed:
            return self._pushed[key]
        self.load_images(local_ref)
        target = f"{self.registry}/{repo}:{tag}"
        self.manager.docker("tag", local_ref, target, check=True)
        out = self.manager.docker("push", target, check=True, timeout=300)
        found = re.search(r"digest: (sha256:[0-9a-f]{64})", out.stdout)
        if not found:
            raise SwarmError(f"push of {target} printed no digest: {out.stdout[-500:]}")
        pinned = f"{self.registry}/{repo}@{found.group(1)}"
        self._pushed[key] = pinned
        return pinned

    # ------------------------------------------------------------------------------- edge

    @staticmethod
    def caddyfile(site: str, *, extra_global: str = "") -> str:
        """A Caddyfile for the edge: the admin API on the unix socket in the run directory and
        ``site`` as the body of ``:80 { … }``."""
        body = "\n".join(f"\t{line}" if line.strip() else "" for line in site.strip("\n").splitlines())
        return (
            "{\n\tadmin unix//run/watcher/caddy-admin.sock\n\tauto_https off\n"
            f"{extra_global}}}\n\n:80 {{\n{body}\n}}\n"
        )

    def start_edge(self, caddyfile: str, *, image: str | None = None, port: int = EDGE_PORT) -> None:
        """Run the edge Caddy on node 1: on the edge network, ``caddyfile`` as its config, its
        port 80 published on node 1's loopback and address as ``port``."""
        from tests.harness import images

        if not self.edge_network:
            raise SwarmError("this swarm has no edge network")
        image = image or images.DEFAULT_CADDY_REF
        self.load_images(image)
        etc, run = self.edge_caddyfile.parent, self.edge_run_dir
        etc.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        self.edge_caddyfile.write_text(caddyfile)
        self.edge_port = port
        m = self.manager
        m.docker("rm", "-f", self.edge_container)
        m.docker(
            "run",
            "-d",
            "--name",
            self.edge_container,
            "--hostname",
            "edge",
            "--network",
            self.edge_network,
            "-p",
            f"127.0.0.1:{port}:80",
            "-p",
            f"{m.address}:{port}:80",
            "-v",
            f"{etc}:/etc/caddy:ro",
            "-v",
            f"{run}:/run/watcher",
            image,
            check=True,
        )

        def up() -> bool:
            try:
                self.caddy_admin("GET", "/config/").raise_for_status()
            except httpx.HTTPError:
                return False
            return (
                m.exec(["curl", "-sS", "-o", "/dev/null", "--max-time", "2", self.edge_url]).returncode == 0
            )

        try:
            _wait("the edge Caddy", up, 30, 0.2)
        except SwarmError:
            logs = m.docker("logs", "--tail", "20", self.edge_container)
            raise SwarmError(f"the edge Caddy did not come up:\n{logs.stdout}{logs.stderr}") from None

    def caddy_reload(self, caddyfile: str | None = None) -> None:
        """Write ``caddyfile`` (if given) and make the edge load it (``caddy reload``)."""
        if caddyfile is not None:
            self.edge_caddyfile.write_text(caddyfile)
        self.manager.docker(
            "exec",
            self.edge_container,
            "caddy",
            "reload",
            "--config",
            "/etc/caddy/Caddyfile",
            "--adapter",
            "caddyfile",
            "--address",
            "unix//run/watcher/caddy-admin.sock",
            check=True,
        )

    def caddy_admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request to the edge's admin API (its unix socket, from the host)."""
        transport = httpx.HTTPTransport(uds=str(self.edge_admin_socket))
        with httpx.Client(transport=transport, base_url="http://caddy", timeout=10) as client:
            return client.request(method, path, **kw)

    def upstreams(self) -> list[dict[str, Any]]:
        """The edge's ``/reverse_proxy/upstreams`` (every dynamic upstream it resolved)."""
        response = self.caddy_admin("GET", "/reverse_proxy/upstreams")
        response.raise_for_status()
        return list(response.json() or [])

    # ------------------------------------------------------------------------------- load

    def load(self, path: str = "/", **kw: Any) -> LoadSummary:
        """`start_load` and wait for its result (blocking for ``duration`` seconds)."""
        return self.start_load(path, **kw).result()

    def start_load(
        self,
        path: str = "/",
        *,
        rate: float = 20,
        duration: float = 3,
        method: str = "POST",
        connections: int = 8,
        timeout: float = 10,
        headers: dict[str, str] | None = None,
        direct: bool = False,
        answered: bool = False,
    ) -> RunningLoad:
        """Start tests/harness/load.py (it loads loopback addresses only) in node 1's network
        namespace against the edge's published port on that namespace's loopback, so every
        connection passes docker-proxy as a user's would; ``direct``: in the edge container's own
        network namespace against Caddy's :80 (no proxy, no NAT in between). `RunningLoad.result`
        waits for it to finish."""
        if direct:
            pid = self.manager.docker(
                "inspect", "--format", "{{.State.Pid}}", self.edge_container, check=True
            ).stdout.strip()
            netns, url = f"/proc/{pid}/ns/net", f"http://127.0.0.1:80{path}"
        else:
            netns, url = str(NETNS_DIR / self.manager.netns), f"{self.edge_url}{path}"
        argv = ["nsenter", f"--net={netns}", sys.executable, "-m", "tests.harness.load", url, "--json"]
        argv += ["--rate", str(rate), "--duration", str(duration), "--method", method]
        argv += ["--connections", str(connections), "--timeout", str(timeout)]
        argv += ["--answered"] if answered else []
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return RunningLoad(proc, duration + timeout + 30)


class RunningLoad:
    """A load generator running in a namespace (`Swarm.start_load`)."""

    def __init__(self, proc: subprocess.Popen, timeout: float) -> None:
        self.proc = proc
        self.timeout = timeout
        self._summary: LoadSummary | None = None

    def stop(self) -> LoadSummary:
        """End the run now (SIGTERM: the generator stops sending, waits for what is in flight
        and reports); its figures."""
        if self._summary is None and self.proc.poll() is None:
            self.proc.terminate()
        return self.result()

    def result(self) -> LoadSummary:
        """Wait for the run to end; its figures. Raises if it failed to run or sent nothing."""
        if self._summary is not None:
            return self._summary
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise SwarmError(f"the load generator did not finish within {self.timeout:.0f} s") from None
        if self.proc.returncode not in (0, 1):  # 1: some requests failed
            raise SwarmError(f"load generator exited {self.proc.returncode}: {err.strip()[-1000:]}")
        data = json.loads(out)
        summary = LoadSummary(
            sent=data["sent"],
            ok=data["ok"],
            failed=data["failed"],
            errors=data.get("errors", {}),
            versions=data.get("versions", {}),
            raw=data,
        )
        if summary.sent <= 0:
            raise SwarmError(f"the load generator sent nothing: {data}")
        self._summary = summary
        return summary


def _image_id_main(ref: str) -> str:
    out = _run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], env=_docker_env())
    return out.stdout.strip()


# --------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """CLI: ``sweep`` (remove swarms of dead owners), ``leftovers ID``, ``measure [--nodes N]``
    (start and tear down a swarm, print the seconds)."""
    p = argparse.ArgumentParser(prog="python -m tests.harness.swarm", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sweep")
    sub.add_parser("leftovers").add_argument("id")
    measure = sub.add_parser("measure")
    measure.add_argument("--nodes", type=int, default=3)
    measure.add_argument("--no-registry", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "sweep":
        print("swept:", " ".join(sweep()) or "nothing")
    elif args.cmd == "leftovers":
        print("\n".join(leftovers(args.id)) or "nothing")
    else:
        swarm = Swarm(args.nodes, registry=not args.no_registry)
        with swarm:
            print(f"{swarm.id}: {len(swarm.ready_nodes())} ready nodes")
        left = leftovers(swarm.id)
        print(json.dumps({k: round(v, 2) for k, v in swarm.timings.items()}), "leftovers:", left or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
