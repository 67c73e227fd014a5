"""`status` points at Caddy's own evidence when an app breaks HTTP/1.1: requests that fail with
or without a swap are the app's, and must not be mistaken for the switch's. It also says when
Caddy's admin API is gone, which leaves every drain blind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from watcher.backends.caddy import CaddyAdmin
from watcher.config import Service
from watcher.engine.status import admin_fault, upstream_faults

ABORTED = (
    '{"level":"error","logger":"http.handlers.reverse_proxy","msg":"aborting with incomplete response",'
    '"upstream":"shop-web-green:8080","error":"unexpected EOF"}'
)


def engine(*lines: str) -> SimpleNamespace:
    platform = SimpleNamespace(proxy_log=lambda since: list(lines))
    config = SimpleNamespace(app="shop", services=(Service("web", 8080), Service("worker", None)))
    return SimpleNamespace(config=config, platform=platform)


def test_broken_responses_of_this_app_are_warned_about() -> None:
    warnings = upstream_faults(engine(ABORTED, ABORTED, '{"msg":"handled request"}'))  # type: ignore[arg-type]
    assert len(warnings) == 1 and "Caddy logged 2 response(s) of shop broken off by the app" in warnings[0]


def test_another_apps_faults_and_a_clean_log_say_nothing() -> None:
    other = ABORTED.replace("shop-web-green", "blog-web-green")
    assert upstream_faults(engine(other)) == []  # type: ignore[arg-type]
    assert upstream_faults(engine()) == []  # type: ignore[arg-type]


def test_an_admin_api_that_does_not_answer_is_warned_about(tmp_path: Path) -> None:
    config = SimpleNamespace(drain_timeout=30.0)
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
