"""Infrastructure faults for tests/faults/test_infra.py: a registry front that goes down, slows
down or rate-limits; Redis, Caddy and the Docker engine killed or restarted; a state directory
on a tiny tmpfs that can be filled; and the failures a load saw within a fault's window.

Every fault here hits only what the case itself owns (its private redis-server, its stack's
Caddy, a front on its own port, a tmpfs over its stack's state directory), except the Docker
engine restart, which stops every container on the host: callers keep those cases few.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness.redis_server import RedisServer
from tests.harness.stack import REGISTRY, Stack, free_port
from tests.harness.traffic import Loads

IN_CI = os.environ.get("CI") == "true"
SERVICES = Path("/var/tmp/watcher-services")  # scripts/services.sh's pid files and logs
DOCKERD_PIDFILE = Path("/var/run/docker.pid")  # written by dockerd itself


def unavailable(message: str) -> None:
    """A fault the machine cannot inject: a failure under CI, a skip elsewhere."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- the registry's front door ------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request arrived
    answered: float  # ... and when the front began sending its answer (the client reads it later)
    method: str
    path: str
    status: int  # what the front answered


@dataclass
class RegistryFront:
    """Forwards to a registry from a fixed loopback port, and can be made to misbehave there:

    - `go_down()`: the port is closed (connections refused, as a dead registry's), until
      `come_back()` reopens the same port; `down_after(match)` goes down right after answering
      the first request `match(method, path)` accepts (e.g. watcher's digest check, so that
      docker's pull that follows finds nobody);
    - `delay`: every request it forwards waits that long first (a slow registry);
    - `limit(count, retry_after)`: the next `count` requests answer 429 with `Retry-After`, at
      once (a rate limiter answers before the slow part).

    Every connection carries one request (HTTP/1.0), so going down refuses the very next one.
    """

    upstream: str = REGISTRY
    port: int = field(default_factory=free_port)
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    _limited: int = 0
    _retry_after: int = 1
    _down_after: Callable[[str, str], bool] | None = None
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    def come_back(self) -> None:
        """Listen (again) on the front's port."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"front-{self.port}", daemon=True).start()
        self._server = server

    def go_down(self) -> None:
        """Close the port: every new connection is refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def down_after(self, match: Callable[[str, str], bool]) -> None:
        self._down_after = match

    def limit(self, count: int, retry_after: int = 1) -> None:
        with self._lock:
            self._limited, self._retry_after = count, retry_after

    def heal(self) -> None:
        """Up, fast and unlimited again."""
        self.delay, self._down_after = 0.0, None
        self.limit(0)
        self.come_back()

    def requests(self, since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.at >= since]

    def _rate_limited(self) -> tuple[int, dict[str, str], bytes] | None:
        """The 429 to answer while the front is rate-limiting; else None (forward)."""
        with self._lock:
            if self._limited <= 0:
                return None
            self._limited -= 1
            retry_after = self._retry_after
        body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited by the test front"}]}'
        return 429, {"Retry-After": str(retry_after), "Content-Type": "application/json"}, body

    def _forward(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in ("connection", "transfer-encoding", "content-length")
            }
            if method == "HEAD":
                kept["Content-Length"] = response.getheader("Content-Length", "0")
            return response.status, kept, data
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

            def _handle(self) -> None:
                arrived = time.monotonic()
                answer = front._rate_limited()
                if answer is None:
                    time.sleep(front.delay)
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                    }
                    answer = front._forward(self.command, self.path, headers)
                status, headers, body = answer
                answered = time.monotonic()  # before the client can read it: its waits start later
                self._reply(status, headers, body)
                with front._lock:
                    front.seen.append(Seen(arrived, answered, self.command, self.path, status))
                    trigger = front._down_after is not None and front._down_after(self.command, self.path)
                    if trigger:
                        front._down_after = None
                if trigger:
                    threading.Thread(target=front.go_down, daemon=True).start()

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


# -- Redis, Caddy, the Docker engine ------------------------------------------------------------


def kill_redis(server: RedisServer) -> None:
    """kill -9: no shutdown, no last AOF flush (appendfsync everysec: up to a second of writes
    may be lost, which is why cases kill more than a second after the writes they count on)."""
    assert server.proc is not None and server.proc.poll() is None, "redis-server is not running"
    server.proc.kill()
    server.proc.wait(timeout=20)


def caddy_container(stack: Stack) -> str:
    return f"{stack.name}-caddy-1"


def kill_caddy(stack: Stack) -> None:
    """kill -9 Caddy's process from the host, as a crash: Docker restarts it by its restart
    policy (`docker kill` would count as stopping it by hand)."""
    crash(caddy_container(stack))


def crash(container: str) -> None:
    """kill -9 the container's main process from the host, as a crash (its restart policy
    applies). A container not running has pid 0, and os.kill(0) would kill our own process
    group (the whole test run): refused."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert pid.isdigit() and int(pid) > 1, f"{container} is not running (pid {pid!r})"
    try:
        os.kill(int(pid), signal.SIGKILL)
    except ProcessLookupError:
        raise AssertionError(f"{container}'s process {pid} ended before the crash could land") from None


def restart_caddy(stack: Stack) -> None:
    """`docker restart` Caddy (a repair: it recreates the admin socket), until it serves again."""
    subprocess.run(["docker", "restart", "-t", "5", caddy_container(stack)], capture_output=True, check=True)
    stack.wait_serving(30)


def _services_dockerd() -> int:
    """The pid of the dockerd scripts/services.sh started, or a skip/failure saying why not."""
    try:
        pid = int((SERVICES / "dockerd.pid").read_text())
    except (OSError, ValueError):
        pid = 0
    if not _alive(pid, "dockerd"):
        unavailable(
            "the Docker engine restart needs the dockerd scripts/services.sh started "
            f"({SERVICES}/dockerd.pid)"
        )
    return pid


def _alive(pid: int, comm: str) -> bool:
    """Whether `pid` is a live (not zombie) process named `comm`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == comm and state != "Z"


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def restart_dockerd(timeout: float = 120) -> float:
    """Stop dockerd (SIGTERM: it stops every container first) and start it again the way
    scripts/services.sh does (`setsid dockerd`, no parent of ours); returns once `docker info`
    answers, with the seconds it took."""
    pid = _services_dockerd()
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while _alive(pid, "dockerd"):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"dockerd (pid {pid}) did not stop within {timeout}s")
        time.sleep(0.1)
    with (SERVICES / "dockerd.log").open("ab") as log:
        subprocess.run(
            ["setsid", "-f", "dockerd"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=True,
        )
    while not docker_answers():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"dockerd did not come back within {timeout}s; see {SERVICES}/dockerd.log")
        time.sleep(0.2)
    shutil.copy(DOCKERD_PIDFILE, SERVICES / "dockerd.pid")
    return time.monotonic() - started


# -- failures within a fault's window ------------------------------------------------------------


class Window:
    """The failures a load saw between `open()` and `close()`: what a fault docs/reliability.md bounds
    (Caddy or the engine down: the one front door is shut) may cost. Every failure outside it
    counts against the case."""

    def __init__(self, loads: Loads) -> None:
        self.loads = loads
        self.failed = 0
        self.seconds = 0.0
        self._at = 0.0
        self._before = 0

    def _failed_so_far(self) -> int:
        return self.loads.fast.snapshot().failed + self.loads.slow.snapshot().failed

    def open(self) -> Window:
        self._at, self._before = time.monotonic(), self._failed_so_far()
        return self

    def close(self, settle: float = 1.5) -> None:
        """Once the site serves again: `settle` seconds for the requests the outage broke to be
        counted (each fails at once: nothing listens, or the connection is reset)."""
        self.seconds = time.monotonic() - self._at
        time.sleep(settle)
        self.failed = self._failed_so_far() - self._before


# -- a state directory on a small disk -----------------------------------------------------------


class SmallDisk:
    """A tmpfs mounted over a directory, its files copied in; `fill()` takes every free page."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.filler = directory / ".filler"

    def fill(self) -> None:
        """Write until the disk refuses (ENOSPC), in ever smaller pieces: nothing is left."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 1 << 12, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _copy_into(source: Path, target: Path) -> None:
    for entry in source.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target / entry.name)


@contextmanager
def small_disk(directory: Path, size: str = "256k") -> Iterator[SmallDisk]:
    """Mount a `size` tmpfs over `directory` (root only) with its files; on the way out, however
    the case ended, the files as the tmpfs has them go back onto the directory underneath."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("a full disk needs root and mount(8) for a tmpfs")
    keep = Path(tempfile.mkdtemp(prefix="watcher-disk-"))
    try:
        _copy_into(directory, keep)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
            check=True,
            capture_output=True,
        )
        disk = SmallDisk(directory)
        try:
            _copy_into(keep, directory)
            yield disk
        finally:
            disk.free()
            shutil.rmtree(keep)
            keep.mkdir()
            _copy_into(directory, keep)
            subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)
            for entry in directory.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            _copy_into(keep, directory)
    finally:
        shutil.rmtree(keep, ignore_errors=True)
