"""`watcher init` on a user's own compose file, in temporary directories (no Docker): what it
writes, that the config it writes loads as watcher reads it, the diff it proposes, and every
refusal with its reason. Nothing is overwritten without --force; --dry-run writes nothing."""

from __future__ import annotations

import contextlib
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
def test_the_printed_diff_applies_with_patch(project: Path) -> None:
    out = init(*FLAGS)
    diff = out[out.index("--- a/compose.yml") : out.index("\nSteps left:")]
    (project / "watcher-init.diff").write_text(diff)
    subprocess.run(["patch", "-p1", "-i", "watcher-init.diff"], cwd=project, check=True, capture_output=True)
    services = yaml.safe_load((project / "compose.yml").read_text())["services"]
    assert services["web"]["profiles"] == ["app"] and "profiles" not in services["postgres"]


def test_the_steps_say_what_is_left(project: Path) -> None:
    out = init(*FLAGS)
    steps = out[out.index("Steps left:") :]
    assert f"patch -p1 < watcher-init.diff` in {project}" in steps
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
    assert out[out.index("Proposed changes") :] == real[real.index("Proposed changes") :], (
        "the dry run proposes what the real run does"
    )


def test_dry_run_refuses_what_the_real_run_would(project: Path) -> None:
    init(*FLAGS)
    before = listing(project)
    assert "compose.blue.yml exists" in refused(*FLAGS, "--dry-run")
    assert listing(project) == before


def test_never_overwrites_without_force(project: Path) -> None:
    (project / "compose.blue.yml").write_text("# mine\n")
    (project / "Caddyfile.shop").write_text("# mine\n")
    message = refused(*FLAGS)
    assert "compose.blue.yml exists: init never overwrites a file; pass --force to replace it" in message
    assert "Caddyfile.shop exists" in message
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


def test_an_app_already_configured_is_never_replaced_nor_doubled(project: Path) -> None:
    init(*FLAGS)
    config = (project / "watcher.toml").read_text()
    message = refused(*FLAGS, "--force")
    assert (
        "watcher.toml already has [apps.shop]: init never replaces or duplicates an app's section" in message
    )
    assert (project / "watcher.toml").read_text() == config


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


# -- refusals, each with its reason ---------------------------------------------------------


def test_a_host_port_is_refused_naming_the_port(project: Path) -> None:
    (project / "compose.yml").write_text(FIXTURE.read_text())
    message = refused(*FLAGS)
    assert 'web: ports "8080:8080": a host port can be bound by one colour only' in message
    assert "Caddy reaches the colours over the network" in message
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
    with_service(project, "    init: true\n", f"    init: true\n    ports:\n      - {entry}\n")
    assert f'web: ports "{shown}"' in refused(*FLAGS)


def test_a_container_only_port_is_not_a_host_port(project: Path) -> None:
    with_service(project, "    init: true\n", '    init: true\n    ports: ["8080"]\n')
    init(*FLAGS)


def test_container_name_is_refused(project: Path) -> None:
    with_service(project, "    init: true\n", "    init: true\n    container_name: shop-web\n")
    assert 'web: container_name "shop-web": a container name exists once' in refused(*FLAGS)


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
    (project / "compose.yml").write_text(FIXTURE.read_text())
    with_service(project, "    init: true\n", "    init: true\n    container_name: shop-web\n")
    message = refused(*FLAGS)
    assert "web: container_name" in message and 'web: ports "8080:8080"' in message


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


class _Tty:
    def isatty(self) -> bool:
        return True


def test_exit_code_2_from_the_command_line(project: Path) -> None:
    (project / "compose.yml").write_text(FIXTURE.read_text())
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
        'watcher: error: compose.yml cannot be coloured safely as it is:\n  web: ports "8080:8080"'
        in result.stderr
    )


def _answers(project: Path) -> Answers:
    compose = read_compose(project / "compose.yml")
    parsed = cli.build_parser().parse_args(["init", *FLAGS])
    return gather(compose, parsed, Prompt(interactive=False))
