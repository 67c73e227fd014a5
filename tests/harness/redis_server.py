"""A private redis-server for tests that stop or restart Redis (never the shared one): a free
port, its own directory, AOF on (`appendonly yes`, fsync every second) as compose.yml ships it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.harness.stack import free_port


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="watcher-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:   # refused, or still loading the AOF
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

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text()[-2000:] if path.exists() else "(no log)"

    def destroy(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)
