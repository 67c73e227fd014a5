"""What watcher runs for an app (its hooks, `docker compose`) sees none of watcher's secrets:
the attack of issue 21 (a `pre_deploy` hook running `env` printed them all) replayed against
the hook runner and the compose runner, and what the app's config may pass on purpose."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit.test_config import EXAMPLE, MINIMAL, make_project, refused
from watcher.backends.compose import ComposeProject
from watcher.config import load_config
from watcher.engine.hooks import run_hook

#: Every secret watcher reads, as an operator sets them, with the forms rotation and files use.
SECRETS = {
    "WEBHOOK_SECRET": "github-hmac-key-0123456789abcdef0123",
    "WEBHOOK_SECRET_PREVIOUS": "the-one-before-0123456789abcdef0123",
    "WEBHOOK_REGISTRY_TOKEN": "registry-bearer-0123456789abcdef012",
    "WATCHER_API_TOKEN": "api-token-0123456789abcdef0123456789",
    "WATCHER_API_TOKEN_PREVIOUS_FILE": "/run/secrets/api_token_previous",
    "GITHUB_TOKEN": "ghp_0123456789abcdef0123456789abcdef",
    "REDIS_PASSWORD_FILE": "/run/secrets/redis_password",
    "REDIS_URL": "redis://:hunter2@redis:6379/0",
    "REGISTRY_USERNAME": "robot",
    "REGISTRY_PASSWORD": "registry-password-0123456789abcdef",
    "WATCHER_NOTIFY_URLS": "slack://T0/B0/tokentokentoken",
}


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    monkeypatch.setenv("COMPOSE_HTTP_TIMEOUT", "120")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("SOME_UNRELATED_SETTING", "x")


def printed_env(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def leaked(env: dict[str, str]) -> list[str]:
    values = set(SECRETS.values())
    return sorted(name for name, value in env.items() if name in SECRETS or value in values)


def test_a_hook_running_env_sees_none_of_watchers_secrets(tmp_path: Path, secrets_set: None) -> None:
    config = load_config(make_project(tmp_path), {})
    output = run_hook(["env"], env=config.compose_env("1.4.2"), cwd=tmp_path, timeout=10)
    env = printed_env(output)
    assert leaked(env) == []
    assert env["PATH"] == os.environ["PATH"] and env["DOCKER_HOST"] == "unix:///run/user/1000/docker.sock"
    assert env["COMPOSE_HTTP_TIMEOUT"] == "120" and env["LC_ALL"] == "C.UTF-8"
    assert env["APP_VERSION"] == "1.4.2" and env["WATCHER_APP"] == "shop"
    assert "SOME_UNRELATED_SETTING" not in env


def test_docker_compose_sees_none_of_watchers_secrets(
    tmp_path: Path, secrets_set: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker` here is a stand-in that prints its environment, as compose would interpolate it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexec env\n")
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = load_config(make_project(tmp_path), {})
    project = ComposeProject("shop-blue", tmp_path, ("compose.yml",))
    env = printed_env(project.run(["config"], config.compose_env("1.4.2")))
    assert leaked(env) == []
    assert env["APP_IMAGE"] == "ghcr.io/acme/shop" and env["APP_VERSION"] == "1.4.2"


def test_what_the_compose_files_interpolate_is_passed_but_never_a_secret(
    tmp_path: Path, secrets_set: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_project(tmp_path)
    (tmp_path / "compose.yml").write_text(
        "name: ${STACK_NAME:-demo}\n"
        "services:\n"
        "  web:\n"
        "    image: ${APP_IMAGE}:${APP_VERSION}\n"
        "    ports: ['${HTTP_PORT-8080}:80']\n"
        "    environment:\n"
        "      TOKEN: ${WEBHOOK_SECRET}\n"  # a compose file cannot ask for watcher's secrets
        "      PRICE: $$5 and $${ESCAPED}\n"  # `$$` is a literal `$`
    )
    (tmp_path / "compose.green.yml").write_text("services: {web: {labels: [x=$GREEN_ONLY]}}\n")
    for name in ("STACK_NAME", "HTTP_PORT", "GREEN_ONLY", "ESCAPED"):
        monkeypatch.setenv(name, name.lower())
    env = load_config(path, {}).compose_env(None)
    assert {"STACK_NAME", "HTTP_PORT", "GREEN_ONLY"} <= env.keys()
    assert "ESCAPED" not in env and leaked(env) == []


def test_pass_env_passes_the_variables_the_app_names(tmp_path: Path, secrets_set: None) -> None:
    path = make_project(
        tmp_path, MINIMAL.replace("[services.web]", 'pass_env = ["SOME_UNRELATED_SETTING"]\n\n[services.web]')
    )
    env = load_config(path, {}).compose_env("1")
    assert env["SOME_UNRELATED_SETTING"] == "x" and leaked(env) == []


@pytest.mark.parametrize(
    "name",
    ["WEBHOOK_SECRET", "WATCHER_API_TOKEN_FILE", "WEBHOOK_SECRET_PREVIOUS", "REDIS_URL", "GITHUB_TOKEN"],
)
def test_pass_env_never_takes_a_secret_of_watchers(tmp_path: Path, name: str) -> None:
    path = make_project(
        tmp_path, MINIMAL.replace("[services.web]", f'pass_env = ["{name}"]\n\n[services.web]')
    )
    assert refused(path) == (
        f"{path}: app.pass_env: {name} is watcher's own secret and is never passed to hooks or "
        "docker compose; give the app a variable of its own"
    )


def test_the_demo_stack_still_gets_the_shell_variables_it_interpolates(
    secrets_set: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` sets STACK_NAME, HTTP_PORT and the images in watcher's environment for
    compose.yml to read; they pass, the secrets do not."""
    demo = {
        "STACK_NAME": "demo",
        "HTTP_PORT": "8080",
        "CADDY_IMAGE": "caddy:2.11",
        "APP_HEALTH_INTERVAL": "1s",
    }
    for name, value in demo.items():
        monkeypatch.setenv(name, value)
    env = load_config(EXAMPLE, {}, "demo").compose_env("v1")
    assert env.items() >= demo.items() and leaked(env) == []
