"""Health judged by watcher's own HTTP GET (`[services.web.health] path = "/up"`) on an image
with no shell, no wget and no curl (tests/harness/images.py `build_shellless_app_image`), on the
real Docker engine, Compose, Caddy and registry, through the `watcher` CLI: the compose file
has no Docker healthcheck at all."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.harness import images
from tests.harness.stack import REGISTRY, Stack
from tests.harness.traffic import under_load

pytestmark = pytest.mark.integration

SHELLLESS_REPO = f"{REGISTRY}/watcher-test/shellless-app"
VARIANTS: dict[str, dict[str, object]] = {
    "s1": {},
    "s2": {},
    "s500": {"up_status": 500},  # /up answers 500, every other path answers its version
    "snever": {"port": 8081},  # nothing ever listens on the health port
    "scrash": {"exit_at_start": True},  # exits 1 at once: restart-loops under unless-stopped
}
HEALTH = '[services.web.health]\npath = "/up"\n'


@pytest.fixture(scope="module")
def shellless(real_services: None) -> str:
    with images.exclusive():
        for tag, options in VARIANTS.items():
            images.push(images.build_shellless_app_image(f"{SHELLLESS_REPO}:{tag}", tag, **options))  # type: ignore[arg-type]
    return SHELLLESS_REPO


@pytest.fixture
def stack(shellless: str) -> Iterator[Stack]:
    created = Stack.create(image=shellless, extra=HEALTH)
    compose = created.root / "compose.yml"
    text, n = re.subn(
        r"\n    healthcheck:\n      test: \[\"CMD\", \"wget\".*\n(?:      .*\n)*", "\n", compose.read_text()
    )
    assert n == 1, "the example compose file's web healthcheck was not found"
    compose.write_text(text)
    try:
        yield created
    finally:
        created.destroy()


def deploy(stack: Stack, version: str) -> subprocess.CompletedProcess[str]:
    proc = stack.watcher("deploy", version)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "no healthcheck" not in proc.stdout + proc.stderr, "judged by Docker's running state"
    return proc


def web(stack: Stack, color: str) -> dict[str, object]:
    (container,) = stack.status()["colors"][color]["containers"]
    return container


def test_deploy_v1_then_v2_under_load_judged_by_http(stack: Stack) -> None:
    deploy(stack, "s1")
    (blue,) = stack.containers_of("blue")
    healthcheck = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Healthcheck}}", blue], capture_output=True, text=True
    )
    assert healthcheck.stdout.strip() == "null", "the container has no Docker healthcheck"
    with under_load(stack) as loads:
        deploy(stack, "s2")
    assert loads.failed == 0, loads.describe()
    assert loads.sent > 500 and loads.versions() == {"s1", "s2"}
    assert stack.version() == "s2"
    green = web(stack, "green")
    assert green["health"] == "healthy"
    assert re.fullmatch(r"GET http://[0-9.]+:8080/up: 200", str(green["probe"])), green
    text = stack.watcher("status", check=True).stdout
    assert re.search(r"-web-1: running, healthy \[GET http://[0-9.]+:8080/up: 200\]", text), text


def test_an_up_that_answers_500_fails_the_deploy_with_nothing_switched(stack: Stack) -> None:
    deploy(stack, "s1")
    t0 = time.monotonic()
    proc = stack.watcher("deploy", "s500")
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert re.search(r"failed its health check .*GET http://[0-9.]+:8080/up: 500 for \d+s", out), out
    assert took < 45, f"wrong answers end the wait after seconds, not HEALTH_CHECK_TIMEOUT: {took:.0f}s"
    status = stack.status()
    assert (status["live_color"], status["live_version"], stack.version()) == ("blue", "s1", "s1")
    assert status["colors"]["green"]["containers"] == []


def test_a_server_that_never_answers_fails_at_the_timeout_saying_why(stack: Stack) -> None:
    deploy(stack, "s1")
    stack.write_config(image=SHELLLESS_REPO, health_timeout="6s", extra=HEALTH)
    proc = stack.watcher("deploy", "snever")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "HEALTH_CHECK_TIMEOUT" in out and "connection refused" in out, out
    assert (stack.status()["live_version"], stack.version()) == ("s1", "s1")


def test_a_version_that_exits_fails_at_once(stack: Stack) -> None:
    deploy(stack, "s1")
    t0 = time.monotonic()
    proc = stack.watcher("deploy", "scrash")
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "restarting" in out, out
    assert took < 40, f"a crash ends the wait at once, not at HEALTH_CHECK_TIMEOUT: {took:.0f}s"
    assert (stack.status()["live_version"], stack.version()) == ("s1", "s1")


def test_rollback_is_judged_by_http_too(stack: Stack) -> None:
    deploy(stack, "s1")
    deploy(stack, "s2")
    with under_load(stack) as loads:
        proc = stack.watcher("rollback")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "reusing retained blue containers of s1" in out and "no healthcheck" not in out, out
    assert loads.failed == 0 and loads.sent > 0, loads.describe()
    assert stack.version() == "s1"
    status = json.loads(stack.watcher("status", "--json", check=True).stdout)
    assert status["live_health"] == "healthy"
    assert str(status["colors"]["blue"]["containers"][0]["probe"]).endswith(":8080/up: 200")


def test_a_docker_healthcheck_that_cannot_run_in_the_image_is_ignored(shellless: str) -> None:
    """The compose file keeps its `CMD wget` healthcheck, which fails in this image (no wget):
    with a health path, watcher judges by its own GET and deploys."""
    stack = Stack.create(image=shellless, extra=HEALTH)
    try:
        deploy(stack, "s1")
        (blue,) = stack.containers_of("blue")
        deadline = time.monotonic() + 20
        while stack.health(blue) != "unhealthy":
            assert time.monotonic() < deadline, f"Docker's healthcheck did not fail: {stack.health(blue)}"
            time.sleep(0.5)
        status = stack.status()
        assert (status["live_version"], status["live_health"]) == ("s1", "healthy")
        assert str(web(stack, "blue")["probe"]).endswith(":8080/up: 200")
    finally:
        stack.destroy()
