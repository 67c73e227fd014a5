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
from watcher.validation import validate_name, validate_tag

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
    "REDIS_URL": ("redis", "url"),
    "WATCHER_LOCK_TTL": ("redis", "lock_ttl"),
    "VERIFY_URL": ("verify", "url"),
    "WEBHOOK_LISTEN": ("webhook", "listen"),
    "POLL_INTERVAL": ("poll", "interval"),
}

# Secrets the triggers use: never read from the file (it is often committed), only from the
# environment or a file named by NAME_FILE (Docker/Kubernetes secrets).
SECRET_ENV: dict[tuple[str, str], str] = {
    ("webhook", "secret"): "WEBHOOK_SECRET",
    ("webhook", "registry_token"): "WEBHOOK_REGISTRY_TOKEN",
    ("webhook", "api_token"): "WATCHER_API_TOKEN",
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
    "redis": ("url", "lock_ttl"),
    "webhook": ("listen", "max_body", "status_auth", "threads"),
    "poll": ("enabled", "interval", "jitter", "page_size"),
    "policy": ("kind", "range", "prereleases", "include", "exclude", "tag"),
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
    """A stateless service that runs once per colour; Caddy dials `<name>-<colour>:<port>`.
    Without a port it runs per colour but is not proxied (a sidecar, a queue consumer)."""

    name: str
    port: int | None

    def upstream(self, color: str) -> str:
        return f"{self.name}-{color}:{self.port}"


@dataclass(frozen=True)
class WebhookSettings:
    """`[webhook]`: the HTTP receiver (`watcher serve` / `watcher run`). Secrets come from the
    environment only; None means "not configured", and the endpoint it guards refuses everything."""

    listen: str = "127.0.0.1:9000"
    max_body: int = 1024 * 1024
    status_auth: bool = True       # GET /status needs the API token
    threads: int = 8               # waitress worker threads
    secret: str | None = field(default=None, repr=False)          # WEBHOOK_SECRET[_FILE]: GitHub HMAC key
    registry_token: str | None = field(default=None, repr=False)  # WEBHOOK_REGISTRY_TOKEN[_FILE]: /hooks/registry
    api_token: str | None = field(default=None, repr=False)       # WATCHER_API_TOKEN[_FILE]: /pause /resume /status

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class PollSettings:
    """`[poll]`: the registry poller, one APScheduler interval job per app."""

    enabled: bool = True
    interval: float = 60.0
    jitter: float = 5.0
    page_size: int | None = None   # tags/list `n`; None: the registry's default page


@dataclass(frozen=True)
class PolicySettings:
    """`[policy]`: which tag the triggers deploy (watcher/triggers/policy.py)."""

    kind: str = "semver"                     # semver | regex | digest
    range: str | None = None                 # semver: e.g. ">=1.2,<2"
    prereleases: bool = False                # semver: consider 1.3.0-rc.1 and the like
    include: str | None = None               # regex: tags to consider; a capture group orders them
    exclude: tuple[str, ...] = ()            # semver and regex: tags never considered
    tag: str = "latest"                      # digest: the one tag followed


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
    redis_url: str | None = field(default=None, repr=False)   # may carry a password
    redis_password: str | None = field(default=None, repr=False)
    lock_ttl: float = 30.0
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    poll: PollSettings = field(default_factory=PollSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)

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
                    if (name, key) in SECRET_ENV:
                        self.fail(f"{name}.{key}", f"secrets are never read from the file: set "
                                  f"{SECRET_ENV[name, key]} or {SECRET_ENV[name, key]}_FILE")
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
            redis_url=self._redis_url(),
            redis_password=read_secret(self.env, "REDIS_PASSWORD"),
            lock_ttl=self._at_least("redis.lock_ttl", self.duration("redis", "lock_ttl", "30s"), 1.0),
            webhook=self._webhook(),
            poll=self._poll(),
            policy=self._policy(),
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

    def _at_least(self, key: str, value: float, minimum: float) -> float:
        if value < minimum:
            self.fail(key, f"must be at least {minimum:g}s")
        return value

    def _redis_url(self) -> str | None:
        """The queue's Redis; None keeps the host lock and leaves the queue commands off."""
        url = self.get("redis", "url", str, None)
        if not url:
            return None
        if not re.match(r"^(redis|rediss|unix)://[^\s]+$", url):
            shown = re.sub(r"//[^@/]*@", "//***@", url)  # never echo a password
            self.fail("redis.url", f"expected redis://HOST:PORT/DB, rediss://... or unix://PATH, got {shown!r}")
        return url

    def _webhook(self) -> WebhookSettings:
        listen = self.get("webhook", "listen", str, WebhookSettings.listen)
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", listen)
        if not match or not 0 < int(match.group(2)) < 65536:
            self.fail("webhook.listen", f"expected HOST:PORT, e.g. 127.0.0.1:9000 or 0.0.0.0:9000, got {listen!r}")
        threads = self.get("webhook", "threads", int, WebhookSettings.threads)
        if not 1 <= threads <= 64:
            self.fail("webhook.threads", f"must be between 1 and 64, got {threads}")
        return WebhookSettings(
            listen=listen,
            max_body=self._size("webhook.max_body", self.get("webhook", "max_body", (int, str), "1MiB")),
            status_auth=self.get("webhook", "status_auth", bool, True),
            threads=threads,
            secret=read_secret(self.env, "WEBHOOK_SECRET"),
            registry_token=read_secret(self.env, "WEBHOOK_REGISTRY_TOKEN"),
            api_token=read_secret(self.env, "WATCHER_API_TOKEN"),
        )

    def _size(self, key: str, value: int | str) -> int:
        units = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
        if isinstance(value, int):
            size = value
        elif match and match.group(2).lower() in units:
            size = int(match.group(1)) * units[match.group(2).lower()]
        else:
            self.fail(key, f"expected a size like 1048576, 512KiB or 1MiB, got {value!r}")
        if not 1024 <= size <= 64 * 1024**2:
            self.fail(key, f"must be between 1KiB and 64MiB, got {value!r}")
        return size

    def _poll(self) -> PollSettings:
        interval = self._at_least("poll.interval", self.duration("poll", "interval", "60s"), 1.0)
        jitter = self.duration("poll", "jitter", "5s")
        if jitter > interval:
            self.fail("poll.jitter", f"must not exceed poll.interval ({interval:g}s)")
        page_size = self.get("poll", "page_size", int, None)
        if page_size is not None and not 1 <= page_size <= 10000:
            self.fail("poll.page_size", f"must be between 1 and 10000, got {page_size}")
        return PollSettings(enabled=self.get("poll", "enabled", bool, True), interval=interval, jitter=jitter,
                            page_size=page_size)

    def _policy(self) -> PolicySettings:
        # Validated here, so a bad range or pattern stops watcher at start-up, not at the first poll.
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        kind = self.get("policy", "kind", str, "semver")
        if kind not in ("semver", "regex", "digest"):
            self.fail("policy.kind", f"expected semver, regex or digest, got {kind!r}")
        version_range = self.get("policy", "range", str, None)
        if version_range is not None:
            if kind != "semver":
                self.fail("policy.range", "only applies to kind = \"semver\"")
            try:
                SpecifierSet(version_range)
            except InvalidSpecifier:
                self.fail("policy.range", f"not a version range like \">=1.2,<2\" (comma-separated "
                          f"comparisons: >=, >, <=, <, ==, !=, ~=, ==1.*), got {version_range!r}")
        include = self.get("policy", "include", str, None)
        if kind == "regex" and include is None:
            self.fail("policy.include", "is required for kind = \"regex\", e.g. \"^main-(\\\\d+)$\"")
        if include is not None and kind != "regex":
            self.fail("policy.include", "only applies to kind = \"regex\"")
        exclude = self.get("policy", "exclude", list, [])
        for key, pattern in [("policy.include", include), *(("policy.exclude", p) for p in exclude)]:
            if pattern is None:
                continue
            if not isinstance(pattern, str):
                self.fail(key, f"expected a regular expression string, got {pattern!r}")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                self.fail(key, f"not a valid regular expression {pattern!r}: {exc}")
            if key == "policy.include" and compiled.groups > 1 and "order" not in compiled.groupindex:
                self.fail(key, "has several capture groups: name the one that orders tags (?P<order>...)")
        tag = self.get("policy", "tag", str, "latest")
        try:
            validate_tag(tag)
        except ValueError as exc:
            self.fail("policy.tag", str(exc))
        return PolicySettings(kind=kind, range=version_range, prereleases=self.get("policy", "prereleases", bool, False),
                              include=include, exclude=tuple(exclude), tag=tag)

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
                self.fail(f"services.{name}", "must be a table (with a port, if Caddy proxies to it)")
            port = spec.get("port")
            if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
                self.fail(f"services.{name}.port", f"expected a port number, got {port!r}")
            services.append(Service(name, port))
        if all(s.port is None for s in services):
            self.fail("services", "give at least one service the port Caddy proxies to, e.g. [services.web] port = 8080")
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
