"""What the environment adds to the file: overrides of a few keys, named as in the deploy script
watcher replaces, and the secrets, which are never read from the file (it is often committed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcher.errors import ConfigError

# Environment variables that override a key. App keys apply to every app; host keys to the host.
APP_ENV: dict[str, tuple[str, str]] = {
    "HEALTH_CHECK_TIMEOUT": ("health", "timeout"),
    "HEALTH_CHECK_INTERVAL": ("health", "interval"),
    "DRAIN_TIMEOUT": ("drain", "timeout"),
    "VERIFY_TIMEOUT": ("verify", "timeout"),
    "VERIFY_WINDOW": ("verify", "window"),
    "VERIFY_URL": ("verify", "url"),
}
HOST_ENV: dict[str, tuple[str, str]] = {
    "CADDY_ADMIN": ("caddy", "admin"),
    "REDIS_URL": ("redis", "url"),
    "WATCHER_LOCK_TTL": ("redis", "lock_ttl"),
    "WEBHOOK_LISTEN": ("webhook", "listen"),
    "METRICS_LISTEN": ("metrics", "listen"),
    "POLL_INTERVAL": ("poll", "interval"),
}

# Secrets the triggers use: only from the environment or a file named by NAME_FILE
# (Docker/Kubernetes secrets).
SECRET_ENV: dict[tuple[str, str], str] = {
    ("webhook", "secret"): "WEBHOOK_SECRET",
    ("webhook", "registry_token"): "WEBHOOK_REGISTRY_TOKEN",
    ("webhook", "api_token"): "WATCHER_API_TOKEN",
    ("github", "token"): "GITHUB_TOKEN",
}


#: Every variable that holds a secret of watcher's (each also as NAME_FILE, and as NAME_PREVIOUS
#: while it is rotated): never passed to what watcher runs for an app (child_env.py). REDIS_URL
#: may carry Redis's password.
SECRETS = frozenset(
    {
        *SECRET_ENV.values(),
        "REDIS_PASSWORD",
        "REDIS_URL",
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "WATCHER_NOTIFY_URLS",
    }
)


def is_secret(name: str) -> bool:
    """`name` is one of watcher's secret variables, or its _FILE or _PREVIOUS form."""
    return name.removesuffix("_FILE").removesuffix("_PREVIOUS") in SECRETS


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from NAME or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from exc
        except ValueError as exc:  # a NUL or a lone surrogate in the name, undecodable content
            raise ConfigError(f"{name}_FILE: cannot read {file_name!r}: {exc}") from exc
    return None


#: The length below which a secret that guards an endpoint is refused at start-up.
MIN_SECRET_LENGTH = 32


def read_strong_secret(env: Mapping[str, str], name: str) -> str | None:
    """read_secret, refusing a value short enough to guess, with how to make a good one: for the
    secrets a request presents (the API and registry tokens, GitHub's HMAC key)."""
    value = read_secret(env, name)
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        where = name if env.get(name) else f"{name}_FILE: {env[f'{name}_FILE']}"
        raise ConfigError(
            f"{where}: {len(value)} characters, too few to withstand guessing: a secret that guards "
            f"an endpoint needs at least {MIN_SECRET_LENGTH}. Make one with "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'` or `openssl rand -hex 32`"
        )
    return value


def refuse_secrets_in_file(path: Path, raw: dict[str, Any]) -> None:
    """A secret written in the file is refused, not ignored: its owner thinks it is in use."""
    for (section, key), env_name in SECRET_ENV.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ConfigError(
                f"{path}: {section}.{key}: secrets are never read from the file: set "
                f"{env_name} or {env_name}_FILE"
            )


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> set[tuple[str | None, str]]:
    """Write the environment overrides into the raw file; returns which (app, key) they set, so
    an error in one names the variable rather than the file."""
    done: set[tuple[str | None, str]] = set()
    for env_name, (section, key) in HOST_ENV.items():
        if env.get(env_name):
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = env[env_name]
                done.add((None, f"{section}.{key}"))
    apps = raw.get("apps")
    for name, app in apps.items() if isinstance(apps, dict) else ():
        for env_name, (section, key) in APP_ENV.items():
            if env.get(env_name) and isinstance(app, dict):
                app.setdefault(section, {})
                if isinstance(app[section], dict):
                    app[section][key] = env[env_name]
                    done.add((name, f"{section}.{key}"))
    return done


def notify_urls(env: Mapping[str, str]) -> list[str]:
    """WATCHER_NOTIFY_URLS[_FILE]: URLs separated by spaces or lines (`#` starts a comment
    line in the file), sent every event of every app."""
    text = read_secret(env, "WATCHER_NOTIFY_URLS") or ""
    return [word for line in text.splitlines() if not line.lstrip().startswith("#") for word in line.split()]
