"""Verification through the public URL compares the version, not just a 200: against a tiny
HTTP server on 127.0.0.1 that answers what each test tells it to."""

from __future__ import annotations

import io
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.unit.test_config import make_project
from watcher.caddyfile import render
from watcher.config import load_host
from watcher.engine.verification import PROBE_SECRET, answer, answered_version, mark_probes, wait_for_version
from watcher.progress import Progress

# path -> (status, headers, body, delay seconds)
ROUTES: dict[str, tuple[int, dict[str, str], bytes, float]] = {
    "/plain": (200, {}, b"1.2.3\n", 0),
    "/multiline": (200, {}, b"  2.0.0  \nbuilt yesterday\n", 0),
    "/json": (
        200,
        {"Content-Type": "application/json"},
        json.dumps({"version": "3.1", "ok": True}).encode(),
        0,
    ),
    "/json-number": (200, {}, b'{"version": 4}', 0),
    "/json-no-version": (200, {}, b'{"status": "ok"}', 0),
    "/json-broken": (200, {}, b'{"version": ', 0),
    "/header": (200, {"X-App-Version": "5.0"}, b"body-version", 0),
    "/empty": (200, {}, b"", 0),
    "/created": (201, {}, b"6.0", 0),
    "/unavailable": (503, {}, b"1.0", 0),
    "/missing": (404, {}, b"1.0", 0),
    "/redirect": (302, {"Location": "/plain"}, b"", 0),
    "/slow": (200, {}, b"7.0", 2.0),
    "/unavailable-header": (503, {"X-App-Version": "5.0"}, b"", 0),
}


class Handler(BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Handler.seen_headers.append(dict(self.headers))
        status, headers, body, delay = ROUTES.get(self.path, (404, {}, b"", 0))
        if delay:
            time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/plain", "1.2.3"),
        ("/multiline", "2.0.0"),
        ("/json", "3.1"),
        ("/json-number", "4"),
        ("/created", "6.0"),
    ],
)
def test_body_modes(server: str, path: str, version: str) -> None:
    assert answered_version(server + path, None) == version


def test_header_mode(server: str) -> None:
    assert answered_version(server + "/header", "X-App-Version") == "5.0"
    assert answered_version(server + "/header", "x-app-version") == "5.0"  # headers are case-insensitive
    assert answered_version(server + "/plain", "X-App-Version") is None  # header absent: no version


@pytest.mark.parametrize("path", ["/unavailable", "/missing", "/redirect", "/empty", "/json-broken"])
def test_no_version(server: str, path: str) -> None:
    assert answered_version(server + path, None) is None


def test_non_2xx_in_header_mode(server: str) -> None:
    assert answered_version(server + "/unavailable-header", "X-App-Version") is None


def test_connection_refused() -> None:
    assert answered_version(f"http://127.0.0.1:{closed_port()}/version", None) is None


def test_an_answer_tells_no_answer_from_an_error_status(server: str) -> None:
    """`deploy` reports "Caddy does not answer" and "answers 503" differently from "no colour
    header": each has another fix."""
    refused = answer(f"http://127.0.0.1:{closed_port()}/version", None)
    assert (refused.version, refused.color, refused.status) == (None, None, None)
    assert refused.error and "ConnectError" in refused.error and "no answer" in str(refused)
    unavailable = answer(server + "/unavailable", None)
    assert (unavailable.version, unavailable.status, unavailable.error) == (None, 503, None)
    plain = answer(server + "/plain", None)
    assert (plain.version, plain.status, plain.error) == ("1.2.3", 200, None)


def test_timeout(server: str) -> None:
    started = time.monotonic()
    assert answered_version(server + "/slow", None, timeout=0.3) is None
    assert time.monotonic() - started < 1.5


def test_asks_caches_not_to_answer(server: str) -> None:
    Handler.seen_headers.clear()
    answered_version(server + "/plain", None)
    assert Handler.seen_headers[-1].get("Cache-Control") == "no-cache"


def test_json_without_version_is_no_version(server: str) -> None:
    assert answered_version(server + "/json-no-version", None) is None


def test_proxy_environment_does_not_hijack_loopback(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert answered_version(server + "/plain", None) == "1.2.3"


def test_wait_for_version_passes_when_the_version_answers(server: str) -> None:
    out = io.StringIO()
    assert wait_for_version(server + "/plain", "1.2.3", None, timeout=5, progress=Progress(out))


def test_wait_for_version_fails_when_another_version_answers(server: str) -> None:
    out = io.StringIO()
    started = time.monotonic()
    assert not wait_for_version(server + "/plain", "9.9", None, timeout=0.5, progress=Progress(out))
    assert time.monotonic() - started < 3
    assert "'1.2.3'" in out.getvalue() and "'9.9'" in out.getvalue()


# -- watcher's own requests, told apart in Caddy's log -----------------------------------------


def test_a_check_carries_the_secret_the_probe_file_holds_for_caddy(server: str, tmp_path: Path) -> None:
    config = next(iter(load_host(make_project(tmp_path), {}).apps.values()))
    mark_probes(config)
    assert config.probe_file.read_text() == f"{PROBE_SECRET}\n" and len(PROBE_SECRET) >= 43
    assert stat.S_IMODE(config.probe_file.stat().st_mode) == 0o600  # Caddy's to read, nobody else's
    Handler.seen_headers.clear()
    answer(server + "/plain", None)
    assert Handler.seen_headers[0]["X-Watcher-Probe"] == PROBE_SECRET


def test_caddy_logs_a_probe_only_when_its_header_equals_the_secret_and_never_the_header(
    tmp_path: Path,
) -> None:
    """Issue 21's attack, at its root: the Caddyfile logged X-Watcher-Probe's value, whatever a
    client sent, and any value hid the request. Now Caddy compares it with the probe file and
    logs `watcher_own 1` on a match alone; the header's value is in no log field."""
    host = load_host(make_project(tmp_path), {})
    text = render(host, list(host.apps.values()))
    assert text.count("{file./run/watcher/shop.probe}") == 1  # read only for a token-like header
    assert "@shop_probe_asked header_regexp X-Watcher-Probe ^[A-Za-z0-9_-]{32,}$" in text
    assert "vars @shop_probe_asked shop_probe {file./run/watcher/shop.probe}" in text
    matcher = text[text.index("@shop_probe {") :]
    matcher = matcher[: matcher.index("}\n\t\tlog_append") + 1]
    assert "vars {vars.shop_probe} {http.request.header.X-Watcher-Probe}" in matcher
    assert "log_append @shop_probe watcher_own 1" in text
    logged = [line for line in text.splitlines() if "log_append" in line]
    assert not any("X-Watcher-Probe" in line or "Preview}" in line for line in logged)
    assert "request_header -X-Watcher-Probe" in text  # nor does the app see it
    # Caddy's error log writes a failed request's headers: never these two.
    assert (
        "\t\t\t\trequest>headers>X-Watcher-Probe delete\n\t\t\t\trequest>headers>X-Watcher-Preview delete"
        in text
    )
