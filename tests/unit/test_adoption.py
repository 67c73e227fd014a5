"""`watcher init` on a user's own compose file, in temporary directories (no Docker): what it
writes, that the config it writes loads as watcher reads it, the diff it proposes, and every
refusal with its reason. Nothing is overwritten without --force; --dry-run writes nothing."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from watcher import cli
from watcher.adoption import run_init
from watcher.adoption.answers import Answers, Prompt, gather
from watcher.adoption.compose_file import read_compose
from watcher.adoption.proposal import proposed
from watcher.caddyfile import render
from watcher.config import Service, load_host
from watcher.errors import ConfigError, UsageError

REPORT = importlib.import_module("watcher.adoption.report")  # the package's `report` is its function
TAGS = importlib.import_module("watcher.adoption.tags")
REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "adoption" / "compose.yml"
HOST_PORT = '    ports:\n      - "8080:8080"           # handy in development; Caddy proxies to web:8080\n'
FLAGS = ("--service", "web:8080", "--service", "worker", "--verify-url", "http://127.0.0.1/version", "--yes")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The realistic compose file with web's host port already removed, as the current directory."""
    text = FIXTURE.read_text()
    assert HOST_PORT in text
    (tmp_path / "compose.yml").write_text(text.replace(HOST_PORT, ""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    # Docker has none of the file's networks and volumes (tests/integration asks the real one).
    monkeypatch.setattr(REPORT, "docker_has", lambda kind, name: False)
    # No registry answers (tests/integration pushes tags to a real one).
    monkeypatch.setattr(TAGS, "registry_tags", lambda image: "offline")
    return tmp_path


def init(*args: str) -> str:
    """`watcher init ARGS` in-process; returns what it printed (a refusal raises)."""
    parsed = cli.build_parser().parse_args(["init", *args])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert run_init(parsed) == 0
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(UsageError) as caught:
        init(*args)
    assert caught.value.exit_code == 2
    return str(caught.value)


def listing(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


def with_service(project: Path, old: str, new: str) -> None:
    """Edit the project's compose.yml: replace `old` (which must be there) with `new`."""
    compose = project / "compose.yml"
    text = compose.read_text()
    assert old in text, old
    compose.write_text(text.replace(old, new, 1))


# -- what it writes --------------------------------------------------------------------------


def test_writes_the_overlays_the_config_and_the_caddyfile(project: Path) -> None:
    before = (project / "compose.yml").read_text()
    out = init(*FLAGS)

    assert (project / "compose.yml").read_text() == before, "the user's compose file is never edited"
    assert sorted(listing(project)) == [
        "Caddyfile.shop",
        "compose.blue.yml",
        "compose.green.yml",
        "compose.yml",
        "watcher-init.diff",
        "watcher.toml",
    ]
    for color in ("blue", "green"):
        overlay = yaml.safe_load((project / f"compose.{color}.yml").read_text())
        for service in ("web", "worker"):
            assert overlay["services"][service]["labels"] == {"watcher.color": color}
            assert overlay["services"][service]["networks"] == {
                "default": {"aliases": [f"shop-{service}-{color}"]}
            }
        assert overlay["networks"] == {"default": {"name": "shop_default", "external": True}}
        assert set(overlay["services"]) == {"web", "worker"}, "shared services stay out of the colours"
    for line in (
        "wrote compose.blue.yml",
        "wrote compose.green.yml",
        "wrote watcher.toml",
        "wrote Caddyfile.shop",
    ):
        assert line in out


def test_the_config_it_writes_loads_and_keeps_the_existing_compose_project(project: Path) -> None:
    init(*FLAGS)
    host = load_host(project / "watcher.toml", {})
    config = host.app("shop")
    assert config.image == "ghcr.io/acme/shop"
    assert config.project() == "shop", "the shared postgres and redis keep running in their project"
    assert (config.project("blue"), config.project("green")) == ("shop-blue", "shop-green")
    assert config.project_dir == project
    assert config.compose_files == ("compose.yml",)
    assert config.services == (Service("web", 8080), Service("worker", None))
    assert config.shared_services == ("caddy", "postgres", "redis")
    assert config.verify.url == "http://127.0.0.1/version"
    assert config.caddy.route_file == project / ".watcher" / "run" / "shop.live"
    assert (project / "Caddyfile.shop").read_text() == render(host, [config])


def test_the_caddyfile_dials_the_overlays_aliases(project: Path) -> None:
    init(*FLAGS)
    caddyfile = (project / "Caddyfile.shop").read_text()
    assert "reverse_proxy shop-web-blue:8080 {" in caddyfile
    assert "reverse_proxy shop-web-green:8080 {" in caddyfile
    assert "{file./run/watcher/shop.live}" in caddyfile
    assert "admin unix//run/watcher/caddy-admin.sock" in caddyfile
    assert "worker" not in caddyfile, "a service without a port is not proxied"


def test_the_diff_proposes_the_image_the_profile_and_caddys_run_dir(project: Path) -> None:
    out = init(*FLAGS)
    diff = out[out.index("--- a/compose.yml") : out.index("Steps left:")]
    assert "+++ b/compose.yml" in diff
    assert diff.count("-    image: ghcr.io/acme/shop:1.4.2") == 2
    assert diff.count("+    image: ${APP_IMAGE:-ghcr.io/acme/shop}:${APP_VERSION:-unset}") == 2
    assert diff.count("+    profiles: [app]") == 2
    assert '+      - "./.watcher/run:/run/watcher"' in diff
    assert "postgres:16" not in diff and "redis:7.4" not in diff

    applied = proposed(
        read_compose(project / "compose.yml"), _answers(project), project / ".watcher" / "run", "/run/watcher"
    )
    assert applied is not None
    services = yaml.safe_load(applied)["services"]
    for name in ("web", "worker"):
        assert services[name]["profiles"] == ["app"]
        assert services[name]["image"] == "${APP_IMAGE:-ghcr.io/acme/shop}:${APP_VERSION:-unset}"
    assert "./.watcher/run:/run/watcher" in services["caddy"]["volumes"]
    assert "# handy" not in applied and "# The shop: a web front" in applied, "comments are kept"


@pytest.mark.skipif(
    shutil.which("patch") is None and os.environ.get("CI") != "true", reason="needs patch(1)"
)  # under CI a missing patch fails (install.sh installs it)
def test_the_saved_diff_applies_with_the_readmes_patch_command(project: Path) -> None:
    out = init(*FLAGS)
    diff = out[out.index("--- a/compose.yml") : out.index("\nSteps left:")]
    assert (project / "watcher-init.diff").read_text().rstrip("\n") == diff.rstrip("\n")
    with (project / "watcher-init.diff").open() as saved:
        subprocess.run(["patch", "-p1"], stdin=saved, cwd=project, check=True, capture_output=True)
    services = yaml.safe_load((project / "compose.yml").read_text())["services"]
    assert services["web"]["profiles"] == ["app"] and "profiles" not in services["postgres"]


def test_the_steps_say_what_is_left(project: Path) -> None:
    out = init(*FLAGS)
    steps = out[out.index("Steps left:") :]
    assert f"run `patch -p1 < watcher-init.diff` in {project}" in steps
    assert "Caddy (service caddy)" in steps and "Caddyfile.shop" in steps
    assert "`watcher --config watcher.toml deploy 1.4.2`" in steps
    assert "`docker compose -p shop --profile app rm --stop --force web worker`" in steps
    assert [line.split(".")[0].strip() for line in steps.splitlines()[1:]] == ["1", "2", "3", "4"]


def test_a_sidecar_on_its_own_image_keeps_it(project: Path) -> None:
    with_service(project, "  postgres:\n", "  logs:\n    image: vector:0.40\n\n  postgres:\n")
    out = init(
        "--service", "web:8080", "--service", "logs", "--verify-url", "http://127.0.0.1/version", "--yes"
    )
    assert "on their own image, at the tag they name" in out and "): logs" in out
    diff = out[out.index("--- a/compose.yml") :]
    assert "-    image: vector:0.40" not in diff and " logs:\n+    profiles: [app]" in diff
    assert load_host(project / "watcher.toml", {}).app("shop").services == (
        Service("web", 8080),
        Service("logs", None),
    )


def test_a_read_only_named_volume_is_pinned_to_the_shared_projects(project: Path) -> None:
    with_service(
        project,
        "      - ./config/shop.ini:/etc/shop.ini:ro\n",
        "      - ./config/shop.ini:/etc/shop.ini:ro\n      - caddy-data:/srv/caddy:ro\n",
    )
    init(*FLAGS)
    overlay = yaml.safe_load((project / "compose.blue.yml").read_text())
    assert overlay["volumes"] == {"caddy-data": {"name": "shop_caddy-data", "external": True}}


def test_the_colours_join_each_network_of_the_shared_project(project: Path) -> None:
    with_service(project, "    init: true\n", "    init: true\n    networks: [front, back]\n")
    with_service(
        project,
        "volumes:\n  caddy-data:",
        "networks:\n  front:\n    name: edge\n  back:\n\nvolumes:\n  caddy-data:",
    )
    init(*FLAGS)
    overlay = yaml.safe_load((project / "compose.green.yml").read_text())
    assert overlay["services"]["web"]["networks"] == {
        "front": {"aliases": ["shop-web-green"]},
        "back": {"aliases": ["shop-web-green"]},
    }
    assert overlay["networks"] == {
        "front": {"name": "edge", "external": True},
        "back": {"name": "shop_back", "external": True},
        "default": {"name": "shop_default", "external": True},
    }


@pytest.mark.parametrize(
    "has, advice",
    [
        (False, "and Docker has no shop_back: create it once with `docker network create shop_back`"),
        (True, "but shop_back exists (your own `docker compose up` made it): the colours join it as it is"),
        (
            "cannot reach the Docker engine",
            "and Docker could not be asked whether shop_back exists (cannot reach the Docker engine): "
            "if `docker network inspect shop_back` finds none, create it",
        ),
    ],
)
def test_a_network_no_shared_service_creates_is_looked_up_in_docker(
    project: Path, monkeypatch: pytest.MonkeyPatch, has: bool | str, advice: str
) -> None:
    with_service(project, "    init: true\n", "    init: true\n    networks: [back]\n")
    with_service(project, "volumes:\n  caddy-data:", "networks:\n  back:\n\nvolumes:\n  caddy-data:")
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(REPORT, "docker_has", lambda kind, name: asked.append((kind, name)) or has)
    steps = init(*FLAGS)
    assert asked == [("network", "shop_back")]
    assert "No shared service uses network back, " + advice in steps
    assert ("external: true" in steps) is (has is not True)


def test_a_layout_beyond_line_edits_is_said_in_words(project: Path) -> None:
    with_service(
        project,
        "    image: ghcr.io/acme/shop:1.4.2\n    restart: unless-stopped\n    init: true\n"
        "    environment:\n      DATABASE_URL: postgres://shop@postgres:5432/shop\n"
        "      REDIS_URL: redis://redis:6379/0\n    depends_on: [postgres, redis]\n",
        "    {image: ghcr.io/acme/shop:1.4.2, depends_on: [postgres, redis]}\n",
    )
    (project / "compose.yml").write_text(
        (project / "compose.yml")
        .read_text()
        .replace("  worker:\n    {image", "  worker: {image")
        .replace("redis]}\n\n  postgres", "redis]}\n\n  postgres")
    )
    assert read_compose(project / "compose.yml").services["worker"]["image"] == "ghcr.io/acme/shop:1.4.2"
    out = init(*FLAGS)
    assert "--- a/compose.yml" not in out
    assert (
        "1. Edit compose.yml by hand (its layout is beyond init's line edits): web: image "
        "${APP_IMAGE:-ghcr.io/acme/shop}:${APP_VERSION:-unset} and profile app; worker: image"
    ) in out


def test_project_name_comes_from_the_directory_or_env_file(project: Path) -> None:
    with_service(project, "name: shop\n", "")
    shop = project / "My Shop"
    shop.mkdir()
    (project / "compose.yml").rename(shop / "compose.yml")
    init(str(shop / "compose.yml"), *FLAGS)
    assert load_host(shop / "watcher.toml", {}).app("myshop").project() == "myshop"

    (shop / ".env").write_text("COMPOSE_PROJECT_NAME=storefront\n")
    out = init(str(shop / "compose.yml"), *FLAGS, "--force", "--config", str(project / "other.toml"))
    assert "compose project storefront (from .env's COMPOSE_PROJECT_NAME)" in out
    config = load_host(project / "other.toml", {}).app("storefront")
    assert config.project_dir == shop and config.project() == "storefront"


def test_app_name_and_site_from_flags(project: Path) -> None:
    init(*FLAGS, "--app", "store", "--site", "shop.example.com")
    config = load_host(project / "watcher.toml", {}).app("store")
    assert config.project() == "shop" and config.caddy.site == "shop.example.com"
    assert yaml.safe_load((project / "compose.blue.yml").read_text())["services"]["web"]["networks"] == {
        "default": {"aliases": ["store-web-blue"]}
    }


# -- --dry-run and --force -------------------------------------------------------------------


def test_dry_run_prints_everything_and_writes_nothing(project: Path) -> None:
    before = listing(project)
    out = init(*FLAGS, "--dry-run")
    assert listing(project) == before
    assert not (project / ".watcher").exists()
    assert "Dry run: nothing written" in out
    for header in ("==> compose.blue.yml", "==> compose.green.yml", "==> watcher.toml", "==> Caddyfile.shop"):
        assert header in out
    assert 'aliases: ["shop-web-green"]' in out and "[apps.shop.services.web]" in out
    assert "reverse_proxy shop-web-blue:8080" in out and "+    profiles: [app]" in out
    assert "Steps left:" in out
    real = init(*FLAGS)
    assert (
        out[out.index("--- a/") : out.index("Steps left")]
        == real[real.index("--- a/") : real.index("Steps left")]
    ), "the dry run proposes what the real run does"
    assert "save it as watcher-init.diff and run `patch -p1 < watcher-init.diff`" in out
    assert "saved as watcher-init.diff" in real and "save it as" not in real


def test_dry_run_refuses_what_the_real_run_would(project: Path) -> None:
    init(*FLAGS)
    before = listing(project)
    assert "compose.blue.yml exists" in refused(*FLAGS, "--dry-run")
    assert listing(project) == before


def test_never_overwrites_without_force(project: Path) -> None:
    (project / "compose.blue.yml").write_text("# mine\n")
    (project / "Caddyfile.shop").write_text("# mine\n")
    (project / "watcher-init.diff").write_text("# mine\n")
    message = refused(*FLAGS)
    assert "compose.blue.yml exists: init never overwrites a file; pass --force to replace it" in message
    assert "Caddyfile.shop exists" in message and "watcher-init.diff exists" in message
    assert (project / "compose.blue.yml").read_text() == "# mine\n"
    assert not (project / "compose.green.yml").exists() and not (project / "watcher.toml").exists()

    init(*FLAGS, "--force")
    assert "shop-web-blue" in (project / "compose.blue.yml").read_text()
    assert "reverse_proxy" in (project / "Caddyfile.shop").read_text()


def test_an_existing_config_gets_the_app_appended_only_with_force(project: Path) -> None:
    other = project / "other"
    other.mkdir()
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (other / name).write_text("")
    existing = (
        '[caddy]\nsite = ":8080"\n\n[apps.blog]\nimage = "ghcr.io/acme/blog"\nproject_dir = "other"\n\n'
        '[apps.blog.caddy]\nsite = "blog.example.com"\n\n[apps.blog.services.web]\nport = 80\n\n'
        '[apps.blog.verify]\nurl = "http://127.0.0.1/version"\n'
    )
    (project / "watcher.toml").write_text(existing)

    assert "watcher.toml exists: pass --force to append [apps.shop] to it" in refused(*FLAGS)
    assert (project / "watcher.toml").read_text() == existing

    out = init(*FLAGS, "--force")
    assert "watcher config, [apps.shop] appended" in out
    assert "deploy --app shop 1.4.2" in out, "with two apps, every command names its app"
    text = (project / "watcher.toml").read_text()
    assert text.startswith(existing)
    host = load_host(project / "watcher.toml", {})
    assert list(host.apps) == ["blog", "shop"]
    assert host.app("shop").caddy.site == ":8080", "the host's [caddy] site applies"
    assert ":8080 {" in (project / "Caddyfile.shop").read_text()


def test_what_another_app_already_has_is_refused_even_in_a_dry_run(project: Path) -> None:
    other = project / "blog"
    other.mkdir()
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (other / name).write_text("")
    (project / "watcher.toml").write_text(
        '[apps.blog]\nimage = "ghcr.io/acme/blog"\nproject = "shop"\n'
        'project_dir = "blog"\n\n[apps.blog.services.web]\nport = 80\n\n'
        '[apps.blog.verify]\nurl = "http://127.0.0.1/version"\n'
    )
    message = refused(*FLAGS, "--force", "--dry-run")
    assert "app blog runs in compose project shop: two apps never share one" in message
    assert "app blog already answers at :80: give shop its own site with --site" in message
    assert "compose project shop" in refused(*FLAGS, "--force", "--site", "shop.example.com")


def test_an_app_already_configured_is_rewritten_only_with_force_keeping_the_users_keys(
    project: Path,
) -> None:
    init(*FLAGS)
    config = (project / "watcher.toml").read_text()
    message = refused(*FLAGS)
    assert "watcher.toml already has [apps.shop]: pass --force to rewrite it" in message
    assert (project / "watcher.toml").read_text() == config
    # The user tunes the app: keys in init's tables, tables of their own, a service's health.
    config = config.replace("[apps.shop.verify]\n", '[apps.shop.verify]\ntimeout = "45s"\n') + (
        '\n[apps.shop.health]\ntimeout = "3m"\n\n[apps.shop.drain]\ntimeout = "20s"\n'
        '\n[apps.shop.services.web.health]\npath = "/up"\n\n[[apps.shop.smoke]]\npath = "/"\n'
        '\n[apps.blog]\nimage = "ghcr.io/acme/blog"\nproject_dir = "blog"\n\n[apps.blog.caddy]\n'
        'site = ":81"\n\n[apps.blog.services.web]\nport = 80\n\n[apps.blog.verify]\n'
        'url = "http://127.0.0.1:81/version"\n'
    )
    (project / "blog").mkdir()
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (project / "blog" / name).write_text("")
    (project / "watcher.toml").write_text(config)
    before = load_host(project / "watcher.toml", {}).app("shop")

    out = init(*FLAGS[:-3], "--verify-url", "http://127.0.0.1/v", "--yes", "--force")
    host = load_host(project / "watcher.toml", {})
    after = host.app("shop")
    assert list(host.apps) == ["blog", "shop"], "the other app is untouched, shop is written once"
    assert after.verify.url == "http://127.0.0.1/v"
    for kept in ("health", "drain", "smoke", "services"):
        assert getattr(after, kept) == getattr(before, kept), kept
    assert after.verify.timeout == before.verify.timeout == 45.0
    assert "[apps.shop] rewritten: every key init does not decide is kept; changed:" in out
    assert '  verify.url: "http://127.0.0.1/version" -> "http://127.0.0.1/v"' in out
    assert out.count("  verify.url") == 1 and "drain" not in out.split("changed:")[1].split("\n\n")[0]


def test_rewriting_an_app_drops_a_service_no_longer_stateless(project: Path) -> None:
    init(*FLAGS)
    out = init("--service", "web:8080", "--verify-url", "http://127.0.0.1/version", "--yes", "--force")
    assert [s.name for s in load_host(project / "watcher.toml", {}).app("shop").services] == ["web"]
    assert (
        '  shared_services: ["caddy", "postgres", "redis"] -> ["caddy", "worker", "postgres", "redis"]' in out
    )


def test_a_single_app_layout_config_is_not_appended_to(project: Path) -> None:
    (project / "watcher.toml").write_text('[app]\nname = "blog"\n')
    assert "single-app [app] layout" in refused(*FLAGS, "--force")


def test_a_config_that_does_not_load_is_undone(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        init(*FLAGS, "--image", "ghcr.io/acme/shop:1.4.2")
    assert "nothing written" in str(caught.value) and "image" in str(caught.value)
    assert sorted(listing(project)) == ["compose.yml"]


def test_the_config_is_written_where_asked(project: Path) -> None:
    (project / "etc").mkdir()
    init(
        *FLAGS,
        "--config",
        str(project / "etc" / "hosts.toml"),
        "--caddyfile",
        str(project / "etc" / "Caddyfile"),
    )
    config = load_host(project / "etc" / "hosts.toml", {}).app("shop")
    assert config.project_dir == project
    assert 'project_dir = ".."' in (project / "etc" / "hosts.toml").read_text()
    assert (project / "etc" / "Caddyfile").is_file() and not (project / "Caddyfile.shop").exists()


def _without_caddy(project: Path) -> None:
    """The fixture as published files are: no Caddy, and web's host port kept."""
    text = FIXTURE.read_text()
    caddy = text[text.index("  caddy:\n") : text.index("  web:\n")]
    (project / "compose.yml").write_text(text.replace(caddy, "").replace("  caddy-data:\n", ""))


def test_a_file_without_caddy_gets_one_in_its_own_overlay_with_the_apps_host_port(project: Path) -> None:
    _without_caddy(project)
    out = init(*FLAGS[:-1], "--caddy-image", "localhost:5000/caddy:test", "--yes")
    added = yaml.safe_load((project / "compose.watcher.yml").read_text())["services"]["caddy"]
    assert added["image"] == "localhost:5000/caddy:test"
    assert added["ports"] == ["8080:80"], "the host port web published moves to Caddy"
    assert added["volumes"] == [
        "./Caddyfile.shop:/etc/caddy/Caddyfile:ro",
        "./.watcher/run:/run/watcher",
    ]
    assert added["networks"] == ["default"]
    config = load_host(project / "watcher.toml", {}).app("shop")
    assert config.compose_files == ("compose.yml", "compose.watcher.yml")
    assert config.shared_services == ("postgres", "redis", "caddy")
    assert "wrote compose.watcher.yml (the Caddy service your compose file lacks)" in out
    diff = (project / "watcher-init.diff").read_text()
    assert '-    ports:\n-      - "8080:8080"' in diff
    assert (
        "Before the first deploy, remove the uncoloured web, worker" in out
        and "web gives its host port to Caddy" in out
    )


def test_the_added_caddy_keeps_the_host_address_and_listens_on_the_site_port(project: Path) -> None:
    _without_caddy(project)
    with_service(project, '      - "8080:8080"', '      - "127.0.0.1:8000:8080"\n      - "9443:9443"')
    out = init(*FLAGS, "--site", ":8081")
    added = yaml.safe_load((project / "compose.watcher.yml").read_text())["services"]["caddy"]
    assert added["ports"] == ["127.0.0.1:8000:8081"]
    assert "Its other host ports (9443:9443) are dropped: Caddy answers for the app" in out
    assert "ports" not in yaml.safe_load(_patched(project))["services"]["web"]


def test_a_host_port_on_another_stateless_service_is_still_refused(project: Path) -> None:
    _without_caddy(project)
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        '    depends_on: [postgres, redis]\n    ports: ["9229:9229"]\n',
    )
    assert 'worker: ports "9229:9229": a host port can be bound by one colour only' in refused(*FLAGS)


def _patched(project: Path) -> str:
    """compose.yml as `patch -p1 < watcher-init.diff` leaves it (on a copy)."""
    copy = project / "patched"
    copy.mkdir()
    shutil.copy(project / "compose.yml", copy / "compose.yml")
    with (project / "watcher-init.diff").open() as diff:
        subprocess.run(["patch", "-p1"], stdin=diff, cwd=copy, check=True, capture_output=True)
    return (copy / "compose.yml").read_text()


def test_no_caddy_is_added_beside_the_one_that_fronts_the_configs_other_apps(project: Path) -> None:
    _without_caddy(project)
    with_service(project, HOST_PORT, "")
    (project / "blog").mkdir()
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (project / "blog" / name).write_text("")
    (project / "watcher.toml").write_text(
        '[apps.blog]\nimage = "ghcr.io/acme/blog"\nproject_dir = "blog"\n\n[apps.blog.caddy]\nsite = ":81"\n'
        '\n[apps.blog.services.web]\nport = 80\n\n[apps.blog.verify]\nurl = "http://127.0.0.1:81/version"\n'
    )
    out = init(*FLAGS, "--force")
    assert not (project / "compose.watcher.yml").exists()
    assert "Caddy: join it to network shop_default" in out


def test_a_file_with_its_own_caddy_gets_none_added(project: Path) -> None:
    init(*FLAGS)
    assert not (project / "compose.watcher.yml").exists()
    assert load_host(project / "watcher.toml", {}).app("shop").compose_files == ("compose.yml",)


# -- refusals, each with its reason ---------------------------------------------------------


def test_a_proxied_services_host_port_is_given_up_in_the_diff_beside_the_files_caddy(project: Path) -> None:
    (project / "compose.yml").write_text(FIXTURE.read_text())
    out = init(*FLAGS)
    assert "host ports given up (Caddy fronts these services; the diff removes them): web 8080:8080" in out
    assert "ports" not in yaml.safe_load(_patched(project))["services"]["web"]


def test_a_path_routed_services_host_port_is_given_up_too(project: Path) -> None:
    """mastodon's streaming: 127.0.0.1:4000:4000, routed by Caddy at /api/v1/streaming."""
    _without_caddy(project)
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        '    depends_on: [postgres, redis]\n    ports: ["127.0.0.1:4000:4000"]\n',
    )
    flags = ("--service", "web:8080", "--service", "worker:4000:/api/v1/streaming", "--keep-prefix", "worker")
    out = init(*flags, *FLAGS[4:])
    assert "web 8080:8080; worker 127.0.0.1:4000:4000" in out
    added = yaml.safe_load((project / "compose.watcher.yml").read_text())["services"]["caddy"]
    assert added["ports"] == ["8080:80"], "only the main service's port moves to Caddy"
    services = yaml.safe_load(_patched(project))["services"]
    assert "ports" not in services["web"] and "ports" not in services["worker"]


def test_a_host_port_on_a_service_caddy_does_not_proxy_is_refused_naming_the_port(project: Path) -> None:
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        '    depends_on: [postgres, redis]\n    ports: ["8080:8080"]\n',
    )
    message = refused(*FLAGS)
    assert 'worker: ports "8080:8080": a host port can be bound by one colour only' in message
    assert "Caddy does not proxy to worker" in message
    assert sorted(listing(project)) == ["compose.yml"], "a refusal writes nothing"


@pytest.mark.parametrize(
    "entry, shown",
    [
        ('"127.0.0.1:8000:8080"', "127.0.0.1:8000:8080"),
        ("22:22", "22:22"),  # YAML 1.1 would read 1342
        ("{target: 8080, published: 80}", "80:8080"),
    ],
)
def test_every_spelling_of_a_host_port_is_refused(project: Path, entry: str, shown: str) -> None:
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        f"    depends_on: [postgres, redis]\n    ports:\n      - {entry}\n",
    )
    assert f'worker: ports "{shown}"' in refused(*FLAGS)


def test_a_container_only_port_is_not_a_host_port(project: Path) -> None:
    with_service(project, "    init: true\n", '    init: true\n    ports: ["8080"]\n')
    init(*FLAGS)


def test_container_name_is_removed_by_the_diff(project: Path) -> None:
    with_service(project, "    init: true\n", "    init: true\n    container_name: shop-web\n")
    init(*FLAGS)
    assert "-    container_name: shop-web\n" in (project / "watcher-init.diff").read_text()
    assert "container_name" not in yaml.safe_load(_patched(project))["services"]["web"]


def test_keys_from_an_anchor_are_said_in_words(project: Path) -> None:
    _without_caddy(project)
    text = (project / "compose.yml").read_text()
    text = text.replace("services:\n", 'x-web: &web\n  ports: ["8080:8080"]\n\nservices:\n', 1)
    (project / "compose.yml").write_text(text.replace(HOST_PORT, "    <<: *web\n"))
    out = init(*FLAGS)
    assert "Edit compose.yml by hand" in out and "and profile app, no ports" in out
    assert not (project / "watcher-init.diff").exists()


def test_container_name_on_a_shared_service_is_fine(project: Path) -> None:
    with_service(project, "    image: postgres:16\n", "    image: postgres:16\n    container_name: shop-db\n")
    init(*FLAGS)


def test_a_named_volume_written_by_a_stateless_service_is_refused(project: Path) -> None:
    with_service(
        project,
        "    image: ghcr.io/acme/shop:1.4.2\n    restart: unless-stopped\n    init: true\n"
        "    environment:\n      DATABASE_URL: postgres://shop@postgres:5432/shop\n"
        "      REDIS_URL: redis://redis:6379/0\n    depends_on: [postgres, redis]\n",
        "    image: ghcr.io/acme/shop:1.4.2\n    volumes:\n      - pgdata:/var/lib/data\n"
        "    depends_on: [postgres, redis]\n",
    )
    message = refused(*FLAGS)
    assert 'worker: volumes "pgdata:/var/lib/data": named volume pgdata is mounted read-write' in message
    assert "two colours would write it" in message


def test_every_problem_is_reported_at_once(project: Path) -> None:
    with_service(project, "    init: true\n", '    init: true\n    network_mode: "host"\n')
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        '    depends_on: [postgres, redis]\n    ports: ["9229:9229"]\n',
    )
    message = refused(*FLAGS)
    assert "web: network_mode" in message and 'worker: ports "9229:9229"' in message


def test_build_without_image_is_refused(project: Path) -> None:
    with_service(
        project,
        "    image: ghcr.io/acme/shop:1.4.2\n    restart: unless-stopped\n    init: true\n"
        "    environment:\n      DATABASE_URL: postgres://shop@postgres:5432/shop\n"
        "      REDIS_URL: redis://redis:6379/0\n    depends_on: [postgres, redis]\n",
        "    build: .\n    depends_on: [postgres, redis]\n",
    )
    assert "worker: build without image: watcher deploys registry images" in refused(*FLAGS)


def test_network_mode_is_refused(project: Path) -> None:
    with_service(project, "    init: true\n", "    init: true\n    network_mode: host\n")
    assert 'web: network_mode "host"' in refused(*FLAGS)


def test_a_shared_service_waiting_on_a_stateless_one_is_refused(project: Path) -> None:
    with_service(project, "    image: caddy:2.11\n", "    image: caddy:2.11\n    depends_on: [web]\n")
    assert "caddy: depends_on web: web runs per colour now" in refused(*FLAGS)


def test_unknown_services_are_refused(project: Path) -> None:
    message = refused("--service", "wbe:8080", "--verify-url", "http://127.0.0.1/version", "--yes")
    assert (
        "--service wbe: no such service in compose.yml (its services: caddy, web, worker, postgres, redis)"
        in message
    )


@pytest.mark.parametrize(
    "flag, problem",
    [
        ("Web:8080", "invalid service name 'Web'"),
        ("web:80x", "'80x' is not a port number"),
        ("web:8080:api", "must start with '/'"),
    ],
)
def test_bad_service_flags_are_refused(project: Path, flag: str, problem: str) -> None:
    assert problem in refused("--service", flag, "--verify-url", "http://127.0.0.1/version", "--yes")


def test_two_ports_need_a_path_for_all_but_one(project: Path) -> None:
    message = refused(
        "--service", "web:8080", "--service", "worker:9000", "--verify-url", "http://x/v", "--yes"
    )
    assert "give all but one a path prefix, e.g. --service worker:9000:/api" in message
    init("--service", "web:8080", "--service", "worker:9000:/jobs", "--verify-url", "http://x/v", "--yes")
    assert load_host(project / "watcher.toml", {}).app("shop").services[1] == Service("worker", 9000, "/jobs")


# -- non-interactive and interactive answers -----------------------------------------------


def test_without_a_terminal_missing_answers_name_their_flag(project: Path) -> None:
    assert "pass --service NAME:PORT" in refused("--verify-url", "http://127.0.0.1/version")
    assert "pass --verify-url" in refused("--service", "web:8080")
    with_service(project, "    image: ghcr.io/acme/shop:1.4.2\n", "    image: ${REGISTRY}/shop:1.4.2\n")
    assert "image repository (without tag): pass --image" in refused(*FLAGS)


def test_interactive_answers(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every guess taken: caddy, postgres and redis look stateful, web and worker not; web's port
    # from its `expose:`, none for worker; the app and image from the file; the verify URL from
    # Caddy's published port.
    answers = iter([""] * 10)
    questions: list[str] = []

    def fake_input(question: str) -> str:
        questions.append(question)
        return next(answers)

    with_service(project, "    init: true\n", '    init: true\n    expose: ["8080"]\n')
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", fake_input)
    init()
    assert any("web (ghcr.io/acme/shop:1.4.2): stateless? [Y/n]" in q for q in questions)
    assert any("postgres (postgres:16): stateless? [y/N]" in q for q in questions)
    assert len(questions) == 10
    assert any("port Caddy proxies to on web (blank: none, a worker) [8080]" in q for q in questions)
    assert any("[http://127.0.0.1/version]" in q for q in questions)
    config = load_host(project / "watcher.toml", {}).app("shop")
    assert config.services == (Service("web", 8080), Service("worker", None))
    assert config.verify.url == "http://127.0.0.1/version"


def test_a_yes_no_answer_that_fits_neither_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["maybe", "nope", "N"])
    monkeypatch.setattr("builtins.input", lambda question: next(answers))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert Prompt(interactive=True).confirm("stateless?", True) is False
    assert out.getvalue().count("please answer y or n") == 2


def test_keep_prefix_sends_the_full_path(project: Path) -> None:
    with_service(project, "    init: true\n", '    init: true\n    expose: ["8080"]\n')
    out = init(
        "--service", "web:8080", "--service", "worker:4000:/api/v1/streaming", "--keep-prefix", "worker",
        "--verify-url", "http://127.0.0.1/version", "--yes",
    )  # fmt: skip
    config = load_host(project / "watcher.toml", {}).app("shop")
    assert [s.keep_prefix for s in config.services] == [False, True]
    assert "handle /api/v1/streaming/* {" in (project / "Caddyfile.shop").read_text()
    assert "worker (port 4000, path /api/v1/streaming, full path)" in out
    message = refused(*FLAGS, "--keep-prefix", "web", "--force")
    assert "--keep-prefix web: only a --service NAME:PORT:PATH has a prefix to keep" in message


class _Tty:
    def isatty(self) -> bool:
        return True


def test_exit_code_2_from_the_command_line(project: Path) -> None:
    with_service(
        project,
        "    depends_on: [postgres, redis]\n",
        '    depends_on: [postgres, redis]\n    ports: ["9229:9229"]\n',
    )
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "init", *FLAGS],
        cwd=project,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        'watcher: error: compose.yml cannot be coloured safely as it is:\n  worker: ports "9229:9229"'
        in result.stderr
    )


def _answers(project: Path) -> Answers:
    compose = read_compose(project / "compose.yml")
    parsed = cli.build_parser().parse_args(["init", *FLAGS])
    return gather(compose, parsed, Prompt(interactive=False))


# -- what init reads off the file: one-shots, followers, health ----------------------------------

STACK = """\
services:
  server:
    image: ghcr.io/goauthentik/server:${AUTHENTIK_TAG:-2024.12.1}
    command: server
    ports: ["9000:9000"]
    depends_on:
      postgresql: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:9000/-/health/live/"]
  worker:
    image: ghcr.io/goauthentik/server:${AUTHENTIK_TAG:-2024.12.1}
    command: worker
  migrate:
    image: ghcr.io/goauthentik/server:${AUTHENTIK_TAG:-2024.12.1}
    command: ak migrate
  streaming:
    image: ghcr.io/goauthentik/server-streaming:${AUTHENTIK_TAG:-2024.12.1}
    expose: ["4000"]
  outpost:
    image: ghcr.io/goauthentik/proxy:${AUTHENTIK_TAG:-2024.12.1}
  static:
    image: gcr.io/distroless/static-web:1.0
    expose: ["8043"]
  postgresql:
    image: postgres:16-alpine
    volumes: ["database:/var/lib/postgresql/data"]
volumes:
  database:
"""
STACK_FLAGS = (
    "--app", "ak", "--service", "server:9000", "--service", "worker", "--service", "streaming:4000:/ws",
    "--service", "outpost", "--service", "static:8043:/static",
    "--verify-url", "http://127.0.0.1:9000/version", "--yes",
)  # fmt: skip


def test_a_job_a_service_waits_for_runs_per_colour_as_a_one_shot(project: Path) -> None:
    (project / "compose.yml").write_text(STACK)
    out = init(*STACK_FLAGS)
    config = load_host(project / "watcher.toml", {}).app("ak")
    migrate = next(s for s in config.services if s.name == "migrate")
    assert migrate.one_shot and migrate.port is None
    assert "one-shot, per colour: migrate (server waits for it to complete successfully)" in out
    assert "expand, then contract" in out, "the migration note"
    assert "migrate" not in config.shared_services
    diff = (project / "watcher-init.diff").read_text()
    assert "+    image: ${APP_IMAGE:-ghcr.io/goauthentik/server}:${APP_VERSION:-unset}" in diff


def test_a_migration_on_the_apps_image_is_a_one_shot_even_unwaited(project: Path) -> None:
    (project / "compose.yml").write_text(
        STACK.replace("      migrate: {condition: service_completed_successfully}\n", "")
    )
    init(*STACK_FLAGS)
    assert (
        "one_shot = true   # its command runs migrations on the app's image"
        in (project / "watcher.toml").read_text()
    )


def test_several_services_from_the_apps_image_all_take_its_version(project: Path) -> None:
    (project / "compose.yml").write_text(STACK)
    init(*STACK_FLAGS)
    patched = yaml.safe_load(
        proposed(read_compose(project / "compose.yml"), _stack_answers(project), project, "/run/watcher")
        or ""
    )["services"]
    for name in ("server", "worker", "migrate"):
        assert patched[name]["image"] == "${APP_IMAGE:-ghcr.io/goauthentik/server}:${APP_VERSION:-unset}"
    assert patched["worker"]["command"] == "worker", "each keeps its command"


def test_images_that_follow_the_apps_version_are_deployed_with_it(project: Path) -> None:
    (project / "compose.yml").write_text(STACK)
    out = init(*STACK_FLAGS)
    services = {s.name: s for s in load_host(project / "watcher.toml", {}).app("ak").services}
    assert services["streaming"].follows_version and services["outpost"].follows_version
    assert services["static"].follows_version is None and services["worker"].follows_version is None
    assert "streaming (its image ghcr.io/goauthentik/server-streaming is the app's with a suffix)" in out
    assert "outpost (its tag is ${AUTHENTIK_TAG}, as the app image's)" in out
    diff = (project / "watcher-init.diff").read_text()
    assert "+    image: ghcr.io/goauthentik/server-streaming:${APP_VERSION:-unset}" in diff
    assert "+    image: ghcr.io/goauthentik/proxy:${APP_VERSION:-unset}" in diff
    assert "-    image: gcr.io/distroless/static-web:1.0" not in diff, "a sidecar keeps its own image"


def test_health_paths_are_proposed_commented_out_or_written_when_given(project: Path) -> None:
    (project / "compose.yml").write_text(STACK)
    out = init(*STACK_FLAGS)
    text = (project / "watcher.toml").read_text()
    assert '# health = { path = "/-/health/live/" }   # proposed by init: its healthcheck runs wget' in text
    assert '# health = { path = "/up" }   # proposed by init: it has no healthcheck' in text
    assert "gcr.io/distroless/static-web has no shell" in text
    assert "check that it answers 2xx, then uncomment (or pass --health server:/-/health/live/" in text
    assert all(s.health_path is None for s in load_host(project / "watcher.toml", {}).app("ak").services)
    assert "health proposed (commented out in the config, check it): server GET /-/health/live/" in out

    init(*STACK_FLAGS, "--health", "static:/healthz", "--health", "worker:/up:8000", "--force")
    services = {s.name: s for s in load_host(project / "watcher.toml", {}).app("ak").services}
    assert (services["static"].health_path, services["static"].health_port) == ("/healthz", 8043)
    assert (services["worker"].health_path, services["worker"].health_port) == ("/up", 8000)
    assert "--health nope:/up: expected NAME:PATH[:PORT] of a --service" in refused(
        *STACK_FLAGS, "--health", "nope:/up", "--force"
    )
    assert "worker has no port: say which answers" in refused(
        *STACK_FLAGS, "--health", "worker:/up", "--force"
    )


def _stack_answers(project: Path) -> Answers:
    parsed = cli.build_parser().parse_args(["init", *STACK_FLAGS])
    return gather(read_compose(project / "compose.yml"), parsed, Prompt(interactive=False))


# -- the tag policy, from the registry's tags ------------------------------------------------------


@pytest.mark.parametrize(
    "tags, current, kind, picked",
    [
        (["postgresql-v2.9.0", "postgresql-v2.13.0", "mysql-v2.14.0", "postgresql-v2.13.0-rc1"], None, "regex",
         "postgresql-v2.13.0"),
        (["2026.12.07-abc123", "2026.12.10-ffe001", "2026.11.30-0a1b2c", "latest"], None, "regex",
         "2026.12.10-ffe001"),
        (["main-abc1234f", "main-0a1b2c3d", "main", "latest"], "main-abc1234f", "digest", "main"),
        (["build-9", "build-10", "pr-77"], "build-9", "regex", "build-10"),
    ],
)  # fmt: skip
def test_a_tag_scheme_that_is_not_semver_gets_a_policy_that_picks_the_newest(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    tags: list[str],
    current: str | None,
    kind: str,
    picked: str,
) -> None:
    from watcher.policy import build_policy

    if current:
        with_service(project, "ghcr.io/acme/shop:1.4.2", f"ghcr.io/acme/shop:{current}")
    monkeypatch.setattr(TAGS, "registry_tags", lambda image: tags)
    out = init(*FLAGS)
    policy = load_host(project / "watcher.toml", {}).app("shop").policy
    assert policy.kind == kind
    assert build_policy(policy).decide(tags).candidate == picked
    assert (
        "[apps.shop.policy]   # proposed by init from the registry's tags"
        in (project / "watcher.toml").read_text()
    )
    assert "tag policy: its tags look like" in out and "check-tags` lists every tag" in out


def test_semver_tags_need_no_policy_and_an_unreachable_registry_proposes_none(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TAGS, "registry_tags", lambda image: ["1.4.2", "1.10.0", "latest"])
    out = init(*FLAGS)
    assert "its tags are semantic versions: the default policy (semver) picks 1.10.0" in out
    assert "[apps.shop.policy]" not in (project / "watcher.toml").read_text()

    monkeypatch.setattr(TAGS, "registry_tags", lambda image: "cannot reach ghcr.io")
    out = init(*FLAGS, "--force")
    assert (
        "could not list the tags of ghcr.io/acme/shop (cannot reach ghcr.io): no tag policy proposed" in out
    )
    assert "[apps.shop.policy]" not in (project / "watcher.toml").read_text()


def test_the_running_tag_is_read_through_its_variables_default(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_service(project, "ghcr.io/acme/shop:1.4.2", "ghcr.io/acme/shop:${SHOP_TAG:-postgresql-v2.9.0}")
    seen: list[str] = []
    monkeypatch.setattr(
        TAGS, "from_tags", lambda tags, current: seen.append(current) or TAGS.TagProposal(None, "-")
    )
    monkeypatch.setattr(TAGS, "registry_tags", lambda image: ["x"])
    out = init(*FLAGS)
    assert seen == ["postgresql-v2.9.0"] and "deploy postgresql-v2.9.0`" in out


@pytest.mark.parametrize(
    "tags, current, table",
    [
        # umami's file runs postgresql-latest: its family's numbered tags set the scheme.
        (["postgresql-latest", "postgresql-v2.9.0", "postgresql-v2.13.0", "mysql-v2.14.0", "latest"],
         "postgresql-latest", {"kind": "regex", "include": r"postgresql-v(?P<order>\d+\.\d+\.\d+)"}),
        (["latest", "2.2.3", "2.2.10"], "latest", None),  # miniflux: semver, the default
        (["dev-abc1234f", "dev"], "dev-abc1234f", {"kind": "digest", "tag": "dev"}),
        (["latest"], "latest", {"kind": "digest", "tag": "latest"}),
        (["main-abc1234f", "main-0a1b2c3d"], None, None),  # no order, nothing moving
    ],
)  # fmt: skip
def test_the_scheme_is_the_running_tags_or_its_familys(
    tags: list[str], current: str | None, table: dict[str, str] | None
) -> None:
    proposal = TAGS.from_tags(tags, current)
    assert proposal.table == table
    assert "no tags yet" not in proposal.said


def test_a_value_init_writes_replaces_the_users_whole(project: Path) -> None:
    init(*FLAGS)
    with (project / "watcher.toml").open("a") as config:
        config.write('\n[apps.shop.services.web.health]\npath = "/old"\nport = 9999\n')
    out = init(*FLAGS, "--health", "web:/up", "--force")
    web = load_host(project / "watcher.toml", {}).app("shop").services[0]
    assert (web.health_path, web.health_port) == ("/up", 8080), "not /up on the old port"
    assert '  services.web.health.path: "/old" -> "/up"' in out
    assert "  services.web.health.port: 9999 -> (none)" in out


@pytest.mark.parametrize(
    "dotenv, environ, repo",
    [
        ("", None, "ghcr.io/goauthentik/server"),  # as authentik publishes it: the default
        ("AUTHENTIK_IMAGE=registry.example.com/mirror/server\n", None, "registry.example.com/mirror/server"),
        ("AUTHENTIK_IMAGE=from-dotenv/server\n", "from-env/server", "from-env/server"),
        ("AUTHENTIK_IMAGE=\n", None, "ghcr.io/goauthentik/server"),  # `:-`: empty takes the default
    ],
)
def test_an_image_repository_given_as_a_variables_default_needs_no_flag(
    project: Path, monkeypatch: pytest.MonkeyPatch, dotenv: str, environ: str | None, repo: str
) -> None:
    published = "${AUTHENTIK_IMAGE:-ghcr.io/goauthentik/server}:${AUTHENTIK_TAG:-2024.12.1}"
    with_service(
        project, "    image: ghcr.io/acme/shop:1.4.2\n    restart", f"    image: {published}\n    restart"
    )
    with_service(
        project, "    image: ghcr.io/acme/shop:1.4.2\n    restart", f"    image: {published}\n    restart"
    )
    (project / ".env").write_text(dotenv)
    if environ:
        monkeypatch.setenv("AUTHENTIK_IMAGE", environ)
    else:
        monkeypatch.delenv("AUTHENTIK_IMAGE", raising=False)
    out = init(*FLAGS)
    assert f"app shop, image {repo}\n" in out
    assert "`watcher --config watcher.toml deploy 2024.12.1`" in out
    services = yaml.safe_load(_patched(project))["services"]
    for name in ("web", "worker"):
        assert services[name]["image"] == f"${{APP_IMAGE:-{repo}}}:${{APP_VERSION:-unset}}"


def test_an_image_repository_whose_variable_has_no_value_still_asks_for_image(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_IMAGE", raising=False)
    with_service(project, "ghcr.io/acme/shop:1.4.2", "${SHOP_IMAGE}:1.4.2")
    assert "the app's image repository (without tag): pass --image" in refused(*FLAGS)


WORKER_WRITES = (
    "    image: ghcr.io/acme/shop:1.4.2\n    restart: unless-stopped\n    init: true\n"
    "    environment:\n      DATABASE_URL: postgres://shop@postgres:5432/shop\n"
    "      REDIS_URL: redis://redis:6379/0\n    depends_on: [postgres, redis]\n",
    "    image: ghcr.io/acme/shop:1.4.2\n    volumes:\n      - scratch:/tmp/work\n"
    "    depends_on: [postgres, redis]\n",
)


def test_a_volume_declared_per_colour_is_the_colours_own(project: Path) -> None:
    """plausible's TMPDIR volume: each colour its own empty copy, named per colour project."""
    with_service(project, *WORKER_WRITES)
    with_service(project, "volumes:\n  caddy-data:\n", "volumes:\n  caddy-data:\n  scratch:\n")
    message = refused(*FLAGS)
    assert "named volume scratch is mounted read-write" in message
    assert "its own empty copy with --per-colour-volume scratch" in message
    out = init(*FLAGS, "--per-colour-volume", "scratch")
    assert "volumes per colour (each colour its own empty copy, removed with it): scratch" in out
    for color in ("blue", "green"):
        overlay = yaml.safe_load((project / f"compose.{color}.yml").read_text())
        assert overlay["volumes"] == {"scratch": {"name": f"shop-{color}_scratch"}}, "not external"
    assert "docker volume create" not in out, "the colour creates it, nobody else"


def test_a_per_colour_volume_must_be_one_a_stateless_service_mounts_under_its_projects_name(
    project: Path,
) -> None:
    assert "--per-colour-volume pgdata: no stateless service mounts" in refused(
        *FLAGS, "--per-colour-volume", "pgdata"
    )
    with_service(project, *WORKER_WRITES)
    with_service(project, "volumes:\n  caddy-data:\n", "volumes:\n  caddy-data:\n  scratch:\n    name: tmp\n")
    assert "--per-colour-volume scratch: declared with name: or external:" in refused(
        *FLAGS, "--per-colour-volume", "scratch"
    )


def test_interactive_init_offers_a_per_colour_copy_explaining_what_it_is(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_service(project, *WORKER_WRITES)
    questions: list[str] = []
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", lambda question: questions.append(question) or "y")
    out = init(*FLAGS[:-1], "--app", "shop", "--image", "ghcr.io/acme/shop")
    assert any("scratch (written by worker): one copy per colour? [y/N]" in q for q in questions)
    assert "each colour then gets its own empty copy" in out and "wrong for data both colours must see" in out
    assert yaml.safe_load((project / "compose.blue.yml").read_text())["volumes"] == {
        "scratch": {"name": "shop-blue_scratch"}
    }


# -- --platform swarm: what `docker stack deploy` would silently break --------------------------------

SWARM = (*FLAGS, "--platform", "swarm")
WEB_BIND = "    volumes:\n      - ./config/shop.ini:/etc/shop.ini:ro\n"
WORKER_IMAGE = "  worker:\n    image: ghcr.io/acme/shop:1.4.2\n"


def test_platform_swarm_writes_platform_swarm_for_a_clean_file(project: Path) -> None:
    with_service(project, WEB_BIND, "")
    out = init(*SWARM)
    assert 'platform = "swarm"   # what runs the colours' in (project / "watcher.toml").read_text()
    assert load_host(project / "watcher.toml", {}).app("shop").platform == "swarm"
    assert (
        'Docker Swarm (platform = "swarm"): nothing in the colour services that Swarm ignores or drops.'
        in out
    )
    diff = out[out.index("--- a/compose.yml") : out.index("Steps left:")]
    assert "profiles" not in diff, "stack deploy rejects profiles: the diff puts none on the colours"
    assert "--profile" not in out.split("Steps left:")[1]


def test_platform_compose_writes_no_platform_key(project: Path) -> None:
    init(*FLAGS)
    assert "platform" not in (project / "watcher.toml").read_text()
    assert load_host(project / "watcher.toml", {}).app("shop").platform == "compose"


def test_platform_swarm_refuses_build_without_image_and_writes_nothing(project: Path) -> None:
    with_service(project, WORKER_IMAGE, "  worker:\n    build: .\n")
    message = refused(*SWARM)
    assert message.startswith("compose.yml cannot be coloured safely on Docker Swarm as it is:\n")
    assert "  worker: build without image: watcher deploys registry images" in message
    assert message.count("worker: build") == 1, "one reason per key, not Compose's and Swarm's"
    assert listing(project) == {"compose.yml": (project / "compose.yml").read_text()}, "nothing written"


def test_platform_swarm_refuses_what_only_swarm_breaks_every_reason_at_once(project: Path) -> None:
    """Each of these colours safely on Compose; Swarm would refuse the port or run the migration
    out of order (its profile is a warning: watcher's stack file leaves the key out)."""
    with_service(project, WORKER_IMAGE, f'{WORKER_IMAGE}    profiles: [jobs]\n    ports: ["9229"]\n')
    with_service(
        project,
        "  postgres:\n",
        "  migrate:\n    image: ghcr.io/acme/shop:1.4.2\n    command: migrate\n\n  postgres:\n",
    )
    with_service(
        project,
        "    depends_on:\n      - postgres\n      - redis\n",
        "    depends_on:\n      postgres: {condition: service_started}\n"
        "      migrate: {condition: service_completed_successfully}\n",
    )
    init(*FLAGS, "--dry-run")  # Compose takes it as it is
    message = refused(*SWARM)
    assert message == (
        "compose.yml cannot be coloured safely on Docker Swarm as it is:\n"
        "  web: depends_on migrate (condition: service_completed_successfully): Swarm drops it, so web "
        "starts without waiting for migrate to complete; run migrate before the deploy (hooks.pre_deploy) "
        "or when the app starts, and take it out of the colours\n"
        '  worker: ports "9229": Swarm publishes it in ingress mode, which Docker refuses with endpoint_mode '
        "dnsrr; remove ports: (the edge Caddy reaches the tasks on the overlay)"
    )
    assert sorted(listing(project)) == ["compose.yml"]


def test_platform_swarm_prints_each_warning(project: Path) -> None:
    with_service(project, WORKER_IMAGE, f"{WORKER_IMAGE}    build: .\n    container_name: shop-worker\n")
    out = init(*SWARM)
    warned = out[out.index("Docker Swarm") : out.index("wrote ")]
    assert warned.splitlines() == [
        'Docker Swarm (platform = "swarm"): what `docker stack deploy` would do otherwise than the file '
        "says (with the diff applied):",
        '  warning: web: volumes "./config/shop.ini:/etc/shop.ini:ro": a bind mount is the directory of '
        "whichever node runs the task, and web's tasks may run on any node; add a "
        "deploy.placement.constraints entry (node.hostname == ...), or use a Swarm config or secret for "
        "a file",
        "  warning: worker: build: Swarm ignores it: every node pulls ghcr.io/acme/shop:1.4.2 from its "
        "registry, never builds it; push that image (a node without it retries the task forever) or "
        "remove build:",
        "",
    ], "the container_name is not one: the diff removes it"
    assert 'platform = "swarm"' in (project / "watcher.toml").read_text()


def test_rewriting_a_swarm_app_without_the_flag_makes_it_compose_again(project: Path) -> None:
    with_service(project, WEB_BIND, "")
    init(*SWARM)
    out = init(*FLAGS, "--force")
    assert 'platform = "compose"' in (project / "watcher.toml").read_text()
    assert '  platform: "swarm" -> "compose"' in out


def test_a_swarm_refusal_from_the_command_line_is_exit_2_without_a_traceback(project: Path) -> None:
    with_service(project, WORKER_IMAGE, f'{WORKER_IMAGE}    ports: ["9229"]\n')
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "init", *SWARM],
        cwd=project,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "watcher: error: compose.yml cannot be coloured safely on Docker Swarm as it is:\n"
        '  worker: ports "9229": Swarm publishes it in ingress mode'
    )
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["compose.yml"]
