"""The environment of what watcher runs for an app (`docker compose`, the pre-deploy and smoke
hooks): never watcher's own, which holds its secrets (a hook running `env` would print them).

A child gets, from watcher's environment: the basics of a process, the Docker CLI's connection
settings and Compose's own (`ALLOWED`), the variables the app's compose files interpolate (a
stack that reads `${HTTP_PORT}` from the shell keeps working), and those the app's `pass_env`
names; never one of watcher's secrets (config/env.py), whoever asks for it. The compose
project's `.env` and `env_file`s are read by compose itself, unaffected. (The worker processes
watcher starts, queue/pool.py, are watcher itself and keep its environment.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from watcher.config.env import is_secret
from watcher.errors import ConfigError

ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "XDG_RUNTIME_DIR",  # a rootless Docker's socket
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",  # where `docker login` keeps registry credentials for `compose pull`
        "DOCKER_CERT_PATH",
        "DOCKER_TLS",
        "DOCKER_TLS_VERIFY",
        "DOCKER_API_VERSION",
        "DOCKER_DEFAULT_PLATFORM",
    }
)
ALLOWED_PREFIXES = ("LC_", "COMPOSE_")
#: Compose's interpolation: `$$` is a literal `$`; `$NAME` and `${NAME...}` read the environment.
_INTERPOLATED = re.compile(r"\$\$|\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def child_env(
    files: Iterable[Path], passed: Iterable[str], environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The variables of `environ` a child may see: allowed, interpolated by `files`, or `passed`."""
    wanted = interpolated(files) | set(passed)
    return {
        name: value
        for name, value in environ.items()
        if not is_secret(name) and (name in ALLOWED or name.startswith(ALLOWED_PREFIXES) or name in wanted)
    }


def interpolated(files: Iterable[Path]) -> set[str]:
    """The variable names the compose files read from the environment (a missing file: none)."""
    names: set[str] = set()
    for path in files:
        try:
            text = path.read_text()
        except OSError:  # removed since the config was loaded: compose says so itself
            continue
        names.update(match.group(1) for match in _INTERPOLATED.finditer(text) if match.group(1))
    return names


def pass_env(names: list[str], fail: Callable[[str, str], ConfigError]) -> tuple[str, ...]:
    """`pass_env`, refusing any of watcher's secrets: asking for one is a mistake, not a wish."""
    for name in names:
        if is_secret(name):
            raise fail(
                "pass_env",
                f"{name} is watcher's own secret and is never passed to hooks or docker compose; "
                "give the app a variable of its own",
            )
    return tuple(names)
