"""`status` points at Caddy's own evidence when an app breaks HTTP/1.1: requests that fail with
or without a swap are the app's, and must not be mistaken for the switch's. It also says when
Caddy's admin API is gone, which leaves every drain blind. Caddy's log is read once per line, not
on every call."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from watcher.backends import containers
from watcher.backends.caddy import CaddyAdmin
from watcher.backends.containers import Containers
from watcher.config import Service
from watcher.engine.status import admin_fault, upstream_faults

ABORTED = (
    '{"level":"error","logger":"http.handlers.reverse_proxy","msg":"aborting with incomplete response",'
    '"upstream":"shop-web-green:8080","error":"unexpected EOF"}'
)


def engine(*lines: str) -> SimpleNamespace:
    platform = SimpleNamespace(proxy_log=lambda since: list(lines))
    config = SimpleNamespace(name="shop", services=(Service("web", 8080), Service("worker", None)))
    return SimpleNamespace(config=config, platform=platform)


def test_broken_responses_of_this_app_are_warned_about() -> None:
    warnings = upstream_faults(engine(ABORTED, ABORTED, '{"msg":"handled request"}'))  # type: ignore[arg-type]
    assert len(warnings) == 1 and "Caddy logged 2 response(s) of shop broken off by the app" in warnings[0]


def test_another_apps_faults_and_a_clean_log_say_nothing() -> None:
    other = ABORTED.replace("shop-web-green", "blog-web-green")
    assert upstream_faults(engine(other)) == []  # type: ignore[arg-type]
    assert upstream_faults(engine()) == []  # type: ignore[arg-type]


def test_an_admin_api_that_does_not_answer_is_warned_about(tmp_path: Path) -> None:
    config = SimpleNamespace(drain=SimpleNamespace(timeout=30.0))
    gone = SimpleNamespace(
        config=config, caddy=CaddyAdmin(f"unix://{tmp_path / 'caddy-admin.sock'}", timeout=1)
    )
    warnings = admin_fault(gone)  # type: ignore[arg-type]
    assert len(warnings) == 1
    assert (
        "caddy-admin.sock did not answer" in warnings[0]
        and "waits the whole DRAIN_TIMEOUT (30s)" in warnings[0]
    )
    assert "restart Caddy" in warnings[0]
    answering = SimpleNamespace(
        config=config, caddy=SimpleNamespace(upstreams=lambda: {"shop-web-blue:8080": 0})
    )
    assert admin_fault(answering) == []  # type: ignore[arg-type]


class LoggingCaddy:
    """The Docker API of one running Caddy container whose log grows; counts what is asked."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.reads: list[float] = []

    def containers(self, filters: dict[str, object]) -> list[dict[str, str]]:
        return [{"Id": "caddy-1", "Image": "caddy:2"}, {"Id": "app-1", "Image": "acme/shop:1"}]

    def logs(self, container_id: str, *, since: float, **options: object) -> bytes:
        assert container_id == "caddy-1" and options["timestamps"]
        self.reads.append(since)
        stamped = [
            f"{datetime.fromtimestamp(t, UTC).isoformat()[:26]}Z {line}"
            for t, line in self.lines
            if t >= since
        ]
        return "\n".join(stamped).encode()


def test_each_caddy_log_line_is_read_from_docker_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` runs on every dashboard refresh: the ten minutes of Caddy's log are read once, then
    only what came after."""
    monkeypatch.setattr(containers, "_CADDY_LOGS", {})
    api = LoggingCaddy()
    docker = Containers.__new__(Containers)
    docker.client = SimpleNamespace(api=api)  # type: ignore[assignment]
    now = time.time()
    api.lines = [(now - 700, "too old"), (now - 300, "first"), (now - 100, "second")]
    assert docker.caddy_log(now - 600) == ["first", "second"]
    api.lines.append((now - 50, "third"))
    assert docker.caddy_log(now - 590) == ["first", "second", "third"]
    assert api.reads[1] == pytest.approx(now - 100, abs=1e-3), "the second read starts at the last line read"
    assert docker.caddy_log(now - 200) == ["second", "third"]
