"""Push to live with no human step, on the real Docker engine, Compose, Caddy, Redis and a real
registry, under a strict non-retrying load on Caddy:

- `docker push` v2 -> the registry's own notification -> POST /hooks/registry -> the queue ->
  the worker of `watcher run` -> v2 live, 0 failed requests;
- POST /pause, push v3: nothing deploys; POST /resume: v3 goes live;
- polling alone (notifications refused): push v4 -> the poller -> v4 live, 0 failed requests.

One stack, one registry and one `watcher run` per step, in order (each test starts from the
version the one before left live), so the three flows cost one stack's start-up.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.harness import images
from tests.harness.registry import LocalRegistry, require_tool, running_registry
from tests.harness.stack import Stack, free_port
from tests.harness.traffic import under_load
from tests.harness.triggers import WatcherServer
from watcher.queue import DeployQueue, Status, Suspension

pytestmark = pytest.mark.integration

REGISTRY_TOKEN = "notify-" + secrets.token_hex(16)
API_TOKEN = "api-" + secrets.token_hex(16)


@dataclass
class E2E:
    stack: Stack
    registry: LocalRegistry
    repo: str
    port: int
    client: redis.Redis
    redis_url: str

    @property
    def queue(self) -> DeployQueue:
        return DeployQueue(self.client, self.stack.name)

    def finished(self, version: str) -> bool:
        """The job for `version` has ended and nothing runs (the old colour drained and stopped)."""
        last = self.queue.last_job()
        return bool(last and last.version == version and last.status.final and not self.queue.running())

    def push(self, version: str) -> None:
        """Build the test app `version` and `docker push` it (single-platform: one tagged manifest)."""
        images.push(images.build_app_image(f"{self.repo}:{version}", version))

    def run(self, *, poll: bool, registry_token: bool) -> WatcherServer:
        self.stack.write_config(
            image=self.repo,
            verify_window="1s",
            extra=f"""
[redis]
url = "{self.redis_url}"
lock_ttl = "10s"

[webhook]
listen = "127.0.0.1:{self.port}"

[poll]
enabled = {"true" if poll else "false"}
interval = "2s"
jitter = "0s"

[policy]
kind = "regex"
include = "v(\\\\d+)"
""",
        )
        env = {"WATCHER_API_TOKEN": API_TOKEN, "WEBHOOK_SECRET": "unused-" + secrets.token_hex(16)}
        if registry_token:
            env["WEBHOOK_REGISTRY_TOKEN"] = REGISTRY_TOKEN
        return WatcherServer(self.stack.config, env, self.port, command=("run",)).start()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s\n{log()[-6000:]}")


@pytest.fixture(scope="module")
def e2e(
    app_images: dict[str, str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
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
    with running_registry(binary, tmp_path_factory.mktemp("e2e-registry"), extra=notifications) as registry:
        repo = f"{registry.host}/e2e/app{uuid.uuid4().hex[:6]}"
        stack = Stack.create(image=repo)
        try:
            setup = E2E(stack, registry, repo, port, client, redis_url)
            setup.run(poll=False, registry_token=False).stop()  # writes the config
            setup.push("v1")
            deployed = stack.watcher("deploy", "v1")
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            yield setup
        finally:
            stack.destroy()
            for found in client.scan_iter(f"watcher:{stack.name}:*"):
                client.delete(found)


def test_push_notification_deploys_under_load(e2e: E2E) -> None:
    stack = e2e.stack
    assert stack.version() == "v1"
    server = e2e.run(poll=False, registry_token=True)
    try:
        with under_load(stack) as loads:
            pushed = time.monotonic()
            e2e.push("v2")
            took = wait_until(lambda: stack.version() == "v2", 120, "v2 live", server.log)
            live_after = time.monotonic() - pushed
            wait_until(lambda: e2e.finished("v2"), 120, "the v2 job ends", server.log)
    finally:
        server.stop()
    assert loads.failed == 0, loads.describe()
    assert loads.versions() == {"v1", "v2"}
    job = e2e.queue.history(1)[0]
    assert (job.version, job.status, job.source) == ("v2", Status.SUCCEEDED, "webhook"), job.describe()
    assert job.requested_by.startswith("registry notification ")
    assert re.search(r"registry delivery [0-9a-f-]{8,}.*: 202 enqueued", server.log()), server.log()[-3000:]
    print(
        f"push-to-live via registry notification: {live_after:.1f}s (live {took:.1f}s after the push began)"
    )


def test_pause_holds_a_pushed_version_until_resume(e2e: E2E) -> None:
    stack = e2e.stack
    assert stack.version() == "v2"
    server = e2e.run(poll=False, registry_token=True)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        paused = httpx.post(f"{server.url}/pause", json={"reason": "e2e freeze", "by": "test"}, headers=auth)
        assert paused.status_code == 200, paused.text
        e2e.push("v3")
        wait_until(lambda: [j.version for j in e2e.queue.waiting()] == ["v3"], 30, "v3 queued", server.log)
        time.sleep(4)  # a worker that ignored the pause would have started
        assert stack.version() == "v2"
        assert [j.status for j in e2e.queue.waiting()] == [Status.QUEUED]
        assert Suspension(e2e.client, stack.name).paused()["reason"] == "e2e freeze"
        resumed = httpx.post(f"{server.url}/resume", json={"by": "test"}, headers=auth)
        assert resumed.status_code == 200, resumed.text
        wait_until(lambda: stack.version() == "v3", 120, "v3 live after resume", server.log)
        wait_until(lambda: e2e.finished("v3"), 120, "the v3 job ends", server.log)
    finally:
        server.stop()
    job = e2e.queue.history(1)[0]
    assert (job.version, job.status) == ("v3", Status.SUCCEEDED), job.describe()


def test_polling_alone_deploys_under_load(e2e: E2E) -> None:
    stack = e2e.stack
    assert stack.version() == "v3"
    server = e2e.run(poll=True, registry_token=False)  # notifications refused (403): polling only
    try:
        with under_load(stack) as loads:
            pushed = time.monotonic()
            e2e.push("v4")
            wait_until(lambda: stack.version() == "v4", 120, "v4 live", server.log)
            live_after = time.monotonic() - pushed
            wait_until(lambda: e2e.finished("v4"), 120, "the v4 job ends", server.log)
    finally:
        server.stop()
    assert loads.failed == 0, loads.describe()
    job = e2e.queue.history(1)[0]
    assert (job.version, job.status, job.source) == ("v4", Status.SUCCEEDED, "poll"), job.describe()
    assert "registry delivery -: 403 refused" in server.log()
    print(f"push-to-live via polling (interval 2 s): {live_after:.1f}s")
