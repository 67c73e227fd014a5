"""Shared fixtures: the real services (Docker, Compose, registry) and the offline images.

Under CI=true a missing service fails the run; elsewhere the tests that need it are skipped
with the reason, so a laptop without Docker can still run the unit tests.
"""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import httpx
import pytest

from tests.harness.stack import APP_REPO, CADDY_IMAGE, REDIS_IMAGE, REGISTRY, Stack

IN_CI = os.environ.get("CI") == "true"


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
    require("this test", _missing_services())


# Test app versions: ref suffix -> build_app_image keyword arguments.
APP_VARIANTS: dict[str, dict[str, object]] = {
    "v1": {},
    "v2": {},
    "v3": {"healthy": False},                     # never healthy
    "slow": {"start_delay": 30},                  # boots slower than the tests' timeout
    "slowok": {"start_delay": 4},                 # slow boot within the timeout
    "sick": {"unhealthy_after": 4},               # healthy, then sick during the verify window
    "abrupt1": {"shutdown": "abrupt"},            # exits at once on SIGTERM
    "abrupt2": {"shutdown": "abrupt"},
}


@pytest.fixture(scope="session")
def app_images(real_services: None) -> dict[str, str]:
    """Build the offline images once per run and push every app variant to the registry."""
    from tests.harness import images

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    refs = {}
    for tag, options in APP_VARIANTS.items():
        ref = images.build_app_image(f"{APP_REPO}:{tag}", tag, **options)  # type: ignore[arg-type]
        images.push(ref)
        refs[tag] = ref
    return refs


@pytest.fixture
def stack(app_images: dict[str, str]) -> Iterator[Stack]:
    created = Stack.create()
    try:
        yield created
    finally:
        created.destroy()
