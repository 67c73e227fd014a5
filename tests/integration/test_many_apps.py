"""Three apps, one Caddy, one `watcher run`, on the real Docker engine, Compose, Caddy, Redis and a
registry that sends its own notifications:

- apps A and B both have a service named `web` (one set of compose files, two apps); app C has
  two stateless services (web and a worker on another image) in its own project directory;
- the three images are pushed in the same second: the registry notifies every push, and the
  organisation webhook delivers a signed `package` event for each: three jobs, no more;
- `[worker] concurrency = 2`: two swaps side by side; the default 1: one after the other;
- each app ends live on v2 with 0 failed requests under load on every app's route;
- a second delivery for an app whose swap runs coalesces (no second job);
- a delivery for a package no app deploys: 200 with the reason; a paused app's push is queued,
  not run, until resume.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import SIDECAR_IMAGE
from tests.harness import images, waiting
from tests.harness.registry import LocalRegistry, require_tool, running_registry
from tests.harness.stack import Stack, free_port
from tests.harness.traffic import under_loads
from tests.harness.triggers import WatcherServer, github_delivery
from tests.unit.test_github_payloads import github_package
from watcher.queue import DeployQueue, Job, Status, Suspension

pytestmark = pytest.mark.integration

REGISTRY_TOKEN = "notify-" + secrets.token_hex(16)
SECRET = "hook-" + secrets.token_hex(16)
API_TOKEN = "api-" + secrets.token_hex(16)

C_COMPOSE = """\
services:
  web:
    profiles: [app]
    image: ${APP_IMAGE}:${APP_VERSION:-unset}
    init: true
    restart: unless-stopped
    stop_grace_period: 20s
    environment:
      APP_VERSION: ${APP_VERSION:-unset}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 5s
    networks: [web]
  worker:
    profiles: [app]
    image: %(sidecar)s
    restart: unless-stopped
    stop_grace_period: 5s
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      timeout: 2s
      retries: 3
    networks: [web]

networks:
  web:
    name: ${STACK_NAME}_web
    external: true
"""

C_OVERLAY = """\
services:
  web:
    labels:
      watcher.color: %(color)s
    networks:
      web:
        aliases: ["${WATCHER_APP}-web-%(color)s"]
  worker:
    labels:
      watcher.color: %(color)s
"""


@dataclass
class Host:
    """The throw-away host: the stack (A's compose files and Caddy), C's directory, the config."""

    stack: Stack
    registry: LocalRegistry
    apps: dict[str, str]  # app name -> image repository
    paths: dict[str, str]  # app name -> path prefix on Caddy ("" for A)
    client: redis.Redis
    redis_url: str
    port: int
    pushed: dict[tuple[str, str], str] = field(default_factory=dict)  # (app, version) -> digest

    def queue(self, app: str) -> DeployQueue:
        return DeployQueue(self.client, app)

    def version(self, app: str) -> str | None:
        try:
            response = httpx.get(f"{self.stack.url}{self.paths[app]}/version", timeout=5)
        except httpx.HTTPError:
            return None
        return response.text.strip() if response.is_success else None

    def push(self, app: str, version: str) -> None:
        self.pushed[app, version] = images.push(
            images.build_app_image(f"{self.apps[app]}:{version}", version)
        )

    def write_config(self, concurrency: int) -> None:
        a, b, c = self.apps
        sections = [
            f"""
[caddy]
run_dir = ".watcher/run"

[redis]
url = "{self.redis_url}"
lock_ttl = "10s"

[worker]
concurrency = {concurrency}

[webhook]
listen = "127.0.0.1:{self.port}"

[poll]
enabled = false
"""
        ]
        for name, directory, shared, extra in (
            (a, ".", '["caddy"]', ""),
            (b, ".", "[]", ""),
            (c, "c", "[]", f"[apps.{c}.services.worker]\n"),
        ):
            path = self.paths[name]
            sections.append(f"""
[apps.{name}]
image = "{self.apps[name]}"
project_dir = "{directory}"
shared_services = {shared}

[apps.{name}.services.web]
port = 8080
{extra}
[apps.{name}.caddy]
{f'path = "{path}"' if path else ""}

[apps.{name}.health]
timeout = "60s"
interval = "1s"

[apps.{name}.verify]
url = "{self.stack.url}{path}/version"
timeout = "15s"
window = "1s"

[apps.{name}.policy]
kind = "regex"
include = "v(\\\\d+)"
""")
        self.stack.config.write_text("".join(sections))
        self.stack.write_caddyfile()

    def run(self) -> WatcherServer:
        env = {
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_REGISTRY_TOKEN": REGISTRY_TOKEN,
            "WATCHER_API_TOKEN": API_TOKEN,
        }
        return WatcherServer(self.stack.config, env, self.port, command=("run", "--no-poll")).start()

    def deliver(self, server: WatcherServer, app: str, version: str) -> httpx.Response:
        """The organisation webhook's signed `package` event for `app`'s image, naming its digest."""
        registry, _, repository = self.apps[app].partition("/")
        owner, _, name = repository.partition("/")
        payload = github_package(
            tag=version,
            owner=owner,
            name=name,
            package_url=f"{registry}/{repository}:{version}",
            digest=self.pushed[app, version],
        )
        return github_delivery(server.url, "package", payload, SECRET)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    waiting.wait_until(condition, timeout, what, poll=0.1, detail=lambda: log()[-8000:])


@pytest.fixture
def host(app_images: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[Host]:
    binary = require_tool("docker-registry")
    port = free_port()
    notifications = {
        "notifications": {
            "endpoints": [
                {
                    "name": "watcher",
                    "url": f"http://127.0.0.1:{port}/hooks/registry",
                    "headers": {"Authorization": [f"Bearer {REGISTRY_TOKEN}"]},
                    "timeout": "2s",
                    "threshold": 3,
                    "backoff": "1s",
                }
            ]
        }
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with running_registry(binary, tmp_path / "registry", extra=notifications) as registry:
        stack = Stack.create()
        suffix = uuid.uuid4().hex[:6]
        names = [f"{stack.name}a", f"{stack.name}b", f"{stack.name}c"]
        apps = {name: f"{registry.host}/org{suffix}/{name}" for name in names}
        paths = dict(zip(names, ("", "/b", "/c")))
        c_dir = stack.root / "c"
        c_dir.mkdir()
        (c_dir / "compose.yml").write_text(C_COMPOSE % {"sidecar": SIDECAR_IMAGE})
        for color in ("blue", "green"):
            (c_dir / f"compose.{color}.yml").write_text(C_OVERLAY % {"color": color})
        shutil.copy(stack.root / ".env", c_dir / ".env")
        setup = Host(stack, registry, apps, paths, client, redis_url, port)
        try:
            setup.write_config(concurrency=1)
            for name in names:
                setup.push(name, "v1")
                deployed = stack.watcher("deploy", "v1", "--app", name)
                assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            yield setup
        finally:
            stack.destroy()  # every app's projects: all are named after the stack
            for name in names:
                for found in client.scan_iter(f"watcher:{name}:*"):
                    client.delete(found)


def overlap(jobs: list[Job]) -> bool:
    """Did any two of these jobs run at the same time?"""
    spans = sorted((job.started or 0.0, job.finished or 0.0) for job in jobs)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


@pytest.mark.parametrize("concurrency", [2, 1])
def test_three_apps_pushed_at_once_go_live_under_load(host: Host, concurrency: int) -> None:
    host.write_config(concurrency)
    names = list(host.apps)
    assert [host.version(name) for name in names] == ["v1", "v1", "v1"]
    server = host.run()
    live_after: dict[str, float] = {}
    try:
        with under_loads(
            host.stack,
            list(host.paths.values()),
            fast_rate=40,
            slow_rate=8,
            fast_connections=8,
            slow_connections=16,
        ) as loads:
            pushed = time.monotonic()
            pushes = [threading.Thread(target=host.push, args=(name, "v2")) for name in names]
            for thread in pushes:
                thread.start()
            for thread in pushes:
                thread.join()
            answers = [host.deliver(server, name, "v2") for name in names]
            assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
            # A second delivery while the first app's swap runs: the same push, no second job.
            wait_until(lambda: bool(host.queue(names[0]).running()), 60, "the first swap runs", server.log)
            again = host.deliver(server, names[0], "v2")
            assert again.status_code in (200, 202) and "already" in again.text, again.text

            def all_live() -> bool:
                for name in names:
                    if name not in live_after and host.version(name) == "v2":
                        live_after[name] = time.monotonic() - pushed
                return len(live_after) == len(names)

            wait_until(all_live, 240, "every app v2 live", server.log)
            for name in names:
                wait_until(
                    lambda n=name: (
                        bool(host.queue(n).history(1))
                        and host.queue(n).history(1)[0].status.final
                        and not host.queue(n).running()
                    ),
                    120,
                    f"{name}'s job ends",
                    server.log,
                )
    finally:
        server.stop()
    report = {}
    for name, path in host.paths.items():
        each = loads[path]
        assert each.failed == 0, f"{name}: {each.describe()}"
        assert each.versions() == {"v1", "v2"}, f"{name}: {each.describe()}"
        report[name] = {
            "push_to_live_s": round(live_after[name], 1),
            "sent": each.sent,
            "failed": each.failed,
        }
    jobs = [job for name in names for job in host.queue(name).history(5)]
    assert [(j.version, j.status) for j in jobs] == [("v2", Status.SUCCEEDED)] * 3, [
        j.describe() for j in jobs
    ]
    assert all(int(host.client.get(f"watcher:{name}:seq") or 0) == 1 for name in names)  # one job per push
    assert overlap(jobs) is (concurrency > 1), [(j.app, j.started, j.finished) for j in jobs]
    print(f"concurrency {concurrency}: " + json.dumps(report))


def test_org_webhook_unknown_package_and_a_paused_app(host: Host) -> None:
    names = list(host.apps)
    server = host.run()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        payload = github_package(
            tag="v9", owner="someone", name="else", package_url="ghcr.io/someone/else:v9"
        )
        unknown = github_delivery(server.url, "package", payload, SECRET)
        assert unknown.status_code == 200 and "no configured app deploys" in unknown.text, unknown.text

        paused = httpx.post(f"{server.url}/pause", json={"app": names[2], "reason": "freeze"}, headers=auth)
        assert paused.status_code == 200, paused.text
        host.push(names[2], "v2")
        answer = host.deliver(server, names[2], "v2")
        assert answer.status_code in (200, 202), answer.text
        wait_until(
            lambda: [j.version for j in host.queue(names[2]).waiting()] == ["v2"], 30, "v2 queued", server.log
        )
        time.sleep(3)  # a worker that ignored the pause would have started
        assert host.version(names[2]) == "v1" and not host.queue(names[2]).running()
        assert Suspension(host.client, names[2]).paused() is not None
        assert Suspension(host.client, names[0]).paused() is None  # one app paused, not all

        resumed = httpx.post(f"{server.url}/resume", json={"app": names[2]}, headers=auth)
        assert resumed.status_code == 200, resumed.text
        wait_until(lambda: host.version(names[2]) == "v2", 120, "v2 live after resume", server.log)
    finally:
        server.stop()


def test_a_key_prefix_keeps_two_installations_apart(redis_url: str, tmp_path: Path) -> None:
    """Two installations on one Redis: with `[redis] prefix`, one's queue and pause are not the other's."""
    from tests.unit.test_many_apps import app, project, watcher

    name = f"p{uuid.uuid4().hex[:8]}"
    body = (
        f'[redis]\nurl = "{redis_url}"\nprefix = "other"\n'
        + app(name, directory="shop")
        + app(f"{name}b", directory="blog", extra=f'[apps.{name}b.caddy]\npath = "/b"\n')
    )
    config = project(tmp_path, body)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        paused = watcher(config, "pause", "--all", "--reason", "freeze")
        assert paused.returncode == 0 and paused.stdout.count("paused by") == 2, paused.stderr
        for each in (name, f"{name}b"):
            assert client.exists(f"other:watcher:{each}:paused") and not client.exists(
                f"watcher:{each}:paused"
            )
            assert not Suspension(client, each).paused() and Suspension(client, each, "other").paused()
        assert watcher(config, "resume", "--all").returncode == 0
        assert not client.exists(f"other:watcher:{name}:paused")
    finally:
        for found in client.scan_iter(f"other:watcher:{name}*"):
            client.delete(found)
