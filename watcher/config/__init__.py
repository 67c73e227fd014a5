"""watcher's configuration: one TOML file for the host and every app on it, plus environment
overrides. `load_host` reads it; `HostConfig.app(name)` is one app's `AppConfig`, all the engine sees.

schema.py is the file's shape and types (pydantic models); settings.py what watcher runs on;
loader.py turns one into the other, with sections.py for each app's sections, env.py for what the
environment adds (overrides, secrets), child_env.py for what an app's hooks and compose see of it,
and wording.py for errors that name file, app, key and problem.
"""

from watcher.config.env import APP_ENV, HOST_ENV, SECRET_ENV, read_secret
from watcher.config.loader import DEFAULT_LOCATIONS, find_config, load_config, load_host
from watcher.config.settings import (
    AppCaddy,
    AppConfig,
    AppState,
    BakeSettings,
    GithubSettings,
    HostCaddy,
    HostConfig,
    NotifyRoute,
    NotifySettings,
    PolicySettings,
    PollSettings,
    RedisSettings,
    RegistryCredentials,
    Retention,
    Service,
    WebhookSettings,
    listen_host,
    listen_port,
)
from watcher.config.smoke import SmokeCheck, SmokeSettings
from watcher.config.values import parse_duration

__all__ = [
    "APP_ENV",
    "DEFAULT_LOCATIONS",
    "HOST_ENV",
    "SECRET_ENV",
    "AppCaddy",
    "AppConfig",
    "AppState",
    "BakeSettings",
    "GithubSettings",
    "HostCaddy",
    "HostConfig",
    "NotifyRoute",
    "NotifySettings",
    "PolicySettings",
    "PollSettings",
    "RedisSettings",
    "RegistryCredentials",
    "Retention",
    "Service",
    "SmokeCheck",
    "SmokeSettings",
    "WebhookSettings",
    "find_config",
    "listen_host",
    "listen_port",
    "load_config",
    "load_host",
    "parse_duration",
    "read_secret",
]
