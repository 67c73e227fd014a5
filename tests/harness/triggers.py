"""Run the real `watcher serve` (or `run`) as a subprocess on a free loopback port, against a
throw-away project directory, and talk to it over real HTTP.

Also: signed GitHub deliveries, and counting what the queue received (the job counter `seq`
counts every job ever created, so "one job" and "no new job" are exact).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.harness.stack import REPO
from watcher.triggers.payloads import sign


def write_project(root: Path, *, app: str, image: str, port: int, extra: str = "") -> Path:
    """A project dir load_config accepts (compose files are never run here) and its watcher.toml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml", "Caddyfile"):
        shutil.copy(REPO / name, root / name)
    config = root / "watcher.toml"
    config.write_text(f"""
[app]
name = "{app}"
image = "{image}"

[services.web]
port = 8080

[verify]
url = "http://127.0.0.1:9/version"

[webhook]
listen = "127.0.0.1:{port}"
{extra}
""")
    return config


@dataclass
class WatcherServer:
    """`watcher serve` in a subprocess; its log goes to a file beside the config, read by `log()`."""

    config: Path
    env: dict[str, str]
    port: int
    command: tuple[str, ...] = ("serve", "--no-poll")
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def __post_init__(self) -> None:
        if self.log_path is None:
            self.log_path = self.config.parent / f"watcher-{self.command[0]}-{uuid.uuid4().hex[:6]}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> WatcherServer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WEBHOOK_", "WATCHER_API_TOKEN", "REDIS_", "POLL_", "REGISTRY_"))
        }
        env.update(WATCHER_CONFIG=str(self.config), PYTHONUNBUFFERED="1", **self.env)
        assert self.log_path is not None
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", *self.command],
                cwd=self.config.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"watcher {' '.join(self.command)} exited {self.proc.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"watcher {' '.join(self.command)} did not answer within {timeout}s:\n{self.log()}"
        )

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def github_delivery(
    url: str,
    event: str,
    payload: Any,
    secret: str | None,
    *,
    delivery: str | None = None,
    body: bytes | None = None,
    signature: str | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST a delivery the way GitHub does (signature over the exact bytes sent)."""
    data = body if body is not None else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, data)
    sender = client or httpx
    return sender.post(f"{url}/hooks/github", content=data, headers=headers, timeout=15)


def jobs_created(client: redis.Redis, app: str) -> int:
    return int(client.get(f"watcher:{app}:seq") or 0)


def forget(client: redis.Redis, app: str, project: Path | None = None) -> None:
    """Remove the app's keys: queue, pause, trigger memory (delivery ids are unique per test);
    with its project directory, what the host keeps of its queue too (watcher/queue/continuity.py),
    so that the app starts afresh rather than as one whose Redis lost the queue."""
    for found in client.scan_iter(f"watcher:{app}:*"):
        client.delete(found)
    if project is not None:
        (project / ".watcher" / app / "redis.json").unlink(missing_ok=True)
