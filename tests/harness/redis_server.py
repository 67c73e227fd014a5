"""A private redis-server for tests that stop, restart or otherwise upset Redis (never the shared
one): a free port, its own directory, AOF on (`appendonly yes`, fsync every second) as
compose.yml ships it. It can also require a password, fail over (become a read-only replica of
a master that is not there), fill up (`maxmemory` reached under `noeviction`), and come back
empty (restarted without persistence).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from tests.harness.stack import free_port


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="watcher-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        password = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--logfile",
                "redis.log",
                *password,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.admin()
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:  # refused, or still loading the AOF
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"redis-server on {self.port} did not start: {self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the AOF is flushed), as a service manager restarts Redis."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def restart_empty(self) -> None:
        """Restarted with its data gone, as a Redis without persistence (or a new empty replica)
        comes back: the same port, nothing in it."""
        self.stop()
        for found in self.dir.iterdir():
            if found.name != "redis.log":
                shutil.rmtree(found) if found.is_dir() else found.unlink()
        self.start()

    def admin(self) -> redis.Redis:
        """A plain redis-py client with the server's password: the operator's, not watcher's."""
        return redis.Redis(
            port=self.port, password=self.password, socket_connect_timeout=1, decode_responses=True
        )

    def command(self, *args: Any) -> Any:
        with self.admin() as client:
            return client.execute_command(*args)

    def require_password(self, password: str) -> None:
        """From now on (restarts too) every new connection must authenticate."""
        self.command("CONFIG", "SET", "requirepass", password)
        self.password = password

    def fail_over(self, *, stale_reads: bool = True) -> None:
        """Become a replica, as the old master does after a failover, of a master that never
        answers (a port nobody listens on): writes answer READONLY; reads are served from the
        data it has, or with `stale_reads=False` answer MASTERDOWN."""
        self.command("CONFIG", "SET", "replica-serve-stale-data", "yes" if stale_reads else "no")
        self.command("REPLICAOF", "127.0.0.1", str(free_port()))

    def take_over(self) -> None:
        """A master again: writable."""
        self.command("REPLICAOF", "NO", "ONE")

    def fill_up(self) -> None:
        """`maxmemory` reached under `noeviction`: commands that may grow memory answer OOM."""
        self.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.command("CONFIG", "SET", "maxmemory", "1")

    def free_up(self) -> None:
        self.command("CONFIG", "SET", "maxmemory", "0")

    def blocked_clients(self) -> int:
        """How many clients wait in a blocking command (BLPOP)."""
        with self.admin() as client:
            return int(client.info("clients")["blocked_clients"])

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text()[-2000:] if path.exists() else "(no log)"

    def destroy(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)
