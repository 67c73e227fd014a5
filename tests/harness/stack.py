"""A throw-away copy of the example stack (compose.yml, colour overlays) with a unique compose
project name and port, a watcher config for it, the Caddyfile `watcher caddyfile` makes of that
config, and a `watcher` runner.

Every test stack cleans up what it created; names are unique per run, so stacks left by an
earlier, killed run never collide with this one, and tests/harness/leftovers.py removes those.
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
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness.leftovers import claim, remove_stack

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
#: The test app's repository every run's images are built into (and tests that name it pull from).
SHARED_APP_REPO = f"{REGISTRY}/watcher-test/app"
#: The repository this process's stacks deploy from: under pytest-xdist one per worker, because
#: `watcher cleanup` removes the local images of its app's repository that nothing live needs,
#: which must never be an image another worker is about to push or deploy.
APP_REPO = SHARED_APP_REPO + (
    f"-{os.environ['PYTEST_XDIST_WORKER']}" if "PYTEST_XDIST_WORKER" in os.environ else ""
)
CADDY_IMAGE = "watcher-test/caddy:2.11.7"
REDIS_IMAGE = "watcher-test/redis:7"
SIDECAR_IMAGE = f"{REGISTRY}/watcher-test/sidecar:1"
STACK_FILES = ("compose.yml", "compose.blue.yml", "compose.green.yml")


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
    def create(cls, *, image: str = APP_REPO, **settings: Any) -> Stack:
        name = f"wt{uuid.uuid4().hex[:8]}"
        root = Path(tempfile.mkdtemp(prefix=f"watcher-{name}-"))
        claim(root)
        for file_name in STACK_FILES:
            shutil.copy(REPO / file_name, root / file_name)
        stack = cls(root, name, free_port(), settings)
        (root / ".env").write_text(
            f"STACK_NAME={name}\nHTTP_PORT={stack.port}\nCADDY_IMAGE={CADDY_IMAGE}\n"
            f"REDIS_IMAGE={REDIS_IMAGE}\nAPP_IMAGE={image}\nAPP_HEALTH_INTERVAL=1s\n"
            "APP_HEALTH_START_PERIOD=5s\n"
        )
        stack.write_config(image=image, **settings)
        return stack

    def write_config(
        self,
        *,
        image: str = APP_REPO,
        health_timeout: str = "60s",
        health_interval: str = "1s",
        verify_window: str = "2s",
        verify_timeout: str = "15s",
        drain_timeout: str = "30s",
        retain_old: bool = True,
        pre_deploy: list[str] | None = None,
        extra: str = "",
    ) -> None:
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
        self.write_caddyfile()

    def write_caddyfile(self) -> None:
        """The Caddyfile of this stack's config, as `watcher caddyfile` prints it."""
        from watcher.caddyfile import render
        from watcher.config import load_host

        host = load_host(self.config, {})
        (self.root / "Caddyfile").write_text(render(host, list(host.apps.values())))

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

    def watcher(
        self, *args: str, timeout: float = 300, check: bool = False, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in this stack's directory."""
        proc = subprocess.run(
            [sys.executable, "-m", "watcher", *args],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"watcher {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start the CLI in the background (for interrupt tests)."""
        return subprocess.Popen(
            [sys.executable, "-m", "watcher", *args],
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

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

    def compose(
        self,
        *args: str,
        project: str | None = None,
        files: tuple[str, ...] = ("compose.yml",),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "docker",
            "compose",
            "-p",
            project or self.name,
            "--project-directory",
            str(self.root),
            "--profile",
            "*",
        ]  # app services sit behind a profile; down must see them
        for name in files:
            argv += ["-f", str(self.root / name)]
        return subprocess.run(
            [*argv, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "APP_VERSION": "unset", "WATCHER_APP": self.name},
        )

    def container_ids(self, project: str) -> dict[str, str]:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--format",
                "{{.Names}} {{.ID}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def caddy_errors(self, limit: int = 20) -> str:
        """Caddy's error log lines (the 502s' causes), for assertion messages."""
        proc = subprocess.run(["docker", "logs", f"{self.name}-caddy-1"], capture_output=True, text=True)
        lines = [
            line
            for line in (proc.stdout + proc.stderr).splitlines()
            if '"error"' in line and "health_checker" not in line
        ]
        return "\n".join(line[:400] for line in lines[-limit:])

    # -- the live colour and its health, poked from outside ---------------------------------

    @property
    def route_file(self) -> Path:
        """The app's route file: what Caddy routes to."""
        return self.root / ".watcher" / "run" / f"{self.name}.live"

    @property
    def state_file(self) -> Path:
        return self.root / ".watcher" / self.name / "state.json"

    def live_route(self) -> str | None:
        """The colour the route file names (what Caddy routes to), or None."""
        try:
            return self.route_file.read_text().strip()
        except FileNotFoundError:
            return None

    def containers_of(self, color: str, service: str = "web") -> list[str]:
        """Names of `color`'s containers of `service` (any state)."""
        project = f"{self.name}-{color}"
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
                "--format",
                "{{.Names}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(out.split())

    def health(self, container: str) -> str:
        """Docker's view of one container: its health when running with a healthcheck, else its state."""
        out = subprocess.run(
            [
                "docker",
                "inspect",
                "--format",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                container,
            ],
            capture_output=True,
            text=True,
        ).stdout.split()
        if not out:
            return "absent"
        return out[1] if out[0] == "running" and len(out) > 1 else out[0]

    def break_health(self, color: str) -> list[str]:
        """Make `color`'s web containers fail their healthcheck (and Caddy's /healthz probe);
        return their IDs, for `restore_health`."""
        ids = [self.container_ids(f"{self.name}-{color}")[name] for name in self.containers_of(color)]
        for container in ids:
            subprocess.run(
                ["docker", "exec", container, "rm", "-f", "/www/healthz"], capture_output=True, check=True
            )
        return ids

    def restore_health(self, containers: list[str]) -> None:
        """Undo `break_health` on exactly the containers it broke (never on a container that took
        the colour's name since); one that is no longer running is left alone."""
        for container in containers:
            subprocess.run(
                ["docker", "exec", container, "sh", "-c", "printf ok > /www/healthz"], capture_output=True
            )

    def flap(self, color: str, seconds: float) -> threading.Thread:
        """Break `color`'s health now and restore it `seconds` later, in the background.

        With the test stacks' healthcheck (interval 1 s, retries 3) Docker reports the colour
        `unhealthy` about 3 s after the break, until a check passes again after the restore.
        Only the containers broken now are restored. Join the returned thread to wait for it.
        """
        broken = self.break_health(color)

        def restore() -> None:
            time.sleep(seconds)
            self.restore_health(broken)

        thread = threading.Thread(target=restore, name=f"flap-{color}", daemon=True)
        thread.start()
        return thread

    def wait_health(self, color: str, wanted: str, timeout: float = 30) -> None:
        """Until every web container of `color` reports `wanted` (see `health`)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {name: self.health(name) for name in self.containers_of(color)}
            if seen and all(h == wanted for h in seen.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{color} is not {wanted} after {timeout}s: {seen}")
            time.sleep(0.2)

    # -- a per-colour sidecar ------------------------------------------------------------

    def add_sidecar(
        self, image: str = SIDECAR_IMAGE, *, name: str = "sidecar", healthcheck: bool = True
    ) -> None:
        """Add a per-colour service `name` on another image to this stack's compose.yml copy and
        to the config as `[services.<name>]` with no port: started per colour beside web, never
        proxied nor drained."""
        compose = self.root / "compose.yml"
        text = compose.read_text()
        check = (
            (
                '    healthcheck:\n      test: ["CMD", "true"]\n      interval: 1s\n      timeout: 2s\n'
                "      retries: 3\n"
            )
            if healthcheck
            else ""
        )
        block = (
            f"  {name}:\n    profiles: [app]\n    image: {image}\n    restart: unless-stopped\n"
            f"    stop_grace_period: 5s\n{check}    networks: [web]\n\n"
        )
        marker = "\nservices:\n"
        if marker not in text:
            raise AssertionError("compose.yml has no top-level `services:` to add the sidecar to")
        compose.write_text(text.replace(marker, marker + block, 1))
        current = tomllib.loads(self.config.read_text())
        self.settings["extra"] = self.settings.get("extra", "") + f"\n[services.{name}]\n"
        self.write_config(image=current["app"]["image"], **self.settings)

    def destroy(self) -> None:
        """Remove everything this stack created: every compose project named after it (both
        colours, shared services, the other apps it hosts), their volumes and network."""
        remove_stack(self.name)
        shutil.rmtree(self.root, ignore_errors=True)


def interrupt(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
