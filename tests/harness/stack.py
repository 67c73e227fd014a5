"""A throw-away copy of the example stack (compose.yml, colour overlays, Caddyfile) with a
unique compose project name and port, a watcher config for it, and a `watcher` runner.

Every test stack cleans up what it created; names are unique per run, so stacks left by an
earlier, killed run never collide with this one.
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
APP_REPO = f"{REGISTRY}/watcher-test/app"
CADDY_IMAGE = "watcher-test/caddy:2.11.7"
REDIS_IMAGE = "watcher-test/redis:7"
STACK_FILES = ("compose.yml", "compose.blue.yml", "compose.green.yml", "Caddyfile")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """One app stack on the real Docker engine, driven through the real `watcher` CLI."""

    root: Path
    name: str
    port: int
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, *, image: str = APP_REPO, **settings: Any) -> "Stack":
        name = f"wt{uuid.uuid4().hex[:8]}"
        root = Path(tempfile.mkdtemp(prefix=f"watcher-{name}-"))
        for file_name in STACK_FILES:
            shutil.copy(REPO / file_name, root / file_name)
        stack = cls(root, name, free_port(), settings)
        (root / ".env").write_text(
            f"STACK_NAME={name}\nHTTP_PORT={stack.port}\nCADDY_IMAGE={CADDY_IMAGE}\n"
            f"REDIS_IMAGE={REDIS_IMAGE}\nAPP_IMAGE={image}\nAPP_HEALTH_INTERVAL=1s\n")
        stack.write_config(image=image, **settings)
        return stack

    def write_config(self, *, image: str = APP_REPO, health_timeout: str = "60s", health_interval: str = "1s",
                     verify_window: str = "2s", verify_timeout: str = "15s", drain_timeout: str = "30s",
                     retain_old: bool = True, pre_deploy: list[str] | None = None, extra: str = "") -> None:
        hook = json.dumps(pre_deploy or [])
        (self.root / "watcher.toml").write_text(f"""
[app]
name = "{self.name}"
image = "{image}"
shared_services = ["caddy"]

[services.web]
port = 8080

[health]
timeout = "{health_timeout}"
interval = "{health_interval}"

[verify]
url = "{self.url}/version"
timeout = "{verify_timeout}"
window = "{verify_window}"

[drain]
timeout = "{drain_timeout}"
retain_old = {"true" if retain_old else "false"}

[hooks]
pre_deploy = {hook}
{extra}
""")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "watcher.toml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTH_CHECK", "DRAIN_", "VERIFY_"))}
        env.update(WATCHER_CONFIG=str(self.config), PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def watcher(self, *args: str, timeout: float = 300, check: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in this stack's directory."""
        proc = subprocess.run([sys.executable, "-m", "watcher", *args], cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"watcher {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start the CLI in the background (for interrupt tests)."""
        return subprocess.Popen([sys.executable, "-m", "watcher", *args], cwd=self.root, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def status(self) -> dict[str, Any]:
        proc = self.watcher("status", "--json", check=True)
        return json.loads(proc.stdout)

    def version(self) -> str | None:
        """The version answering through Caddy right now."""
        try:
            response = httpx.get(f"{self.url}/version", timeout=5)
        except httpx.HTTPError:
            return None
        return response.text.strip() if response.is_success else None

    def wait_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.version():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.url} did not serve within {timeout}s")

    def compose(self, *args: str, project: str | None = None, files: tuple[str, ...] = ("compose.yml",),
                check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-p", project or self.name, "--project-directory", str(self.root),
                "--profile", "*"]  # app services sit behind a profile; down must see them
        for name in files:
            argv += ["-f", str(self.root / name)]
        return subprocess.run([*argv, *args], cwd=self.root, capture_output=True, text=True, check=check,
                              env={**os.environ, "APP_VERSION": "unset"})

    def container_ids(self, project: str) -> dict[str, str]:
        out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                              "--format", "{{.Names}} {{.ID}}"], capture_output=True, text=True, check=True).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def caddy_errors(self, limit: int = 20) -> str:
        """Caddy's error log lines (the 502s' causes), for assertion messages."""
        proc = subprocess.run(["docker", "logs", f"{self.name}-caddy-1"], capture_output=True, text=True)
        lines = [line for line in (proc.stdout + proc.stderr).splitlines()
                 if '"error"' in line and "health_checker" not in line]
        return "\n".join(line[:400] for line in lines[-limit:])

    def destroy(self) -> None:
        """Remove everything this stack created: both colours, shared services, volumes, network."""
        for color in ("blue", "green"):
            self.compose("down", "--remove-orphans", "-t", "1", project=f"{self.name}-{color}",
                         files=("compose.yml", f"compose.{color}.yml"), check=False)
        self.compose("down", "-v", "--remove-orphans", "-t", "1", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def interrupt(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
