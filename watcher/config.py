"""watcher's configuration: one TOML file (stdlib tomllib) plus environment overrides.

Every error names the file, the key and what is wrong, because a deploy tool that guesses
at a bad setting is worse than one that refuses to start.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from watcher.errors import ConfigError
from watcher.validation import validate_name

DEFAULT_LOCATIONS = ("watcher.toml", "config/watcher.toml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# Environment variables that override a key, named as in the deploy script watcher replaces.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HEALTH_CHECK_TIMEOUT": ("health", "timeout"),
    "HEALTH_CHECK_INTERVAL": ("health", "interval"),
    "DRAIN_TIMEOUT": ("drain", "timeout"),
    "VERIFY_TIMEOUT": ("verify", "timeout"),
    "VERIFY_WINDOW": ("verify", "window"),
    "CADDY_ADMIN": ("caddy", "admin"),
}


KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "app": ("name", "image", "project_dir", "compose_files", "shared_services", "version_env"),
    "services": (),
    "caddy": ("admin", "route_file"),
    "health": ("timeout", "interval"),
    "verify": ("url", "header", "timeout", "window"),
    "drain": ("timeout", "retain_old"),
    "hooks": ("pre_deploy", "pre_deploy_timeout"),
    "state": ("dir",),
}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `300`, `300s`, `5m`, `1.5s`, `250ms`; `where` names the key for errors."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like 300, 300s or 5m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{where}: expected a duration like 300, 300s or 5m, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0 or not math.isfinite(seconds):
        raise ConfigError(f"{where}: a duration must be a finite, non-negative number, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Service:
    """A stateless service that runs once per colour; Caddy dials `<name>-<colour>:<port>`."""

    name: str
    port: int

    def upstream(self, color: str) -> str:
        return f"{self.name}-{color}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Everything the engine needs to know about one app."""

    source: Path
    app: str
    image: str
    project_dir: Path
    compose_files: tuple[str, ...]
    services: tuple[Service, ...]
    shared_services: tuple[str, ...]
    version_env: str
    caddy_admin: str
    route_file: Path
    state_dir: Path
    health_timeout: float
    health_interval: float
    verify_url: str
    verify_header: str | None
    verify_timeout: float
    verify_window: float
    drain_timeout: float
    retain_old: bool
    pre_deploy: tuple[str, ...]
    pre_deploy_timeout: float
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)

    def project(self, color: str | None = None) -> str:
        """Compose project name: the shared one, or the one of a colour."""
        return self.app if color is None else f"{self.app}-{color}"

    def overlay(self, color: str) -> str:
        return f"compose.{color}.yml"

    @property
    def deployment_color_file(self) -> Path:
        """The old deploy script's state file, kept current for its users."""
        return self.project_dir / ".deployment-color"


def find_config(explicit: str | None, env: Mapping[str, str]) -> Path:
    """The config path: --config, then WATCHER_CONFIG, then the default locations."""
    if explicit:
        candidates = [explicit]
    elif env.get("WATCHER_CONFIG"):
        candidates = [env["WATCHER_CONFIG"]]
    else:
        candidates = list(DEFAULT_LOCATIONS)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file():
            return path.resolve()
    tried = ", ".join(candidates)
    raise ConfigError(f"no configuration file found (tried {tried}); pass --config or set WATCHER_CONFIG")


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
    return None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate the file at `path`, then apply environment overrides."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return _Reader(path, raw, env).config()


class _Reader:
    """Walks the parsed TOML, so every error message can say file, key and problem."""

    def __init__(self, path: Path, raw: dict[str, Any], env: Mapping[str, str]) -> None:
        self.path = path
        self.raw = raw
        self.env = env
        for name, value in raw.items():
            if name not in KNOWN_KEYS:
                self.fail(name, f"unknown section (known: {', '.join(KNOWN_KEYS)})")
            if name != "services" and isinstance(value, dict):
                for key in value:
                    if key not in KNOWN_KEYS[name]:
                        self.fail(f"{name}.{key}", f"unknown key (known: {', '.join(KNOWN_KEYS[name])})")

    def fail(self, key: str, problem: str) -> None:
        section, _, name = key.partition(".")
        env_name = next((n for n, k in ENV_OVERRIDES.items() if k == (section, name)), None)
        if env_name and self.env.get(env_name):
            raise ConfigError(f"environment {env_name}: {problem}")
        raise ConfigError(f"{self.path}: {key}: {problem}")

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(name, "must be a table")
        return value

    def get(self, section: str, key: str, kind: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        for env_name, (env_section, env_key) in ENV_OVERRIDES.items():
            if (env_section, env_key) == (section, key) and self.env.get(env_name):
                return self.env[env_name]
        table = self.section(section)
        if key not in table:
            if required:
                self.fail(f"{section}.{key}", "is required")
            return default
        value = table[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(f"{section}.{key}", f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def duration(self, section: str, key: str, default: str) -> float:
        value = self.get(section, key, (str, int, float), default)
        env_name = next((n for n, k in ENV_OVERRIDES.items() if k == (section, key)), None)
        where = f"{self.path}: {section}.{key}"
        if env_name and self.env.get(env_name):
            where = f"environment {env_name}"
        return parse_duration(value, where)

    def path_in(self, base: Path, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (base / path).resolve()

    def config(self) -> Config:
        config_dir = self.path.parent
        app = self.get("app", "name", str, required=True)
        self._name("app.name", app)
        image = self.get("app", "image", str, required=True)
        if not image or image != image.strip() or " " in image:
            self.fail("app.image", f"not an image repository: {image!r}")
        if ":" in image.rsplit("/", 1)[-1] or "@" in image:
            self.fail("app.image", "give the repository without a tag or digest; the version selects the tag")
        project_dir = self.path_in(config_dir, self.get("app", "project_dir", str, "."))
        if not project_dir.is_dir():
            self.fail("app.project_dir", f"{project_dir} is not a directory")
        compose_files = tuple(self.get("app", "compose_files", list, ["compose.yml"]))
        for name in compose_files:
            if not isinstance(name, str) or not (project_dir / name).is_file():
                self.fail("app.compose_files", f"{name!r} not found in {project_dir}")
        for color in ("blue", "green"):
            if not (project_dir / f"compose.{color}.yml").is_file():
                self.fail("app.project_dir", f"compose.{color}.yml not found in {project_dir}")
        shared = tuple(self.get("app", "shared_services", list, []))
        for name in shared:
            self._name("app.shared_services", name)
        version_env = self.get("app", "version_env", str, "APP_VERSION")
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", version_env):
            self.fail("app.version_env", f"not an environment variable name: {version_env!r}")

        services = self._services()
        state_dir = self.path_in(project_dir, self.get("state", "dir", str, ".watcher"))
        admin = self.get("caddy", "admin", str, "unix://.watcher/run/caddy-admin.sock")
        admin = self._admin(project_dir, admin)
        route_file = self.path_in(project_dir, self.get("caddy", "route_file", str, ".watcher/run/live"))

        verify_url = self.get("verify", "url", str, required=True)
        if not re.match(r"^https?://", verify_url):
            self.fail("verify.url", f"must be an http(s) URL, got {verify_url!r}")
        hook = self.get("hooks", "pre_deploy", list, [])
        if not all(isinstance(arg, str) for arg in hook):
            self.fail("hooks.pre_deploy", "must be a list of strings (an argv; no shell)")
        return Config(
            source=self.path,
            app=app,
            image=image,
            project_dir=project_dir,
            compose_files=compose_files,
            services=services,
            shared_services=shared,
            version_env=version_env,
            caddy_admin=admin,
            route_file=route_file,
            state_dir=state_dir,
            health_timeout=self.duration("health", "timeout", "300s"),
            health_interval=self._positive("health.interval", self.duration("health", "interval", "3s")),
            verify_url=verify_url,
            verify_header=self.get("verify", "header", str, None),
            verify_timeout=self.duration("verify", "timeout", "30s"),
            verify_window=self.duration("verify", "window", "10s"),
            drain_timeout=self.duration("drain", "timeout", "30s"),
            retain_old=self.get("drain", "retain_old", bool, True),
            pre_deploy=tuple(hook),
            pre_deploy_timeout=self.duration("hooks", "pre_deploy_timeout", "10m"),
            registry_username=self.env.get("REGISTRY_USERNAME") or None,
            registry_password=read_secret(self.env, "REGISTRY_PASSWORD"),
        )

    def _name(self, key: str, value: Any) -> None:
        try:
            validate_name(value if isinstance(value, str) else repr(value))
        except ValueError as exc:
            self.fail(key, str(exc))

    def _positive(self, key: str, value: float) -> float:
        if value <= 0:
            self.fail(key, "must be greater than zero")
        return value

    def _services(self) -> tuple[Service, ...]:
        table = self.section("services")
        for name, spec in table.items():
            for key in spec if isinstance(spec, dict) else ():
                if key != "port":
                    self.fail(f"services.{name}.{key}", "unknown key (known: port)")
        if not table:
            self.fail("services", "list at least one stateless service, e.g. [services.web] port = 8080")
        services = []
        for name, spec in table.items():
            self._name(f"services.{name}", name)
            if not isinstance(spec, dict):
                self.fail(f"services.{name}", "must be a table with a port")
            port = spec.get("port")
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                self.fail(f"services.{name}.port", f"expected a port number, got {port!r}")
            services.append(Service(name, port))
        return tuple(services)

    def _admin(self, project_dir: Path, admin: str) -> str:
        if admin.startswith("unix://"):
            return "unix://" + str(self.path_in(project_dir, admin[len("unix://"):]))
        match = re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$", admin)
        if not match:
            self.fail("caddy.admin", "must be unix://PATH or http://127.0.0.1:PORT: "
                      "Caddy's admin API is never reached over a public address")
        return admin.rstrip("/")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "a number", float: "a number", list: "a list", bool: "true or false",
             dict: "a table"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))
