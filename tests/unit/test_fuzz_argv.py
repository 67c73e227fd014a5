"""No string that fails validation reaches an argv: fuzzing every place a tag or a name becomes
part of a `docker compose` command line, a registry URL or a queued job.

- The engine (`deploy`, `rollback --to`) refuses an invalid version before Docker, the registry
  or compose is touched; the queue refuses it before Redis is.
- The registry client refuses an invalid tag before any request; a valid one is one URL segment.
- Names (app, project, services) come from the config: whatever the file says, each argv element
  `ComposeColor` and `ComposePlatform` build is compose's own vocabulary, an absolute path, or a name
  that passes `validate_name`, so none can be read as an option.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_fuzz_config import to_toml
from tests.unit.test_fuzz_values import HOSTILE, NAME_TAIL, tag_like
from tests.unit.test_github_payloads import DIGEST
from watcher.backends.registry import ImageRef, RegistryClient, RegistryError
from watcher.config import AppConfig, load_host
from watcher.engine.deployment import Deployment
from watcher.errors import ConfigError, UsageError
from watcher.platforms.color import Color
from watcher.platforms.compose import ComposeColor, ComposePlatform
from watcher.queue.queue import DeployQueue
from watcher.validation import NAME_PATTERN, validate_name, validate_tag

# What ComposeColor and ComposePlatform put on a compose command line besides names and paths.
COMPOSE_WORDS = {
    "docker",
    "compose",
    "-p",
    "--project-directory",
    "-f",
    "--profile",
    "*",
    "up",
    "-d",
    "--no-deps",
    "--pull",
    "never",
    "start",
    "stop",
    "down",
    "--remove-orphans",
    "pull",
    "--quiet",
    "--no-recreate",
    "config",
    "--format",
    "json",
}


def is_valid_tag(text: str) -> bool:
    try:
        validate_tag(text)
    except ValueError:
        return False
    return True


class Reached(Exception):
    """Raised by the stand-ins below: validation let the value through to them."""


class Untouchable:
    """Docker, the registry or a guard: anything used after validation raises Reached."""

    def __getattr__(self, name: str) -> Any:
        raise Reached(name)


@contextmanager
def recorded_argvs() -> Iterator[list[list[str]]]:
    """Every argv compose would have run (successfully, with empty output)."""
    argvs: list[list[str]] = []

    def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argvs.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "{}", "")

    with mock.patch("watcher.backends.compose.subprocess.run", run):
        yield argvs


# -- versions: engine, queue, registry -------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory with its (empty) compose files, for every example's config."""
    directory = tmp_path_factory.mktemp("fuzz-argv")
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (directory / name).write_text("")
    return directory


@pytest.fixture(scope="module")
def config(project: Path) -> AppConfig:
    path = project / "shop.toml"
    path.write_text(
        to_toml(
            {
                "apps": {
                    "shop": {
                        "image": "127.0.0.1:5000/acme/shop",
                        "services": {"web": {"port": 80}},
                        "verify": {"url": "http://127.0.0.1/version"},
                    }
                }
            }
        )
    )
    return load_host(path, {}).app("shop")


@pytest.fixture(scope="module")
def engine(config: AppConfig) -> Deployment:
    """One engine for every example (building one makes an HTTP client for Caddy's admin API)."""
    return Deployment(config, platform=Untouchable(), registry=Untouchable())  # type: ignore[arg-type]


@given(tag_like(), st.booleans())
def test_the_engine_refuses_an_invalid_version_before_anything_runs(
    engine: Deployment, version: str, rollback: bool
) -> None:
    with recorded_argvs() as argvs:
        try:
            if rollback:
                engine.rollback(guard=Untouchable(), to=version)  # type: ignore[arg-type]
            else:
                engine.deploy(version, guard=Untouchable())  # type: ignore[arg-type]
        except UsageError:
            assert not is_valid_tag(version)
        except Reached:
            assert is_valid_tag(version)
    assert argvs == []


@given(tag_like())
def test_the_queue_refuses_an_invalid_version_before_redis(version: str) -> None:
    client = mock.Mock()
    client.register_script.return_value.side_effect = Reached("the queue script")
    try:
        DeployQueue(client, "shop").enqueue(version, source="cli", requested_by="fuzz")
    except UsageError:
        assert not is_valid_tag(version) and client.mock_calls == []
    except Reached:
        assert is_valid_tag(version)


@given(tag_like())
def test_the_registry_client_puts_only_a_valid_tag_in_a_url(version: str) -> None:
    requested: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requested.append(request)
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    ref = ImageRef.parse("127.0.0.1:5000/acme/shop")
    with RegistryClient(transport=httpx.MockTransport(answer), max_retries=0) as client:
        try:
            assert client.manifest_digest(ref, version) == DIGEST
        except RegistryError:
            assert not is_valid_tag(version) and requested == []
            return
    assert is_valid_tag(version)
    assert [request.url.path for request in requested] == [f"/v2/acme/shop/manifests/{version}"]


# -- names: the compose command lines --------------------------------------------------------------

VALID_NAMES = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) <= 20)


def name_like() -> st.SearchStrategy[str]:
    """Valid names and near misses: an option (`-rm`), a hostile or upper-case character."""
    return st.one_of(
        VALID_NAMES,
        VALID_NAMES.map(lambda name: "-" + name),
        st.text(st.sampled_from(NAME_TAIL + "A." + HOSTILE), min_size=1, max_size=12),
    )


@st.composite
def named_apps(draw: st.DrawFn) -> dict[str, Any]:
    """One app whose name, project, services and shared services are drawn: in half the examples
    all valid (so that commands get built), in the others any (so that the loader refuses)."""
    names = VALID_NAMES if draw(st.booleans()) else name_like()
    services = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    app: dict[str, Any] = {
        "image": "127.0.0.1:5000/acme/shop",
        "verify": {"url": "http://127.0.0.1/version"},
        "services": {
            name: {"port": 8000 + i, "path": f"/s{i}"} if i else {"port": 8000}
            for i, name in enumerate(services)
        },
        "shared_services": draw(
            st.lists(names.filter(lambda name: name not in services), max_size=2, unique=True)
        ),
    }
    if draw(st.booleans()):
        app["project"] = draw(names)
    return {"apps": {draw(names): app}}


def assert_safe(argv: list[str], project_dir: Path) -> None:
    """Compose's words, absolute paths (after -f and --project-directory), or valid names."""
    assert argv[:2] == ["docker", "compose"]
    for before, word in zip(argv, argv[1:]):
        if before in ("-f", "--project-directory"):
            assert Path(word).is_absolute() and Path(word).is_relative_to(project_dir), word
        elif before == "-p" or word not in COMPOSE_WORDS:
            assert validate_name(word) == word and not word.startswith("-")


@given(named_apps())
def test_no_name_that_fails_validation_reaches_a_compose_argv(
    project: Path, document: dict[str, Any]
) -> None:
    path = project / "names.toml"
    path.write_text(to_toml(document))
    try:
        config = next(iter(load_host(path, {}).apps.values()))
    except ConfigError:
        return
    color = ComposeColor(config, Untouchable(), Color.GREEN)  # type: ignore[arg-type]
    shared = ComposePlatform(config, Untouchable())  # type: ignore[arg-type]
    with recorded_argvs() as argvs:
        color.start("1.2.3")
        color.resume()
        color.stop()
        color.remove()
        shared.pull("1.2.3")
        shared.ensure_shared("1.2.3")
    # each colour command (and the pull) after the `config` that watcher's overlay is written from
    assert len(argvs) == 2 * 5 + bool(config.shared_services)
    for argv in argvs:
        assert_safe(argv, config.project_dir)
