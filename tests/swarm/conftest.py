"""Fixtures of the tests on a real multi-node Docker Swarm (tests/harness/swarm.py).

`swarm1` and `swarm3` are module-scoped: under pytest-xdist `--dist loadscope` a module runs on
one worker, which starts its swarm once, runs the module's tests in file order and tears the
swarm down; swarms of other workers live beside it (names, subnets and address pools are unique
per swarm, and at most WATCHER_SWARM_MAX swarms run on the machine at once). Every start first
removes what swarms of dead processes left.

Under CI=true a missing prerequisite (root, nsenter, ip, dockerd, docker-registry, curl, a
writable cgroup hierarchy) fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require
from tests.harness.stack import CADDY_IMAGE
from tests.harness.swarm import NETNS_DIR, LoadSummary, RunningLoad, Swarm, missing_tools
from watcher.caddyfile import render
from watcher.config import load_host

#: The test app's local repository on the main engine; `Swarm.push` copies it into a swarm.
SWARM_APP = "watcher-test/swarm-app"


@pytest.fixture(scope="session")
def swarm_images(real_services: None) -> dict[str, str]:
    """The edge's Caddy and the test app (v1, v2), built offline on the main engine once per
    machine: {"caddy": ref, "v1": ref, "v2": ref}."""
    require("the swarm tests", missing_tools())
    from tests.harness import images

    with images.exclusive():
        refs = {"caddy": images.build_caddy_image(CADDY_IMAGE)}
        for version in ("v1", "v2"):
            refs[version] = images.build_app_image(f"{SWARM_APP}:{version}", version)
    return refs


def _swarm(nodes: int, swarm_images: dict[str, str]) -> Iterator[Swarm]:
    require(f"a {nodes}-node swarm", missing_tools())
    swarm = Swarm(nodes)
    try:
        swarm.start()
        swarm.load_images(swarm_images["caddy"])  # the edge runs on node 1
        print(f"swarm {swarm.id} ({nodes} nodes) up: {json.dumps(_rounded(swarm.timings))}")
        yield swarm
    finally:
        swarm.close()
        print(f"swarm {swarm.id} down: {json.dumps(_rounded(swarm.timings))}")


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


@pytest.fixture(scope="module")
def swarm1(swarm_images: dict[str, str]) -> Iterator[Swarm]:
    """A 1-node swarm (a manager), its registry and edge network; the edge Caddy is not started."""
    yield from _swarm(1, swarm_images)


@pytest.fixture(scope="module")
def swarm3(swarm_images: dict[str, str]) -> Iterator[Swarm]:
    """A 3-node swarm (1 manager, 2 workers), its registry and edge network; the edge Caddy is
    not started (`Swarm.start_edge`)."""
    yield from _swarm(3, swarm_images)


# ----------------------------------------------------------------------- the app on swarm3

APP = "shop"
REPOSITORY = "watcher-test/app"
COMPOSE = """\
services:
  web:
    image: ${APP_IMAGE}:${APP_VERSION:-unset}
    environment:
      APP_VERSION: ${APP_VERSION:-unset}
    stop_grace_period: 20s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 5s
    deploy:
      replicas: {replicas}
      placement:
        max_replicas_per_node: 1
"""


@dataclass
class SwarmApp:
    """The app's project directory and the swarm it deploys to."""

    swarm: Swarm
    root: Path
    env: dict[str, str] = field(default_factory=dict)  # besides the test's, WATCHER_* and REDIS_* left out

    def argv(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """The real CLI's argv and environment: in node 1's network namespace, against node 1's
        dockerd (a manager), its output unbuffered."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "WATCHER_", "REDIS_"))}
        env["DOCKER_HOST"] = self.swarm.manager.host
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        netns = NETNS_DIR / self.swarm.manager.netns
        return ["nsenter", f"--net={netns}", sys.executable, "-m", "watcher", *args], env

    def watcher(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real CLI to its end."""
        argv, env = self.argv(*args)
        return subprocess.run(
            argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI in a process group (and session) of its own, stderr into stdout, so
        a test reads its lines as they come and can `os.killpg` it (never the test's own group)."""
        argv, env = self.argv(*args)
        return subprocess.Popen(
            argv,
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def deploy(self, *args: str) -> str:
        done = self.watcher(*args)
        assert done.returncode == 0, (
            f"watcher {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def status(self) -> dict:
        shown = self.watcher("status", "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    @property
    def route_file(self) -> Path:
        return self.swarm.edge_run_dir / f"{APP}.live"


def swarm_app(
    swarm: Swarm,
    swarm_images: dict[str, str],
    root: Path,
    *,
    replicas: int,
    broken: bool = False,
    compose: str = COMPOSE,
    config: str = "",
) -> SwarmApp:
    """The app ``shop`` (``platform = "swarm"``, ``replicas`` tasks at most one a node) in
    ``root``, its versions v1, v2, v3 (and with ``broken``: crash, sick) pushed to the swarm's
    registry, and the edge Caddy started with the Caddyfile `watcher caddyfile` renders; nothing
    is deployed yet. ``compose`` replaces the compose file, ``config`` is added to watcher.toml."""
    from tests.harness import images

    versions = ["v1", "v2", "v3", *(["crash", "sick"] if broken else [])]
    with images.exclusive():
        refs = {**swarm_images, "v3": images.build_app_image(f"{SWARM_APP}:v3", "v3")}
        if broken:
            refs["crash"] = images.build_app_image(f"{SWARM_APP}:crash", "crash", exit_at_start=3)
            refs["sick"] = images.build_app_image(f"{SWARM_APP}:sick", "sick", healthy=False)
    for version in versions:
        swarm.push(refs[version], REPOSITORY, version)
    (root / "compose.yml").write_text(compose.replace("{replicas}", str(replicas)))
    for color in ("blue", "green"):
        (root / f"compose.{color}.yml").write_text(
            f"services:\n  web:\n    labels:\n      watcher.color: {color}\n"
        )
    (root / ".env").write_text(f"APP_IMAGE={swarm.registry}/{REPOSITORY}\n")
    (root / "watcher.toml").write_text(f"""
[caddy]
run_dir = "{swarm.edge_run_dir}"

[registry]
plain_http = ["{swarm.registry}"]

[apps.{APP}]
image = "{swarm.registry}/{REPOSITORY}"
platform = "swarm"

[apps.{APP}.swarm]
network = "{swarm.edge_network}"

[apps.{APP}.services.web]
port = 8080

[apps.{APP}.health]
timeout = "90s"
interval = "1s"

[apps.{APP}.verify]
url = "{swarm.edge_url}/version"
window = "2s"

[apps.{APP}.drain]
timeout = "30s"
{config}""")
    host = load_host(root / "watcher.toml", {})
    swarm.edge_run_dir.mkdir(parents=True, exist_ok=True)
    (swarm.edge_run_dir / f"{APP}.live").write_text("none\n")  # nothing live yet: 503 at once
    swarm.start_edge(render(host, list(host.apps.values())))
    return SwarmApp(swarm, root)


def total(loads: list[RunningLoad]) -> LoadSummary:
    """What the loads were answered, added up (each waited for to its end)."""
    results = [load.result() for load in loads]
    errors: dict[str, int] = {}
    versions: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r.versions.items():
            versions[k] = versions.get(k, 0) + v
    return LoadSummary(
        sent=sum(r.sent for r in results),
        ok=sum(r.ok for r in results),
        failed=sum(r.failed for r in results),
        errors=errors,
        versions=versions,
        raw={"results": [r.raw for r in results]},
    )
