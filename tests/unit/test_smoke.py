"""The smoke phase's pure parts: its configuration (and every refusal naming file and key), the
preview route in the generated Caddyfile, the preview file's life, and the verdict of a check
(against a local stand-in for Caddy; tests/integration/test_smoke.py runs the real one)."""

from __future__ import annotations

import io
import json
import stat
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.harness.local_server import LocalServer, Received, received
from tests.unit.test_config import MINIMAL, make_project, refused
from watcher.caddyfile import render
from watcher.config import AppConfig, SmokeCheck, load_config, load_host
from watcher.engine.smoke import Preview, clear_preview, run_check, run_smoke
from watcher.errors import DeployFailed
from watcher.platforms.color import Color
from watcher.progress import Progress

# -- configuration ------------------------------------------------------------------------------


def test_no_smoke_phase_by_default(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert not config.smoke.enabled and config.smoke.checks == () and config.smoke.hook_timeout == 300.0
    assert config.preview_file == tmp_path / ".watcher" / "run" / "shop.preview"
    assert config.preview_url == "http://127.0.0.1:8080"


def test_smoke_hook_and_checks_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(
        make_project(
            tmp_path,
            MINIMAL
            + """
[hooks]
smoke = ["./smoke.sh", "--quick"]
smoke_timeout = "2m"

[[smoke]]
path = "/orders"

[[smoke]]
method = "POST"
path = "/api/ping?x=1"
status = 201
body = "{}"
body_contains = "pong"
headers = { "Content-Type" = "application/json" }
timeout = "3s"
[caddy]
path = "/shop"
""",
        ),
        {},
    )
    assert (
        config.smoke.enabled
        and config.smoke.hook == ("./smoke.sh", "--quick")
        and config.smoke.hook_timeout == 120
    )
    assert config.smoke.checks == (
        SmokeCheck("GET", "/orders"),
        SmokeCheck("POST", "/api/ping?x=1", 201, "pong", "{}", (("Content-Type", "application/json"),), 3.0),
    )
    assert config.preview_url == "http://127.0.0.1:8080/shop"


def test_many_apps_layout_takes_smoke_checks_per_app(tmp_path: Path) -> None:
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (tmp_path / name).write_text("")
    path = tmp_path / "watcher.toml"
    path.write_text(
        '[apps.shop]\nimage = "ghcr.io/acme/shop"\n[apps.shop.services.web]\nport = 8080\n'
        '[apps.shop.verify]\nurl = "https://shop.example.com/version"\n'
        '[[apps.shop.smoke]]\npath = "/"\nbody_contains = "Shop"\n'
    )
    config = load_config(path, {})
    assert config.smoke.checks == (SmokeCheck("GET", "/", body_contains="Shop"),)
    assert config.preview_url == "https://shop.example.com"


@pytest.mark.parametrize(
    ("toml", "wanted"),
    [
        ('[[smoke]]\npath = "orders"\n', "smoke.0.path: expected an absolute path, got 'orders'"),
        ('[[smoke]]\npath = "/a b"\n', "smoke.0.path: expected an absolute path, got '/a b'"),
        ("[[smoke]]\n", "smoke.0.path: is required"),
        ('[[smoke]]\npath = "/"\nmethod = "get"\n', "smoke.0.method: expected GET, HEAD, POST"),
        ('[[smoke]]\npath = "/"\nstatus = 700\n', "smoke.0.status: must be between 100 and 599, got 700"),
        ('[[smoke]]\npath = "/"\nstatus = "200"\n', "smoke.0.status: expected a number, got '200'"),
        ('[[smoke]]\npath = "/"\nbody_contains = ""\n', "smoke.0.body_contains"),
        ('[[smoke]]\npath = "/"\ntimeout = "0s"\n', "smoke.0.timeout: must be greater than zero"),
        ('[[smoke]]\npath = "/"\nexpect = 200\n', "smoke.0.expect: unknown key"),
        (
            '[[smoke]]\npath = "/"\nheaders = { "Bad Name" = "x" }\n',
            "smoke[0].headers: not an HTTP header name: 'Bad Name'",
        ),
        (
            '[[smoke]]\npath = "/"\nheaders = { "X-Watcher-Preview" = "x" }\n',
            "smoke[0].headers: X-Watcher-Preview is set by watcher",
        ),
        (
            '[[smoke]]\npath = "/"\nheaders = { "X-A" = "a\\r\\nX-B: b" }\n',
            "smoke[0].headers: the value of X-A holds a line",
        ),
        (
            '[[smoke]]\npath = "/"\nmethod = "HEAD"\nbody_contains = "x"\n',
            "smoke[0].body_contains: a HEAD answer has no body",
        ),
        ('[hooks]\nsmoke = ["", "x"]\n', "hooks.smoke: the first element is the program to run"),
        ('[hooks]\nsmoke = "./smoke.sh"\n', "hooks.smoke: expected a list, got './smoke.sh'"),
        ('[smoke]\npath = "/"\n', "smoke: expected a list"),
    ],
)
def test_bad_smoke_settings_name_file_and_key(tmp_path: Path, toml: str, wanted: str) -> None:
    message = refused(make_project(tmp_path, MINIMAL + toml))
    assert str(tmp_path / "watcher.toml") in message and wanted in message, message


# -- the Caddyfile ------------------------------------------------------------------------------


def test_caddyfile_previews_a_colour_only_to_its_secret(tmp_path: Path) -> None:
    host = load_host(make_project(tmp_path), {})
    text = render(host, list(host.apps.values()))
    # The preview file is read once, and only for a request that carries a token-like header.
    assert text.count("{file./run/watcher/shop.preview}") == 1
    assert "@shop_preview_asked header_regexp X-Watcher-Preview ^[A-Za-z0-9_-]{32,}$" in text
    assert "vars @shop_preview_asked shop_preview {file./run/watcher/shop.preview}" in text
    for color in ("blue", "green"):
        # The compared value starts with "<colour> ": no missing or empty file or header can equal it.
        assert f'vars {{vars.shop_preview}} "{color} {{http.request.header.X-Watcher-Preview}}"' in text
        block = text[text.index(f"handle @shop_preview_{color} {{") :]
        block = block[: block.index("\n\t\t}\n") + 1]
        assert "request_header -X-Watcher-Preview" in block and "header X-Watcher-Preview 1" in block
        assert (
            f"reverse_proxy shop-web-{color}:8080" in block
            and f"header_down X-Watcher-Color {color}" in block
        )
        assert text.index(f"handle @shop_preview_{color}") < text.index("handle @shop_blue")


# -- the preview file ---------------------------------------------------------------------------


def test_the_preview_file_holds_colour_and_secret_for_the_phase_alone(tmp_path: Path) -> None:
    path = tmp_path / "run" / "shop.preview"
    preview = Preview(path, Color.GREEN)
    with pytest.raises(RuntimeError), preview:
        assert path.read_text() == f"green {preview.secret}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(preview.secret) >= 32 and preview.header == ("X-Watcher-Preview", preview.secret)
        raise RuntimeError("the phase failed")
    assert not path.exists()
    assert Preview(path, Color.GREEN).secret != preview.secret, "a new secret per deploy"
    assert preview.redact(f"x {preview.secret} y") == "x <preview secret> y"


def test_a_stale_preview_file_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "shop.preview"
    path.write_text("blue stale\n")
    assert clear_preview(path) and not path.exists()
    assert not clear_preview(path)


# -- a check's verdict --------------------------------------------------------------------------


class FakeCaddy(LocalServer):
    """Answers every request as `color` with `status` and `body` (the secret echoed where the
    body says SECRET); keeps what it received."""

    def __init__(self, color: str | None = "green", status: int = 200, body: str = "v2 orders") -> None:
        super().__init__()
        self.color, self.status, self.body = color, status, body
        self.requests: list[Received] = []

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        got = received(request, method)
        self.requests.append(got)
        data = self.body.replace("SECRET", got.headers.get("X-Watcher-Preview", "")).encode()
        request.send_response(self.status)
        if self.color:
            request.send_header("X-Watcher-Color", self.color)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def test_a_passing_check_sends_the_preview_header(tmp_path: Path) -> None:
    preview = Preview(tmp_path / "shop.preview", Color.GREEN)
    with FakeCaddy() as caddy:
        run_check(
            caddy.url,
            SmokeCheck(
                "POST", "/orders", body_contains="orders", body='{"a": 1}', headers=(("X-Test", "1"),)
            ),
            preview,
        )
    sent = caddy.requests[0]
    assert (sent.method, sent.path, sent.body) == ("POST", "/orders", {"a": 1})
    assert sent.headers["X-Watcher-Preview"] == preview.secret and sent.headers["X-Test"] == "1"


@pytest.mark.parametrize(
    ("answer", "check", "wanted"),
    [
        (
            {"status": 500, "body": "boom " + "x" * 300},
            SmokeCheck("GET", "/orders"),
            "smoke check GET /orders: expected 200, got 500: boom " + "x" * 195,
        ),
        (
            {},
            SmokeCheck("GET", "/orders", body_contains="invoices"),
            "smoke check GET /orders: the body does not contain 'invoices': v2 orders",
        ),
        (
            {"color": "blue"},
            SmokeCheck("GET", "/"),
            "smoke check GET /: answered by blue, not by the previewed green: Caddy does not route X-Watcher-Preview",
        ),
        (
            {"color": None, "status": 502},
            SmokeCheck("GET", "/"),
            "smoke check GET /: answered 502 with no X-Watcher-Color header, not by the previewed green",
        ),
    ],
)
def test_a_failing_check_says_what_it_saw(
    tmp_path: Path, answer: dict[str, object], check: SmokeCheck, wanted: str
) -> None:
    with FakeCaddy(**answer) as caddy, pytest.raises(DeployFailed) as failed:  # type: ignore[arg-type]
        run_check(caddy.url, check, Preview(tmp_path / "shop.preview", Color.GREEN))
    assert str(failed.value).startswith(wanted), str(failed.value)


def test_a_check_nobody_answers_says_so(tmp_path: Path) -> None:
    with FakeCaddy() as caddy:
        url = caddy.url
    with pytest.raises(
        DeployFailed, match=r"smoke check GET /: no answer from http://127.0.0.1:\d+ \(ConnectError"
    ):
        run_check(url, SmokeCheck("GET", "/"), Preview(tmp_path / "shop.preview", Color.GREEN))


def smoke_config(tmp_path: Path, port: int, hook: list[str], checks: str = "") -> AppConfig:
    toml = MINIMAL.replace("8080/version", f"{port}/version") + f"[hooks]\nsmoke = {json.dumps(hook)}\n"
    return load_config(make_project(tmp_path, toml + checks), {})


def test_run_smoke_gives_the_hook_the_preview_and_never_leaks_the_secret(tmp_path: Path) -> None:
    script = (
        "import os, sys; e = os.environ; open('env.out', 'w').write(repr({k: e[k] for k in ("
        "'WATCHER_VERSION', 'WATCHER_COLOR', 'WATCHER_PREVIEW_URL', 'WATCHER_PREVIEW_HEADER', "
        "'WATCHER_PREVIEW_SECRET', 'APP_VERSION')}))"
    )
    with FakeCaddy(body="echo SECRET") as caddy:
        config = smoke_config(
            tmp_path,
            caddy.port,
            [sys.executable, "-c", script],
            '[[smoke]]\npath = "/"\nbody_contains = "nothing like it"\n',
        )
        with pytest.raises(DeployFailed) as failed:
            run_smoke(config, "v2", Color.GREEN, Progress(io.StringIO()))
    env = eval((tmp_path / "env.out").read_text())  # noqa: S307 (our own repr)
    secret = env["WATCHER_PREVIEW_SECRET"]
    assert env == {
        "WATCHER_VERSION": "v2",
        "WATCHER_COLOR": "green",
        "WATCHER_PREVIEW_URL": caddy.url,
        "WATCHER_PREVIEW_HEADER": f"X-Watcher-Preview: {secret}",
        "WATCHER_PREVIEW_SECRET": secret,
        "APP_VERSION": "v2",
    }
    assert caddy.requests[0].headers["X-Watcher-Preview"] == secret
    assert (
        str(failed.value)
        == "smoke check GET /: the body does not contain 'nothing like it': echo <preview secret>"
    )
    assert not config.preview_file.exists()


def test_a_failing_smoke_hook_stops_before_the_checks(tmp_path: Path) -> None:
    with FakeCaddy() as caddy:
        config = smoke_config(
            tmp_path,
            caddy.port,
            ["sh", "-c", 'echo "$WATCHER_PREVIEW_SECRET"; echo no >&2; exit 3'],
            '[[smoke]]\npath = "/"\n',
        )
        with pytest.raises(DeployFailed, match=r"^smoke hook exited 3: <preview secret> \| no$"):
            run_smoke(config, "v2", Color.BLUE, Progress(io.StringIO()))
    assert caddy.requests == [] and not config.preview_file.exists()


def test_a_smoke_hook_that_cannot_run_says_so(tmp_path: Path) -> None:
    (tmp_path / "smoke.sh").write_text("#!/bin/sh\n")  # not executable
    with FakeCaddy() as caddy:
        config = smoke_config(tmp_path, caddy.port, ["./smoke.sh"])
        with pytest.raises(DeployFailed, match=r"^smoke hook './smoke.sh' cannot run: Permission denied$"):
            run_smoke(config, "v2", Color.GREEN, Progress(io.StringIO()))
        config = smoke_config(tmp_path, caddy.port, ["./no-such-smoke"])
        with pytest.raises(DeployFailed, match=r"^smoke hook './no-such-smoke' not found$"):
            run_smoke(config, "v2", Color.GREEN, Progress(io.StringIO()))
