"""Many apps in one file: what loads, what two apps may not share, and that every refusal names
the file, the app and the key; the generated Caddyfile; the CLI's --app and per-app status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.caddyfile import render
from watcher.config import load_host
from watcher.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[2]


def app(
    name: str,
    image: str | None = None,
    *,
    extra: str = "",
    directory: str | None = None,
    compose_project: str | None = None,
) -> str:
    chosen = f'project = "{compose_project}"\n' if compose_project else ""
    return f"""
[apps.{name}]
image = "{image or f"ghcr.io/acme/{name}"}"
project_dir = "{directory or name}"
{chosen}

[apps.{name}.services.web]
port = 8080

[apps.{name}.verify]
url = "http://127.0.0.1:8080/{name}/version"
{extra}
"""


def project(tmp_path: Path, body: str, dirs: tuple[str, ...] = ("shop", "blog", "api")) -> Path:
    for name in dirs:
        (tmp_path / name).mkdir(exist_ok=True)
        for file_name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
            (tmp_path / name / file_name).write_text("")
    path = tmp_path / "watcher.toml"
    path.write_text(body)
    return path


def refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_host(path, env or {})
    return str(caught.value)


def test_three_apps_load_in_file_order_with_their_own_files(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        "[worker]\nconcurrency = 2\n"
        + app("shop")
        + app("blog", extra='[apps.blog.caddy]\npath = "/blog"\n')
        + app("api", extra='[apps.api.caddy]\nsite = "api.example.com"\n[apps.api.poll]\ninterval = "5m"\n'),
    )
    host = load_host(path, {})
    assert list(host.apps) == ["shop", "blog", "api"] and host.concurrency == 2
    shop, blog, api = host.apps.values()
    assert shop.project_dir == tmp_path / "shop" and shop.project("green") == "shop-green"
    assert shop.caddy.route_file == tmp_path / ".watcher" / "run" / "shop.live"
    assert shop.state.dir == tmp_path / "shop" / ".watcher" / "shop"
    assert shop.services[0].upstream("shop", "blue") == "shop-web-blue:8080"
    assert (blog.caddy.site, blog.caddy.path) == (":80", "/blog")
    assert api.caddy.site == "api.example.com" and api.poll.interval == 300.0 and shop.poll.interval == 60.0
    assert (
        shop.compose_env("v2").items()
        >= {
            "WATCHER_APP": "shop",
            "APP_IMAGE": "ghcr.io/acme/shop",
            "APP_VERSION": "v2",
        }.items()
    )


def test_two_apps_on_one_image_are_allowed(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        app("shop", "ghcr.io/acme/shop")
        + app(
            "blog",
            "ghcr.io/acme/shop",
            extra='[apps.blog.caddy]\npath = "/staging"\n[apps.blog.policy]\nprereleases = true\n',
        ),
    )
    host = load_host(path, {})
    assert {c.image for c in host.apps.values()} == {"ghcr.io/acme/shop"}


def test_a_duplicate_app_is_refused_with_its_name(tmp_path: Path) -> None:
    message = refused(project(tmp_path, app("shop") + app("shop")))
    assert str(tmp_path / "watcher.toml") in message and "app shop" in message and "declared twice" in message


def test_two_apps_on_one_compose_project_are_refused(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        app("shop", compose_project="store")
        + app("blog", compose_project="store", extra='[apps.blog.caddy]\npath = "/blog"\n'),
    )
    message = refused(path)
    assert "app blog: project: compose project store is already shop's" in message


def test_an_app_named_like_another_apps_colour_project_is_refused(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        app("shop") + app("shop-blue", directory="blog", extra='[apps.shop-blue.caddy]\npath = "/b"\n'),
    )
    assert "compose project shop-blue is already shop's" in refused(path)


def test_two_apps_on_one_caddy_route_are_refused(tmp_path: Path) -> None:
    message = refused(project(tmp_path, app("shop") + app("blog")))
    assert "app blog: caddy.path: Caddy route :80 is already shop's" in message


def test_two_apps_on_one_route_file_are_refused(tmp_path: Path) -> None:
    shared = '[apps.{0}.caddy]\nroute_file = "../.watcher/run/live"\npath = "/{0}"\n'
    message = refused(
        project(tmp_path, app("shop", extra=shared.format("shop")) + app("blog", extra=shared.format("blog")))
    )
    assert "app blog: caddy.route_file: route file" in message and "already shop's" in message


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [
        (
            '[apps.shop.health]\ntimeout = "5x"\n',
            "app shop: health.timeout: expected a duration like 300, 300s or 5m",
        ),
        ("[apps.shop.services.web]\nprot = 1\n", None),
        (
            "[apps.shop.helth]\ntimeout = 1\n",
            "app shop: helth: unknown key; did you mean 'health'? (known: image, project,",
        ),
        (
            '[apps.shop.policy]\nkind = "newest"\n',
            "app shop: policy.kind: expected semver, regex or digest, got 'newest'",
        ),
        ("[worker]\nconcurrency = 0\n", "worker.concurrency: must be between 1 and 32, got 0"),
        ("[apps.shop.services.api]\nport = 9000\n", "app shop: services: several services have a port"),
    ],
)
def test_refusals_name_file_app_and_key(tmp_path: Path, extra: str, wanted: str | None) -> None:
    body = app("shop") + extra
    if "prot" in extra:  # a second [apps.shop.services.web] table is a TOML error; say it as a key
        body = app("shop").replace("port = 8080", "port = 8080\nprot = 1")
        wanted = (
            "app shop: services.web.prot: unknown key; did you mean 'port'? (known: port, path, keep_prefix,"
        )
    message = refused(project(tmp_path, body))
    assert message.startswith(str(tmp_path / "watcher.toml")) and wanted in message, message


def test_an_environment_override_is_named_in_the_refusal(tmp_path: Path) -> None:
    message = refused(
        project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/b"\n')),
        {"HEALTH_CHECK_TIMEOUT": "soon"},
    )
    assert message.startswith("environment HEALTH_CHECK_TIMEOUT: expected a duration")


def test_the_app_is_chosen_by_name_or_is_the_only_one(tmp_path: Path) -> None:
    host = load_host(
        project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/b"\n')), {}
    )
    assert host.app("blog").name == "blog"
    with pytest.raises(UsageError, match=r"no app 'nope' in .* \(known: shop, blog\)"):
        host.app("nope")
    with pytest.raises(UsageError, match="configures 2 apps .*--app NAME"):
        host.app(None)


def test_max_body_over_the_limit_says_so(tmp_path: Path) -> None:
    message = refused(project(tmp_path, '[webhook]\nmax_body = "1GiB"\n' + app("shop")))
    assert "webhook.max_body: '1GiB' is over the 64 MiB maximum" in message


# -- the Caddyfile ----------------------------------------------------------------------------------


def test_the_example_caddyfile_is_what_watcher_caddyfile_prints() -> None:
    host = load_host(REPO / "config" / "watcher.toml", {})
    assert (REPO / "Caddyfile").read_text() == render(host, list(host.apps.values())), (
        "run: watcher -c config/watcher.toml caddyfile > Caddyfile"
    )


def test_caddyfile_routes_each_app_to_its_own_upstreams(tmp_path: Path) -> None:
    host = load_host(
        project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/blog"\n')), {}
    )
    text = render(host, list(host.apps.values()))
    assert text.index("handle /blog/*") < text.index("# app shop")  # the prefix before the catch-all
    assert "reverse_proxy blog-web-green:8080 {" in text and "reverse_proxy shop-web-blue:8080 {" in text
    assert (
        "@shop_blue vars {vars.shop_live} blue" in text and "admin unix//run/watcher/caddy-admin.sock" in text
    )


def test_caddyfile_reads_each_route_file_once_per_request(tmp_path: Path) -> None:
    """Every colour matcher compares one read of the route file: a matcher reading the file itself
    would re-read it, and a switch between two matchers' reads matched neither colour (the request
    took the fallback route, without X-Watcher-Color)."""
    host = load_host(
        project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/blog"\n')), {}
    )
    text = render(host, list(host.apps.values()))
    for name in ("shop", "blog"):
        assert text.count(f"{{file./run/watcher/{name}.live}}") == 1, text
        assert f"vars {name}_live {{file./run/watcher/{name}.live}}" in text
        for value in ("blue", "green", "none"):
            assert f"@{name}_{value} vars {{vars.{name}_live}} {value}" in text


def test_a_second_proxied_service_gets_its_prefix(tmp_path: Path) -> None:
    body = app("shop", extra='[apps.shop.services.ws]\nport = 9000\npath = "/ws"\n')
    host = load_host(project(tmp_path, body), {})
    block = render(host, [host.app("shop")])
    assert "handle_path /ws/* {" in block and "reverse_proxy shop-ws-blue:9000 {" in block


def test_a_service_that_keeps_its_prefix_gets_the_full_path(tmp_path: Path) -> None:
    extra = '[apps.shop.services.ws]\nport = 9000\npath = "/api/v1/streaming"\nkeep_prefix = true\n'
    host = load_host(project(tmp_path, app("shop", extra=extra)), {})
    block = render(host, [host.app("shop")])
    assert "handle_path" not in block
    assert block.count("handle /api/v1/streaming/* {") == 5, "both colours, both previews, the fallback"


# -- the CLI ----------------------------------------------------------------------------------------


def watcher(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_without_app_is_one_line_per_app(tmp_path: Path) -> None:
    path = project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/b"\n'))
    proc = watcher(path, "status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["APP", "LIVE", "VERSION", "SINCE", "HEALTH", "QUEUE", "PAUSED"]
    assert [line.split()[0] for line in lines[1:3]] == ["shop", "blog"]
    data = json.loads(watcher(path, "status", "--json").stdout)
    assert data["schema"] == 1 and set(data["apps"]) == {"shop", "blog"}
    assert data["apps"]["blog"]["app"] == "blog"
    one = json.loads(watcher(path, "status", "--app", "blog", "--json").stdout)
    assert list(one)[0] == "schema" and one["app"] == "blog"
    assert "HTTP Request" not in proc.stderr


def test_unknown_app_lists_the_known_ones(tmp_path: Path) -> None:
    path = project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/b"\n'))
    proc = watcher(path, "status", "--app", "nope")
    assert proc.returncode == 2 and "no app 'nope'" in proc.stderr and "known: shop, blog" in proc.stderr
    proc = watcher(path, "deploy", "v1")
    assert proc.returncode == 2 and "--app NAME" in proc.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`watcher status | head -1`: the reader has gone before watcher writes."""
    import os

    path = project(tmp_path, app("shop") + app("blog", extra='[apps.blog.caddy]\npath = "/b"\n'))
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "watcher", "-c", str(path), "status"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (app("shop") + app("shop"), "app shop: [apps.shop] is declared twice"),
        (
            app("shop", compose_project="store")
            + app("blog", compose_project="store", extra='[apps.blog.caddy]\npath = "/b"\n'),
            "app blog: project: compose project store is already shop's",
        ),
    ],
)
def test_config_errors_exit_2_naming_file_app_and_key(tmp_path: Path, body: str, wanted: str) -> None:
    path = project(tmp_path, body)
    proc = watcher(path, "status")
    assert proc.returncode == 2 and f"watcher: error: {path}: {wanted}" in proc.stderr, proc.stderr


def test_caddyfile_logs_every_request_with_its_app_and_colour(tmp_path: Path) -> None:
    """The traffic receipts' source: one JSON access log in the run directory, each request
    tagged with the app, the colour block that took it and what the app answered."""
    host = load_host(project(tmp_path, app("shop")), {})
    text = render(host, list(host.apps.values()))
    assert "output file /run/watcher/access.log {" in text and "request delete" in text
    block = text[text.index("handle @shop_green {") :]
    assert block.index("log_append watcher_color green") < block.index("reverse_proxy shop-web-green:8080")
    assert "log_append watcher_upstream {http.reverse_proxy.status_code}" in block
    assert "log_append watcher_app shop" in text and "log_append watcher_color none" in text
