"""The `watcher` command line: help, bad input refused with exit 2 before anything touches
Docker, Caddy or the lock, and a clear message when no configuration is found."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from watcher import DISTRIBUTION, cli
from watcher.config import load_config
from watcher.engine.deployment import Deployment
from watcher.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("deploy", "status", "rollback", "cleanup", "reset")

CONFIG = """\
[app]
name = "shop"
image = "ghcr.io/acme/shop"

[services.web]
port = 8080

[verify]
url = "http://127.0.0.1:8080/version"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A valid project dir; returns its watcher.toml."""
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (tmp_path / name).write_text("")
    path = tmp_path / "watcher.toml"
    path.write_text(CONFIG)
    return path


def watcher(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m watcher` with no TTY, no inherited config, and a Docker that cannot answer."""
    base = {k: v for k, v in os.environ.items() if k not in ("WATCHER_CONFIG", "DOCKER_HOST")}
    base.update({"PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        cwd=cwd,
        env=base,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def untouched(project_dir: Path) -> None:
    """Nothing was started: no state dir (so no lock, no route file), no .deployment-color."""
    assert not (project_dir / ".watcher").exists()
    assert not (project_dir / ".deployment-color").exists()


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("help",), ("--help",), ()])
def test_help_lists_the_commands(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = watcher(*args, cwd=tmp_path)  # no config needed for help
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout
    assert "HEALTH_CHECK_TIMEOUT" in result.stdout and "DRAIN_TIMEOUT" in result.stdout


def test_help_lists_each_command_once(tmp_path: Path) -> None:
    """The description lists every command with what it takes; argparse's own list is not added."""
    text = watcher("--help", cwd=tmp_path).stdout
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and line[2:3].isalpha()]
    verbs = [*cli.PARSERS, "serve", "run", "check-tags", "init"]
    for verb in verbs:
        assert listed.count(verb) == 1, (verb, listed)
    assert "positional arguments" not in text
    assert text.startswith("usage: watcher ") and "COMMAND" in text.splitlines()[0]


def test_version_is_the_distributions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = []
    monkeypatch.setattr(cli.metadata, "version", lambda name: asked.append(name) or "9.8.7")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == "watcher 9.8.7\n"
    assert asked == [DISTRIBUTION]


def test_the_distribution_named_in_code_is_pyprojects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "watcher"  # `watcher` on PyPI is someone else's
    assert project["scripts"] == {"watcher": "watcher.cli:main"}


def test_version_from_a_source_tree_says_so(tmp_path: Path) -> None:
    """Run from a checkout without installing: no traceback, the reason."""
    result = watcher("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("watcher "), result.stderr


@pytest.mark.parametrize("command", ["serve", "run"])
def test_serve_help_lists_every_route(tmp_path: Path, command: str) -> None:
    """Read from the receiver's routes: one the help forgot cannot exist."""
    from prometheus_client import CollectorRegistry

    from watcher.config import WebhookSettings
    from watcher.memory import LocalMemory
    from watcher.triggers.server import create_app

    text = watcher(command, "--help", cwd=tmp_path).stdout
    app = create_app(
        SimpleNamespace(apps={}, memory=LocalMemory(), prefix=""),
        WebhookSettings(),
        ready=print,
        status=dict,
        metrics=CollectorRegistry(),
    )
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.endswith("static"):
            assert f" {rule.rule} " in text, rule.rule
    for wanted in ("/hooks/github", "/promote", "/abort", "/metrics", "/healthz", "/status", "dashboard"):
        assert wanted in text


def test_every_json_is_printed_with_its_schema() -> None:
    """Every command that takes --json prints through output.dumps (the `schema` key first): the
    faces hold no other JSON printing (test_history.py runs the queue's commands)."""
    import ast

    for face in (REPO / "watcher" / "cli.py", REPO / "watcher" / "triggers" / "commands.py"):
        tree = ast.parse(face.read_text())
        dumped = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "dumps"
            and getattr(node.value, "id", "") == "json"
        ]
        assert dumped == [], (face, dumped)
    parser = cli.build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    with_json = {name for name, sub in verbs.items() if "--json" in sub._option_string_actions}
    wanted = {"apps", "deploy", "rollback", "promote", "abort", "status", "cleanup", "enqueue"}
    wanted |= {"queue", "history", "show", "pause", "resume", "check-tags"}
    assert wanted <= with_json, wanted - with_json


def test_apps_as_json(project: Path) -> None:
    result = watcher("--config", str(project), "apps", "--json", cwd=project.parent)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["schema", "apps"] and data["schema"] == 1
    assert data["apps"] == [
        {
            "name": "shop",
            "image": "ghcr.io/acme/shop",
            "project": "shop",
            "project_dir": str(project.parent),
            "route": ":80",
            "policy": "semver, releases only",
        }
    ]


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = watcher("deploi", "1.0", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# -- tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "1.0;rm"),
        ("deploy", "a/b"),
        ("deploy", ".hidden"),
        ("rollback", "--to", "1.0;rm"),
        ("deploy", "../../etc"),
    ],
)
def test_invalid_tag_exits_2_before_touching_anything(project: Path, args: tuple[str, ...]) -> None:
    result = watcher("--config", str(project), *args, cwd=project.parent)
    assert result.returncode == 2, result.stderr
    assert "invalid tag" in result.stderr
    assert "docker" not in result.stderr.lower()
    untouched(project.parent)


def test_invalid_tag_is_refused_even_without_config(tmp_path: Path) -> None:
    result = watcher("deploy", "1.0;rm", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid tag '1.0;rm'" in result.stderr


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_cli_validates_the_tag_before_the_lock_or_the_engine(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_signals: None
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        pytest.fail("touched the lock or the engine before validating the tag")

    monkeypatch.setattr(cli, "Deployment", forbidden)
    monkeypatch.setattr(cli, "HostLock", forbidden)
    assert cli.main(["--config", str(project), "deploy", "1.0;rm"]) == 2
    assert "invalid tag" in capsys.readouterr().err
    assert cli.main(["--config", str(project), "rollback", "--to", "x y"]) == 2


class NoDocker:
    """A Docker stand-in that fails the test on any use."""

    def __getattr__(self, name: str) -> object:
        pytest.fail(f"the engine touched Docker ({name}) before validating the tag")


class NoGuard:
    def check(self) -> None:
        pytest.fail("the engine checked the lock before validating the tag")


def test_engine_validates_the_tag_first(project: Path) -> None:
    # The queue/webhook path calls the engine directly, without the CLI's check.
    config = load_config(project, {})
    engine = Deployment(config, platform=NoDocker(), registry=NoDocker())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="invalid tag"):
        engine.deploy("1.0;rm", guard=NoGuard())
    untouched(project.parent)


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deploy 1.0", "rollback", "cleanup", "reset --force"])
def test_a_state_directory_that_cannot_be_written_is_said_not_a_traceback(
    project: Path, command: str
) -> None:
    """state.dir under a file: the OSError a read-only or foreign directory gives too, as root."""
    (project.parent / "afile").write_text("")
    project.write_text(CONFIG + '\n[state]\ndir = "afile/state"\n')
    result = watcher("--config", str(project), *command.split(), cwd=project.parent)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write the state directory {project.parent / 'afile' / 'state'}" in result.stderr
    assert "writable by the user running watcher" in result.stderr


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"REGISTRY_PASSWORD": "p"}, "REGISTRY_PASSWORD[_FILE] is set without REGISTRY_USERNAME[_FILE]"),
        ({"REGISTRY_PASSWORD_FILE": "secret"}, "REGISTRY_PASSWORD[_FILE] is set without REGISTRY_USERNAME"),
        ({"REGISTRY_USERNAME": "u"}, "REGISTRY_USERNAME[_FILE] is set without REGISTRY_PASSWORD[_FILE]"),
        ({"REGISTRY_USERNAME_FILE": "secret"}, "REGISTRY_USERNAME[_FILE] is set without REGISTRY_PASSWORD"),
    ],
)
def test_half_the_registry_credentials_is_a_config_error(
    project: Path, env: dict[str, str], said: str
) -> None:
    (project.parent / "secret").write_text("s3cret\n")
    env = {
        name: str(project.parent / value) if name.endswith("_FILE") else value for name, value in env.items()
    }
    result = watcher("--config", str(project), "check-tags", cwd=project.parent, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and said in result.stderr
    assert "s3cret" not in result.stderr


def test_the_registry_credentials_may_both_come_from_files(tmp_path: Path, project: Path) -> None:
    (tmp_path / "user").write_text("robot\n")
    (tmp_path / "password").write_text("s3cret\n")
    env = {
        "REGISTRY_USERNAME_FILE": str(tmp_path / "user"),
        "REGISTRY_PASSWORD_FILE": str(tmp_path / "password"),
    }
    registry = load_config(project, env).registry
    assert (registry.username, registry.password) == ("robot", "s3cret")


def test_a_run_directory_that_cannot_be_written_is_refused_before_a_deploy_starts(tmp_path: Path) -> None:
    from watcher.atomic import ensure_writable
    from watcher.errors import StateUnwritable

    (tmp_path / "afile").write_text("")
    with pytest.raises(
        StateUnwritable, match=r"cannot write Caddy's run dir .*afile/run \(Not a directory\)"
    ):
        ensure_writable(tmp_path / "afile" / "run", "Caddy's run dir")
    ensure_writable(tmp_path / "run", "Caddy's run dir")
    assert (tmp_path / "run").is_dir() and not list((tmp_path / "run").iterdir())


def test_a_docker_socket_without_permission_is_said_so(project: Path) -> None:
    """A socket of mode 000, opened by root without CAP_DAC_OVERRIDE (setpriv): what a user outside
    the `docker` group gets. Not "is dockerd running?", which sends them after the wrong cause."""
    sock = project.parent / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(sock))
        listening.listen(1)
        sock.chmod(0)
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "watcher"]
            + ["--config", str(project), "status"],
            cwd=project.parent,
            env={**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": f"unix://{sock}"},
            text=True,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert f"permission denied on the Docker socket {sock}" in result.stderr
    assert "usermod -aG docker" in result.stderr and "dockerd running" not in result.stderr


def test_no_docker_socket_asks_whether_dockerd_runs(project: Path) -> None:
    result = watcher("--config", str(project), "status", cwd=project.parent)
    assert result.returncode == 1
    assert "cannot reach the Docker engine at /nonexistent/docker.sock" in result.stderr
    assert "is dockerd running?" in result.stderr


def test_missing_config_names_what_was_tried(tmp_path: Path) -> None:
    result = watcher("status", cwd=tmp_path)
    assert result.returncode == 2
    assert "no configuration file found" in result.stderr
    assert "watcher.toml" in result.stderr and "config/watcher.toml" in result.stderr
    assert "--config" in result.stderr and "WATCHER_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_explicit_config_is_named(tmp_path: Path) -> None:
    result = watcher("--config", "nope.toml", "deploy", "1.0", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_missing_watcher_config_is_named(tmp_path: Path) -> None:
    result = watcher("deploy", "1.0", cwd=tmp_path, env={"WATCHER_CONFIG": str(tmp_path / "elsewhere.toml")})
    assert result.returncode == 2
    assert "elsewhere.toml" in result.stderr


def test_bad_config_exits_2_naming_the_key(project: Path) -> None:
    project.write_text(CONFIG.replace('image = "ghcr.io/acme/shop"', 'image = "ghcr.io/acme/shop:1.0"'))
    result = watcher("--config", str(project), "deploy", "1.0", cwd=project.parent)
    assert result.returncode == 2
    assert "app.image" in result.stderr and str(project) in result.stderr
    untouched(project.parent)


def test_bad_environment_value_exits_2(project: Path) -> None:
    result = watcher("deploy", "1.0", cwd=project.parent, env={"HEALTH_CHECK_TIMEOUT": "5x"})
    assert result.returncode == 2
    assert "HEALTH_CHECK_TIMEOUT" in result.stderr


# -- reset ----------------------------------------------------------------------------------


def test_reset_without_force_and_without_tty_exits_2(project: Path) -> None:
    result = watcher("--config", str(project), "reset", cwd=project.parent)
    assert result.returncode == 2, result.stderr
    assert "--force" in result.stderr
    untouched(project.parent)
