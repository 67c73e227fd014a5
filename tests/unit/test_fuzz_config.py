"""Fuzzing the config loader: random TOML documents (a real file, mutated key by key, written by a
tiny TOML writer) and random bytes, with random environment overrides. `load_host` either returns
a configuration whose names, durations and sizes all pass watcher's own checks, or raises
ConfigError naming the file (or the environment variable) to fix: never another exception, which
the CLI would show as a traceback."""

from __future__ import annotations

import copy
import datetime
import functools
import math
import operator
import string
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.unit.test_fuzz_values import DURATION_TEXT, HOSTILE, HUGE_INTS, SIZE_TEXT, tag_like
from watcher.config import APP_ENV, HOST_ENV, SECRET_ENV, HostConfig, load_host
from watcher.config.values import MAX_BODY, MIN_BODY
from watcher.errors import ConfigError
from watcher.validation import validate_name, validate_tag

# A real two-app file, every section present, so that mutations reach every key's check.
BASE: dict[str, Any] = {
    "caddy": {"run_dir": ".watcher/run", "mount": "/run/watcher", "site": ":80"},
    "redis": {"url": "redis://127.0.0.1:6379/0", "lock_ttl": "30s", "prefix": ""},
    "worker": {"concurrency": 1},
    "webhook": {"listen": "127.0.0.1:9000", "max_body": "1MiB", "status_auth": True, "threads": 8},
    "poll": {"enabled": True, "interval": "60s", "jitter": "5s", "page_size": 100},
    "apps": {
        "shop": {
            "image": "ghcr.io/acme/shop",
            "project_dir": ".",
            "compose_files": ["compose.yml"],
            "shared_services": ["caddy"],
            "version_env": "APP_VERSION",
            "services": {"web": {"port": 8080}, "api": {"port": 8081, "path": "/api"}, "worker": {}},
            "caddy": {"site": "shop.example.com", "path": "/shop"},
            "health": {"timeout": "300s", "interval": "3s"},
            "verify": {"url": "http://127.0.0.1/version", "timeout": "30s", "window": "10s"},
            "drain": {"timeout": "30s", "retain_old": True},
            "hooks": {"pre_deploy": ["./migrate"], "pre_deploy_timeout": "10m"},
            "policy": {"kind": "semver", "range": ">=1.2,<2", "prereleases": False, "exclude": ["sha-.*"]},
            "poll": {"enabled": True, "interval": "2m", "jitter": "1s"},
        },
        "blog": {
            "image": "ghcr.io/acme/blog",
            "project": "blog",
            "services": {"web": {"port": 80}},
            "verify": {"url": "http://127.0.0.1/blog/version"},
            "caddy": {"path": "/blog"},
            "policy": {"kind": "regex", "include": "main-(?P<order>\\d+)"},
        },
    },
}
# The single-app layout, still read.
LEGACY: dict[str, Any] = {
    "app": {"name": "shop", "image": "ghcr.io/acme/shop"},
    "services": {"web": {"port": 8080}},
    "verify": {"url": "http://127.0.0.1:8080/version"},
    "policy": {"kind": "digest", "tag": "main"},
}
KEYS = sorted(
    {
        key
        for section in (*BASE.values(), *BASE["apps"]["shop"].values())
        if isinstance(section, dict)
        for key in section
    }
    | {"app", "apps", "name", "port", "path", "dir", "tag", "header"}
)
ENV_NAMES = sorted(
    {*APP_ENV, *HOST_ENV, *SECRET_ENV.values(), *(f"{name}_FILE" for name in SECRET_ENV.values())}
)


# -- a tiny TOML writer (tomli-w is not a dependency) ----------------------------------------------


def _string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, nothing else."""
    escaped = "".join(
        f"\\u{ord(char):04x}" if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F else char
        for char in text
    )
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_string(key)} = {_value(item)}" for key, item in value.items()) + "}"


def to_toml(document: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """Scalars and arrays of a table first, then a `[header]` per sub-table."""
    lines = [f"[{'.'.join(map(_string, path))}]"] if path else []
    lines += [
        f"{_string(key)} = {_value(value)}" for key, value in document.items() if not isinstance(value, dict)
    ]
    lines += [to_toml(value, (*path, key)) for key, value in document.items() if isinstance(value, dict)]
    return "\n".join(lines) + "\n"


# -- strategies --------------------------------------------------------------------------------------


def scalars() -> st.SearchStrategy[Any]:
    """What a config value might be: the right type with a bad value, or the wrong type."""
    return st.one_of(
        DURATION_TEXT,
        SIZE_TEXT,
        tag_like(),
        st.text(max_size=20),
        st.text(st.sampled_from(string.ascii_lowercase + HOSTILE), max_size=12),
        st.sampled_from(
            [
                "",
                ".",
                "..",
                "/",
                "/run/x",
                "unix:///x.sock",
                "http://127.0.0.1:2019",
                "http://x",
                "redis://h:1/0",
                "(",
                "a{4294967296}",
                "x" * 300,
                ">=1,<",
                "==1.*",
                "main-(\\d+)-(\\d+)",
            ]
        ),
        HUGE_INTS,
        st.integers(-10, 70000),
        st.floats(allow_nan=False),
        st.booleans(),
        st.datetimes(),
        st.dates(),
        st.times(),
    )


def toml_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )


def key_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key of a document and every item of its lists, as the path that leads to it."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    paths = []
    for key, item in items:
        paths.append((*prefix, key))
        paths += key_paths(item, (*prefix, key))
    return paths


@st.composite
def mutated(
    draw: st.DrawFn, document: dict[str, Any], values: st.SearchStrategy[Any], keys: st.SearchStrategy[str]
) -> dict[str, Any]:
    """`document` with a few keys replaced by `values`, dropped, renamed or added, or a hostile
    character put into a string: mostly right, a little wrong, so that every check down the tree
    is reached (a few draws per example, which keeps generation fast and shrinking to the one key
    that matters)."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 3))):
        paths = key_paths(document)
        if not paths:
            break
        *parents, key = draw(st.sampled_from(paths))
        table = functools.reduce(operator.getitem, parents, document)
        operation = draw(st.sampled_from(["replace", "drop", "rename", "add", "tweak"]))
        if operation == "tweak" and isinstance(table[key], str):  # one hostile character put in
            at = draw(st.integers(0, len(table[key])))
            table[key] = table[key][:at] + draw(st.sampled_from(HOSTILE)) + table[key][at:]
        elif operation == "drop":
            del table[key]
        elif operation == "rename" and isinstance(table, dict):
            table[draw(keys)] = table.pop(key)
        elif operation == "add" and isinstance(table[key], dict):
            table[key][draw(keys)] = draw(values)
        else:
            table[key] = draw(values)
    return document


def documents() -> st.SearchStrategy[dict[str, Any]]:
    keys = st.one_of(
        st.sampled_from(KEYS), st.text(st.sampled_from(string.ascii_lowercase + HOSTILE), max_size=8)
    )
    return st.sampled_from([BASE, LEGACY]).flatmap(lambda base: mutated(base, toml_values(), keys))


def environments() -> st.SearchStrategy[dict[str, str]]:
    """Overrides and secret files; no NUL, which no process environment can hold."""
    values = st.one_of(
        DURATION_TEXT,
        st.text(st.characters(exclude_characters="\x00"), max_size=12),
        st.sampled_from(["/no/such/file", "60s", "1"]),
    )
    return st.dictionaries(st.sampled_from(ENV_NAMES), values, max_size=3)


def with_key(document: dict[str, Any], *path: str, value: Any) -> dict[str, Any]:
    """`document` with the key at `path` set to `value`, for the failing examples kept below."""
    changed = copy.deepcopy(document)
    functools.reduce(operator.getitem, path[:-1], changed)[path[-1]] = value
    return changed


# -- properties --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project directory for every example: each writes its own watcher.toml over the last."""
    project = tmp_path_factory.mktemp("fuzz-config")
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (project / name).write_text("")
    return project / "watcher.toml"


def loaded_or_refused(path: Path, env: dict[str, str]) -> HostConfig | None:
    """The loaded config, or None after checking the refusal says where to look."""
    try:
        return load_host(path, env)
    except ConfigError as exc:
        message = str(exc)
        assert (
            message.startswith(f"{path}: ")
            or message.startswith("environment ")
            or any(message.startswith((f"{name}: ", f"{name}_FILE: ")) for name in SECRET_ENV.values())
        ), message
        return None


def assert_checked(host: HostConfig) -> None:
    """What the engine relies on without checking again: names safe for a compose argv, durations
    finite and non-negative, the body limit in range, the followed tag valid."""
    assert MIN_BODY <= host.webhook.max_body <= MAX_BODY
    for config in host.apps.values():
        for name in (
            config.name,
            config.project("blue"),
            *config.shared_services,
            *(s.name for s in config.services),
        ):
            validate_name(name)
        validate_tag(config.policy.tag)
        durations = (
            config.health.timeout,
            config.health.interval,
            config.verify.timeout,
            config.verify.window,
            config.drain.timeout,
            config.hooks.pre_deploy_timeout,
            host.redis.lock_ttl,
            config.poll.interval,
            config.poll.jitter,
        )
        assert all(math.isfinite(seconds) and seconds >= 0 for seconds in durations), durations
        assert config.health.interval > 0 and config.poll.interval >= 1


@given(documents(), environments())
@example(with_key(BASE, "apps", "shop", "project_dir", value="a\x00b"), {})  # pathlib: ValueError
@example(with_key(BASE, "apps", "shop", "health", "timeout", value=2**1024 - 2**970), {})  # OverflowError
@example(with_key(BASE, "apps", "blog", "policy", "include", value="a{4294967296}"), {})  # OverflowError
@example(
    with_key(BASE, "apps", "blog", "policy", "include", value="(" * 1000 + ")" * 1000), {}
)  # RecursionError
@example({"app": {"name": []}}, {})  # TypeError
def test_a_config_loads_checked_or_is_refused_naming_the_file(
    config_path: Path, document: dict[str, Any], env: dict[str, str]
) -> None:
    text = to_toml(document)
    assert tomllib.loads(text) == document  # the writer wrote what the strategy built
    config_path.write_text(text)
    host = loaded_or_refused(config_path, env)
    if host is not None:
        assert_checked(host)


@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.integers(1, 6000).map(lambda digits: "n = " + "1" * digits),
        st.builds(lambda doc, junk: to_toml(doc) + junk, documents(), st.text(max_size=20)),
    )
)
@example(b"\x80")  # UnicodeDecodeError
@example("n = " + "1" * 4301)  # tomllib: ValueError, past int's 4300-digit limit
def test_any_file_content_loads_or_is_refused_naming_the_file(
    config_path: Path, content: bytes | str
) -> None:
    """Not TOML, not UTF-8, or TOML past what Python reads (an integer of thousands of digits)."""
    config_path.write_bytes(content if isinstance(content, bytes) else content.encode())
    host = loaded_or_refused(config_path, {})
    if host is not None:
        assert_checked(host)
