"""`status` points at Caddy's own evidence when an app breaks HTTP/1.1: requests that fail with
or without a swap are the app's, and must not be mistaken for the switch's. It also says when
Caddy's admin API is gone, which leaves every drain blind, and that Caddy is down (its site
takes no connection), which leaves nothing served. Caddy's log is read once per line, not
on every call."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from watcher.backends import containers
from watcher.backends.caddy import Front, probe
from watcher.backends.containers import Containers
from watcher.config import Service
from watcher.engine.status import format_status, format_summary, proxy_faults, upstream_faults

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


@pytest.fixture
def listening() -> Iterator[str]:
    """A URL whose host and port take connections (as Caddy's site does)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/version"


def closed_url() -> str:
    """A URL nothing listens at (as when Caddy's container is stopped)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"http://127.0.0.1:{port}/version"


def proxy_engine() -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(name="shop", drain=SimpleNamespace(timeout=30.0)))


def test_an_admin_api_that_does_not_answer_is_warned_about(tmp_path: Path, listening: str) -> None:
    front = probe(f"unix://{tmp_path / 'caddy-admin.sock'}", listening, timeout=1)
    assert front.up and not front.admin
    warnings = proxy_faults(proxy_engine(), front, live=True)  # type: ignore[arg-type]
    assert len(warnings) == 1
    assert (
        "caddy-admin.sock did not answer" in warnings[0]
        and "waits the whole DRAIN_TIMEOUT (30s)" in warnings[0]
    )
    assert "restart Caddy" in warnings[0] and "down" not in warnings[0]
    assert proxy_faults(proxy_engine(), front, live=False) == []  # type: ignore[arg-type]
    answering = Front(front.site, "", "")
    assert proxy_faults(proxy_engine(), answering, live=True) == []  # type: ignore[arg-type]


def test_caddy_that_takes_no_connection_is_down_and_status_says_nothing_is_served(tmp_path: Path) -> None:
    """Down is judged by the site's port (a stopped container refuses it), not by the admin
    socket alone: with the socket gone but the port taking connections, Caddy still serves."""
    front = probe(f"unix://{tmp_path / 'caddy-admin.sock'}", closed_url(), timeout=1)
    assert not front.up and front.to_dict()["up"] is False
    warnings = proxy_faults(proxy_engine(), front, live=True)  # type: ignore[arg-type]
    assert len(warnings) == 1 and warnings[0].startswith(
        "Caddy is down: nothing takes connections at 127.0.0.1:"
    )
    assert "nothing of shop is served" in warnings[0] and "admin API does not answer either" in warnings[0]
    assert proxy_faults(proxy_engine(), front, live=False) == []  # type: ignore[arg-type]  # not started yet
    named = proxy_faults(proxy_engine(), front, True, ["shop-caddy-1: Exited (0) 3 seconds ago"])  # type: ignore[arg-type]
    assert "; Docker: shop-caddy-1: Exited (0) 3 seconds ago, so nothing of shop is served" in named[0]
    data = {
        "app": "shop",
        "live_color": "blue",
        "live_version": "v1",
        "live_health": "healthy",
        "live_since": "2026-12-07T11:00:00+00:00",
        "live_how": "verified",
        "proxy": front.to_dict(),
        "rollback": None,
        "previous_version": None,
        "colors": {},
        "lock": None,
        "warnings": warnings,
    }
    text = format_status(data)
    assert text.splitlines()[1:3] == [
        "live: blue v1 (healthy, since 2026-12-07T11:00:00+00:00, verified)",
        f"caddy: DOWN at {front.site} (Connection refused): nothing is served",
    ], text
    row = format_summary([{**data, "live_since": "2026-12-07"}]).splitlines()[1]
    assert row.split()[:5] == ["shop", "blue", "v1", "2026-12-07", "healthy,"] and "caddy down" in row, row


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
