"""`status` points at Caddy's own evidence when an app breaks HTTP/1.1: requests that fail with
or without a swap are the app's, and must not be mistaken for the switch's."""

from __future__ import annotations

from types import SimpleNamespace

from watcher.config import Service
from watcher.engine.status import upstream_faults

ABORTED = ('{"level":"error","logger":"http.handlers.reverse_proxy","msg":"aborting with incomplete response",'
           '"upstream":"shop-web-green:8080","error":"unexpected EOF"}')


def engine(*lines: str) -> SimpleNamespace:
    docker = SimpleNamespace(caddy_log=lambda since: list(lines))
    config = SimpleNamespace(app="shop", services=(Service("web", 8080), Service("worker", None)))
    return SimpleNamespace(config=config, docker=docker)


def test_broken_responses_of_this_app_are_warned_about() -> None:
    warnings = upstream_faults(engine(ABORTED, ABORTED, '{"msg":"handled request"}'))  # type: ignore[arg-type]
    assert len(warnings) == 1 and "Caddy logged 2 response(s) of shop broken off by the app" in warnings[0]


def test_another_apps_faults_and_a_clean_log_say_nothing() -> None:
    other = ABORTED.replace("shop-web-green", "blog-web-green")
    assert upstream_faults(engine(other)) == []                    # type: ignore[arg-type]
    assert upstream_faults(engine()) == []                         # type: ignore[arg-type]
