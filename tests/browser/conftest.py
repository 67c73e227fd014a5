"""A real two-app host for the dashboard's browser tests, and Debian's Chromium driven by
Playwright: Docker, Compose, Caddy, the registry, Redis, and one `watcher run` (receiver,
dashboard and worker) in a subprocess, talked to over real HTTP by a real browser.

The host is built once per module (two apps live on v1, about half a minute), so the tests
share it and run in file order: each leaves it as the next expects (v1 live, nothing paused).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from tests.conftest import require
from tests.harness import images
from tests.harness.stack import REGISTRY, REPO, Stack, free_port
from tests.harness.triggers import WatcherServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
API_TOKEN = "dash-" + secrets.token_hex(16)
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS = REPO / "docs"


@dataclass
class Host:
    stack: Stack
    apps: dict[str, str]  # app name -> image repository
    paths: dict[str, str]  # app name -> its path prefix on Caddy
    client: redis.Redis
    server: WatcherServer

    @property
    def url(self) -> str:
        return self.server.url


def _config(stack: Stack, apps: dict[str, str], paths: dict[str, str], redis_url: str, port: int) -> str:
    text = f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[webhook]
listen = "127.0.0.1:{port}"

[poll]
enabled = false
"""
    for name, shared in zip(apps, ('["caddy"]', "[]")):
        path = paths[name]
        text += f"""
[apps.{name}]
image = "{apps[name]}"
shared_services = {shared}

[apps.{name}.services.web]
port = 8080

[apps.{name}.caddy]
{f'path = "{path}"' if path else ""}

[apps.{name}.health]
timeout = "60s"
interval = "1s"

[apps.{name}.verify]
url = "{stack.url}{path}/version"
timeout = "15s"
window = "1s"

[apps.{name}.drain]
timeout = "5s"

[apps.{name}.policy]
kind = "regex"
include = "v(\\\\d+)"
"""
    return text


@pytest.fixture(scope="module")
def host(app_images: dict[str, str], redis_url: str) -> Iterator[Host]:
    """Two apps (`<stack>a` at /, `<stack>b` at /b) live on v1, with v2 in the registry too."""
    stack = Stack.create()
    suffix = uuid.uuid4().hex[:6]
    names = [f"{stack.name}a", f"{stack.name}b"]
    apps = {name: f"{REGISTRY}/dash{suffix}/{name}" for name in names}
    paths = dict(zip(names, ("", "/b")))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    port = free_port()
    server = None
    try:
        stack.config.write_text(_config(stack, apps, paths, redis_url, port))
        stack.write_caddyfile()
        for name in names:
            for version in ("v1", "v2"):
                images.push(images.build_app_image(f"{apps[name]}:{version}", version))
            stack.watcher("deploy", "v1", "--app", name, check=True)
        server = WatcherServer(
            stack.config, {"WATCHER_API_TOKEN": API_TOKEN}, port, command=("run", "--no-poll")
        )
        yield Host(stack, apps, paths, client, server.start())
    finally:
        if server is not None:
            server.stop()
        stack.destroy()
        for name in names:
            for found in client.scan_iter(f"watcher:{name}:*"):
                client.delete(found)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browser download is not used)."""
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} (apt-get install chromium; scripts/install.sh)"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -e '.[browser]')")
    require("the dashboard's browser tests", missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot(page: Page, name: str, *, docs: str | None = None) -> None:
    """Save a screenshot under tests/artifacts/, and as docs/`docs` too when WATCHER_SCREENSHOTS=docs
    (the docs' pictures are taken from the real thing)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("WATCHER_SCREENSHOTS") == "docs":
        page.screenshot(path=str(DOCS / docs), full_page=True)
