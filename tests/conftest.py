"""Shared fixtures: the real services (Docker, Compose, registry, Redis) and the offline images.

Under CI=true a missing service fails the run; elsewhere the tests that need it are skipped
with the reason, so a laptop without Docker can still run the unit tests.

`make test` runs the tests side by side on pytest-xdist workers (`--dist loadscope`), then
those marked `serial` alone. Every test owns what it changes (a unique stack, compose project,
port, app name in Redis, and its worker's app repository), so modules run beside each other;
each module goes to one worker, which builds its module-scoped fixtures (a stack, a host) once
and runs its tests in file order. `serial` marks the few that disturb the whole
machine (they restart the Docker engine) or whose time bounds need the CPU to themselves: they
never run beside another test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
import redis

from tests.harness.leftovers import sweep
from tests.harness.stack import (
    APP_REPO,
    CADDY_IMAGE,
    REDIS_IMAGE,
    REGISTRY,
    SHARED_APP_REPO,
    SIDECAR_IMAGE,
    Stack,
)

if TYPE_CHECKING:
    from tests.harness.redis_server import RedisServer

IN_CI = os.environ.get("CI") == "true"
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if WORKERS > 1 and item.get_closest_marker("serial"):
        pytest.fail(
            "marked serial (it disturbs the whole machine): run it alone, `pytest -m serial`, "
            "and the others with -m 'not serial' (see `make test`)",
            pytrace=False,
        )


def _missing_services() -> list[str]:
    missing = []
    try:
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        missing.append("Docker engine (docker info failed)")
    try:
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        missing.append("Docker Compose v2 (docker compose version failed)")
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError:
        missing.append(f"registry at {REGISTRY} (run scripts/services.sh start)")
    return missing


def require(what: str, missing: list[str]) -> None:
    if missing:
        message = f"{what} needs: {'; '.join(missing)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def real_services() -> None:
    """The services are up, and the test stacks of earlier runs that nobody owns any more are gone."""
    require("this test", _missing_services())
    swept = sweep()
    if swept:
        print(f"removed {len(swept)} compose projects left by earlier runs: {' '.join(swept)}")


SHARED_REDIS = os.environ.get("WATCHER_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis (scripts/services.sh start); tests use db 15 and unique app names."""
    try:
        redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=3).ping()
    except redis.exceptions.RedisError as exc:
        require("this test", [f"Redis at {SHARED_REDIS} ({exc}; run scripts/services.sh start)"])
    return SHARED_REDIS


@pytest.fixture
def app_name(redis_url: str) -> Iterator[str]:
    """A fresh app name; its `watcher:<app>:*` keys, and every key under it as a `[redis]
    prefix` (`<app>:*`), are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"watcher:{name}:*", f"{name}:*"):
        for found in client.scan_iter(pattern):
            client.delete(found)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop and restart."""
    from tests.harness.redis_server import RedisServer

    if shutil.which("redis-server") is None:
        require("this test", ["redis-server (run scripts/install.sh)"])
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.destroy()


# Test app versions: ref suffix -> build_app_image keyword arguments.
APP_VARIANTS: dict[str, dict[str, object]] = {
    "v1": {},
    "v2": {},
    "v3": {"healthy": False},  # never healthy
    "slow": {"start_delay": 30},  # boots slower than the tests' timeout
    "slowok": {"start_delay": 4},  # slow boot within the timeout
    "sick": {"unhealthy_after": 4},  # healthy, then sick during the verify window
    "abrupt1": {"shutdown": "abrupt"},  # exits at once on SIGTERM
    "abrupt2": {"shutdown": "abrupt"},
    "crash": {"exit_at_start": 1},  # exits 1 at once: restart-loops under unless-stopped
    "loop127": {"entrypoint": ["/bin/no-such-app"]},  # exec fails with 127 under init: true; loops
    "wrongver": {"served_version": "not-wrongver"},  # healthy, but GET /version is not its tag
    "err5": {"error_rate": 0.05},  # healthy and verified, but 5 % of /cgi-bin/work answer 500
}


@pytest.fixture(scope="session")
def app_images(real_services: None) -> dict[str, str]:
    """Build the offline images once per machine (the first worker builds them, the others find
    them built) and push every app variant to the registry, as SHARED_APP_REPO and APP_REPO."""
    from tests.harness import images

    own = APP_REPO != SHARED_APP_REPO  # under xdist: this worker's repository, of the same images
    refs = {}
    with images.exclusive():
        images.build_caddy_image(CADDY_IMAGE)
        images.build_redis_image(REDIS_IMAGE)
        images.push(images.build_sidecar_image(SIDECAR_IMAGE))  # the engine pulls every configured service
        for tag, options in APP_VARIANTS.items():
            refs[tag] = images.build_app_image(f"{SHARED_APP_REPO}:{tag}", tag, **options)  # type: ignore[arg-type]
            images.push(refs[tag])
            if own:
                refs[tag] = images.tag(refs[tag], f"{APP_REPO}:{tag}")
    if own:
        for ref in refs.values():
            images.push(ref)  # its blobs are in the registry already: manifests only
    return refs


@pytest.fixture
def stack(app_images: dict[str, str]) -> Iterator[Stack]:
    created = Stack.create()
    try:
        yield created
    finally:
        created.destroy()
