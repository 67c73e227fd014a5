"""watcher's configuration: one TOML file for the host and every app on it, plus environment
overrides. `load_host` reads it; `HostConfig.app(name)` is one app's `AppConfig`, all the engine sees.

The file's shape and types are pydantic models (schema.py); what this module adds is what a
schema cannot say: paths resolved against the right directory, files that must exist, settings
that only make sense together, secrets from the environment, and what two apps may not share
(a compose project, a route file, a state directory, a Caddy route). Every error names the file,
the app, the key and what is wrong, because a deploy tool that guesses at a bad setting is worse
than one that refuses to start.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watcher.backends.access_log import FILE_NAME as ACCESS_LOG
from watcher.config.promote import PromoteSettings
from watcher.config.schema import (
    AppModel,
    AppNotifyModel,
    DrainModel,
    FileModel,
    HealthModel,
    HooksModel,
    PolicyModel,
    VerifyModel,
    legacy_to_apps,
)
from watcher.config.smoke import SmokeCheck, SmokeSettings, smoke_settings
from watcher.config.values import parse_duration
from watcher.errors import ConfigError, UsageError
from watcher.freeze import FreezeWindow, window

__all__ = [
    "AppConfig",
    "HostConfig",
    "PolicySettings",
    "PollSettings",
    "Service",
    "SmokeCheck",
    "SmokeSettings",
    "WebhookSettings",
    "find_config",
    "load_config",
    "load_host",
    "parse_duration",
    "read_secret",
    "DEFAULT_LOCATIONS",
]

DEFAULT_LOCATIONS = ("watcher.toml", "config/watcher.toml")

# Environment variables that override a key, named as in the deploy script watcher replaces.
# App keys apply to every app; host keys to the host.
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

# Secrets the triggers use: never read from the file (it is often committed), only from the
# environment or a file named by NAME_FILE (Docker/Kubernetes secrets).
SECRET_ENV: dict[tuple[str, str], str] = {
    ("webhook", "secret"): "WEBHOOK_SECRET",
    ("webhook", "registry_token"): "WEBHOOK_REGISTRY_TOKEN",
    ("webhook", "api_token"): "WATCHER_API_TOKEN",
    ("github", "token"): "GITHUB_TOKEN",
}


@dataclass(frozen=True)
class Service:
    """A stateless service that runs once per colour; Caddy dials `<app>-<name>-<colour>:<port>`.
    Without a port it runs per colour but is not proxied (a sidecar, a queue consumer). A second
    proxied service is reached under its `path` prefix of the app's route."""

    name: str
    port: int | None
    path: str | None = None

    def alias(self, app: str, color: str) -> str:
        """The network alias of this service's colour: unique per app behind one Caddy."""
        return f"{app}-{self.name}-{color}"

    def upstream(self, app: str, color: str) -> str:
        return f"{self.alias(app, color)}:{self.port}"


@dataclass(frozen=True)
class WebhookSettings:
    """`[webhook]`: the HTTP receiver (`watcher serve` / `watcher run`). Secrets come from the
    environment only; None means "not configured", and the endpoint it guards refuses everything."""

    listen: str = "127.0.0.1:9000"
    max_body: int = 1024 * 1024
    status_auth: bool = True  # GET /status and GET /metrics need the API token
    threads: int = 8  # waitress worker threads
    secret: str | None = field(default=None, repr=False)  # WEBHOOK_SECRET[_FILE]: GitHub HMAC key
    registry_token: str | None = field(
        default=None, repr=False
    )  # WEBHOOK_REGISTRY_TOKEN[_FILE]: /hooks/registry
    api_token: str | None = field(
        default=None, repr=False
    )  # WATCHER_API_TOKEN[_FILE]: /pause /resume /status
    metrics_listen: str | None = None  # [metrics] listen: GET /metrics there, not on `listen`

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)


def listen_host(listen: str) -> str:
    return listen.rsplit(":", 1)[0].strip("[]")


def listen_port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class PollSettings:
    """`[poll]` with the app's own `[apps.<name>.poll]` on top: one APScheduler job per app."""

    enabled: bool = True
    interval: float = 60.0
    jitter: float = 5.0
    page_size: int | None = None  # tags/list `n`; None: the registry's default page


@dataclass(frozen=True)
class RedisSettings:
    """`[redis]`: the queue, locks, pauses and history (None url: the queue is off). The URL
    may carry a password; REDIS_PASSWORD[_FILE] is the other way to give one."""

    url: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    prefix: str = ""  # keys are [<prefix>:]watcher:<app>:...
    lock_ttl: float = 30.0


@dataclass(frozen=True)
class Retention:
    """`[history]`: how many finished jobs each app keeps, and for how long (the audit trail)."""

    keep: int = 1000
    max_age: float = 90 * 86400.0


@dataclass(frozen=True)
class PolicySettings:
    """`[policy]`: which tag the triggers deploy (watcher/policy.py)."""

    kind: str = "semver"  # semver | regex | digest
    range: str | None = None  # semver: e.g. ">=1.2,<2"
    prereleases: bool = False  # semver: consider 1.3.0-rc.1 and the like
    include: str | None = None  # regex: tags to consider; a capture group orders them
    exclude: tuple[str, ...] = ()  # semver and regex: tags never considered
    tag: str = "latest"  # digest: the one tag followed


@dataclass(frozen=True)
class NotifyRoute:
    """One apprise URL and the events it is sent (None: every event). The URL holds the
    service's token: it is never shown; `channel` (its scheme) stands for it in logs and metrics."""

    url: str = field(repr=False)
    events: frozenset[str] | None = None

    @property
    def channel(self) -> str:
        return self.url.split("://", 1)[0].lower()


@dataclass(frozen=True)
class NotifySettings:
    """`[notify]` with `[apps.<name>.notify]`: the app's routes are the host's plus its own."""

    routes: tuple[NotifyRoute, ...] = ()
    timeout: float = 10.0  # one send; past it the send counts as failed
    queue: int = 100  # events waiting to be sent; more are dropped (and counted)


@dataclass(frozen=True)
class BakeSettings:
    """`[apps.<name>.bake]`. duration None: the verification window; max_error_rate None: errors
    are not judged; max_latency_ratio None: latency is not judged."""

    duration: float | None = None
    max_error_rate: float | None = 0.01
    max_latency_ratio: float | None = 3.0
    min_requests: int = 50
    baseline: float = 300.0  # how far before the switch the old colour's answers are read

    @property
    def judges(self) -> bool:
        return self.max_error_rate is not None or self.max_latency_ratio is not None


@dataclass(frozen=True)
class GithubSettings:
    """GitHub deployment statuses of one app: on when a token and a repository are known (from
    `[apps.<name>.github] repository`, or the job's, from the webhook payload)."""

    api_url: str = "https://api.github.com"
    token: str | None = field(default=None, repr=False)  # GITHUB_TOKEN[_FILE]
    repository: str | None = None
    environment: str = ""
    environment_url: str | None = None


@dataclass(frozen=True)
class AppCaddy:
    """`[apps.<name>.caddy]`, resolved: where Caddy sends the app's requests (a site address and,
    optionally, a path prefix), the route file that names the live colour, and how to reach
    Caddy's admin API and read its access log."""

    admin: str
    route_file: Path
    site: str = ":80"
    path: str | None = None
    route_file_in_caddy: str | None = None  # the route file as Caddy sees it (None: outside the run dir)
    access_log: Path | None = None  # Caddy's access log (the traffic receipts); None: not known


@dataclass(frozen=True)
class AppState:
    """`[apps.<name>.state]`, resolved: where the app's deploy record lives."""

    dir: Path
    #: The old deploy script's `.deployment-color`, kept current for its users; None when
    #: several apps share the project directory (whose colour would it be?).
    deployment_color_file: Path | None = None


@dataclass(frozen=True)
class RegistryCredentials:
    """REGISTRY_USERNAME and REGISTRY_PASSWORD[_FILE]: for private images (None: anonymous)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AppConfig:
    """One app's settings, nested as the file nests them and read where they are used
    (`config.health.timeout`, `config.caddy.route_file`). Host settings stay on `HostConfig`."""

    source: Path
    name: str
    image: str
    project_dir: Path
    compose_files: tuple[str, ...]
    services: tuple[Service, ...]
    shared_services: tuple[str, ...]
    version_env: str
    caddy: AppCaddy
    state: AppState
    health: HealthModel = HealthModel()
    verify: VerifyModel = VerifyModel(url="http://localhost/")
    drain: DrainModel = DrainModel()
    hooks: HooksModel = HooksModel()
    bake: BakeSettings = BakeSettings()
    project_name: str = ""  # the shared compose project; colours are <project>-blue/-green
    registry: RegistryCredentials = RegistryCredentials()
    poll: PollSettings = field(default_factory=PollSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    notify: NotifySettings = NotifySettings()
    github: GithubSettings = GithubSettings()
    dashboard_url: str | None = None  # [dashboard] url: links to a job's page in notifications
    freezes: tuple[FreezeWindow, ...] = ()  # [[freeze]]: when workers hold the app's deploys
    smoke: SmokeSettings = SmokeSettings()
    promote: PromoteSettings = PromoteSettings()

    def project(self, color: str | None = None) -> str:
        """Compose project name: the shared one, or the one of a colour."""
        name = self.project_name or self.name
        return name if color is None else f"{name}-{color}"

    @property
    def preview_file(self) -> Path:
        """Beside the route file (so Caddy reads it too): "<colour> <secret>" while a deploy
        previews its idle colour, absent otherwise."""
        return self.caddy.route_file.parent / f"{self.name}.preview"

    @property
    def preview_url(self) -> str:
        """The app's root through Caddy, where the smoke phase sends its requests: the origin of
        [verify] url plus the app's path prefix."""
        origin = re.match(r"^https?://[^/?#]*", self.verify.url)
        return (origin.group(0) if origin else self.verify.url.rstrip("/")) + (self.caddy.path or "")

    def overlay(self, color: str) -> str:
        return f"compose.{color}.yml"

    def compose_env(self, version: str | None) -> dict[str, str]:
        """What compose interpolates for this app: its name, image and (when known) version."""
        env = {"WATCHER_APP": self.name, "APP_IMAGE": self.image}
        if version:
            env[self.version_env] = version
        return env


@dataclass(frozen=True)
class HostCaddy:
    """`[caddy]`: the host's one Caddy: its admin API, the default site, and the run directory
    (route files, access log) as watcher and as Caddy see it."""

    admin: str
    site: str
    run_dir: Path
    mount: str


@dataclass(frozen=True)
class HostConfig:
    """The whole file: the host's receiver, poller defaults, Redis, worker pool and Caddy, and
    every app on the host, in file order."""

    source: Path
    apps: dict[str, AppConfig]
    webhook: WebhookSettings
    concurrency: int
    caddy: HostCaddy
    redis: RedisSettings = RedisSettings()
    history: Retention = Retention()

    def app(self, name: str | None) -> AppConfig:
        """One app by name; without a name, the only one (several: the user must say which)."""
        if name is None:
            if len(self.apps) == 1:
                return next(iter(self.apps.values()))
            raise UsageError(
                f"{self.source} configures {len(self.apps)} apps ({', '.join(self.apps)}): "
                "say which with --app NAME"
            )
        if name not in self.apps:
            raise UsageError(f"no app {name!r} in {self.source} (known: {', '.join(self.apps)})")
        return self.apps[name]

    def chosen(self, name: str | None) -> list[AppConfig]:
        """`--app NAME`: that app; no name: every app."""
        return [self.app(name)] if name else list(self.apps.values())


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


def load_config(path: Path, env: Mapping[str, str] | None = None, app: str | None = None) -> AppConfig:
    """One app's configuration (the only one when `app` is None)."""
    return load_host(path, env).app(app)


def load_host(path: Path, env: Mapping[str, str] | None = None) -> HostConfig:
    """Parse and validate the file at `path`, then apply environment overrides."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:  # TOMLDecodeError; also a file not in UTF-8, an int of over 4300 digits
        twice = re.match(r"Cannot declare \('apps', '([^']+)'\) twice", str(exc))
        if twice:
            raise ConfigError(
                f"{path}: app {twice.group(1)}: [apps.{twice.group(1)}] is declared twice: "
                "app names are unique"
            ) from exc
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return _Loader(path, raw, env).host()


class _Loader:
    """From parsed TOML to HostConfig, with errors that say file, app, key and problem."""

    def __init__(self, path: Path, raw: dict[str, Any], env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.legacy = "app" in raw
        if self.legacy and "apps" in raw:
            raise ConfigError(
                f"{path}: [app] and [apps.<name>]: use one layout: [app] for a single app, "
                "[apps.<name>] tables for several"
            )
        for (section, key), env_name in SECRET_ENV.items():
            if isinstance(raw.get(section), dict) and key in raw[section]:
                raise ConfigError(
                    f"{path}: {section}.{key}: secrets are never read from the file: set "
                    f"{env_name} or {env_name}_FILE"
                )
        if self.legacy:
            name, raw = legacy_to_apps(raw)
            if name is None:
                raise ConfigError(f"{path}: app.name: is required")
            if not isinstance(name, str):
                raise ConfigError(f"{path}: app.name: expected a string, got {name!r}")
        self.overridden = self._apply_env(raw)
        self.raw = raw

    # -- errors ------------------------------------------------------------------------------

    def where(self, app: str | None, key: str) -> str:
        """`file: app shop: health.timeout`, or the environment variable that set the key."""
        section, _, name = key.partition(".")
        for env_name, target in {**APP_ENV, **HOST_ENV}.items():
            if target == (section, name) and (app, key) in self.overridden:
                return f"environment {env_name}"
        if self.legacy or app is None:
            if self.legacy and app is not None and section.split("[")[0] not in _LEGACY_TOP:
                key = f"app.{key}"
            return f"{self.path}: {key}"
        return f"{self.path}: app {app}: {key}"

    def fail(self, app: str | None, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(app, key)}: {problem}")

    def _explain(self, exc: ValidationError) -> ConfigError:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        app = None
        if len(loc) >= 2 and loc[0] == "apps":
            app, loc = loc[1], loc[2:]
        if loc and loc[-1] == "[key]":  # a table's name: an app's or a service's
            loc = loc[:-1] + ["name"] if loc else ["name"]
            if not self.legacy and loc == ["name"]:
                loc = []
        key = ".".join(loc)
        if app is not None and not key:
            return ConfigError(f"{self.path}: apps.{app}: {_problem(error, [])}")
        return self.fail(app, key or "apps", _problem(error, self._known(app, loc)))

    def _known(self, app: str | None, loc: list[str]) -> list[str]:
        """The keys allowed where an unknown one was found, for the message."""
        if app is None and len(loc) == 1 and self.legacy:
            return ["app", *_LEGACY_TOP]
        model: Any = FileModel if app is None else AppModel
        for part in loc[:-1]:
            annotation = getattr(model, "model_fields", {}).get(part)  # a list of tables has none
            if annotation is None or part == "services":
                return ["port", "path"] if part == "services" else []
            model = annotation.annotation
        return list(getattr(model, "model_fields", {}))

    # -- environment ---------------------------------------------------------------------------

    def _apply_env(self, raw: dict[str, Any]) -> set[tuple[str | None, str]]:
        """Write the environment overrides into the raw file; returns which (app, key) they set."""
        done: set[tuple[str | None, str]] = set()
        for env_name, (section, key) in HOST_ENV.items():
            if self.env.get(env_name):
                raw.setdefault(section, {})
                if isinstance(raw[section], dict):
                    raw[section][key] = self.env[env_name]
                    done.add((None, f"{section}.{key}"))
        apps = raw.get("apps")
        for name, app in apps.items() if isinstance(apps, dict) else ():
            for env_name, (section, key) in APP_ENV.items():
                if self.env.get(env_name) and isinstance(app, dict):
                    app.setdefault(section, {})
                    if isinstance(app[section], dict):
                        app[section][key] = self.env[env_name]
                        done.add((name, f"{section}.{key}"))
        return done

    # -- building ------------------------------------------------------------------------------

    def host(self) -> HostConfig:
        if not self.raw.get("apps") and isinstance(self.raw.get("apps", {}), dict):
            raise ConfigError(
                f"{self.path}: apps: configure at least one app: [apps.<name>] with image, "
                "[apps.<name>.services.web] port and [apps.<name>.verify] url"
            )
        try:
            model = FileModel.model_validate(self.raw)
        except ValidationError as exc:
            raise self._explain(exc) from None
        base = self.path.parent
        if self.legacy:  # the single-app file's paths are relative to its app's project_dir
            only = next(iter(model.apps.values()))
            base = _resolve(base, only.project_dir)
        run_dir = _resolve(base, model.caddy.run_dir)
        admin = _admin_path(base, model.caddy.admin or f"unix://{run_dir / 'caddy-admin.sock'}")
        webhook = model.webhook
        if model.metrics.listen == webhook.listen:
            raise ConfigError(
                f"{self.path}: metrics.listen: {webhook.listen} is the receiver's address already "
                "([webhook] listen); leave it out to serve /metrics there"
            )
        host = HostConfig(
            source=self.path,
            apps={},
            webhook=WebhookSettings(
                listen=webhook.listen,
                max_body=webhook.max_body,
                status_auth=webhook.status_auth,
                threads=webhook.threads,
                secret=read_secret(self.env, "WEBHOOK_SECRET"),
                registry_token=read_secret(self.env, "WEBHOOK_REGISTRY_TOKEN"),
                api_token=read_secret(self.env, "WATCHER_API_TOKEN"),
                metrics_listen=model.metrics.listen,
            ),
            concurrency=model.worker.concurrency,
            caddy=HostCaddy(admin, model.caddy.site, run_dir, model.caddy.mount),
            redis=RedisSettings(
                model.redis.url,
                read_secret(self.env, "REDIS_PASSWORD"),
                model.redis.prefix,
                model.redis.lock_ttl,
            ),
            history=Retention(model.history.keep, model.history.max_age),
        )
        host_routes = self._routes(None, model.notify) + self._env_routes()
        project_dirs = [_resolve(self.path.parent, app.project_dir) for app in model.apps.values()]
        for (name, app), project_dir in zip(model.apps.items(), project_dirs):
            host.apps[name] = self._app(
                name,
                app,
                project_dir,
                model,
                host,
                host_routes,
                shared_dir=project_dirs.count(project_dir) > 1,
            )
        self._check_apart(host)
        return host

    def _app(
        self,
        name: str,
        app: AppModel,
        project_dir: Path,
        model: FileModel,
        host: HostConfig,
        host_routes: tuple[NotifyRoute, ...],
        *,
        shared_dir: bool,
    ) -> AppConfig:
        if not project_dir.is_dir():
            raise self.fail(name, "project_dir", f"{project_dir} is not a directory")
        for file_name in app.compose_files:
            if not (project_dir / file_name).is_file():
                raise self.fail(name, "compose_files", f"{file_name!r} not found in {project_dir}")
        for color in ("blue", "green"):
            if not (project_dir / f"compose.{color}.yml").is_file():
                raise self.fail(name, "project_dir", f"compose.{color}.yml not found in {project_dir}")
        return AppConfig(
            source=self.path,
            name=name,
            project_name=app.project or name,
            image=app.image,
            project_dir=project_dir,
            compose_files=tuple(app.compose_files),
            services=self._services(name, app),
            shared_services=tuple(app.shared_services),
            version_env=app.version_env,
            caddy=_caddy(name, app, project_dir, host.caddy),
            state=AppState(
                _resolve(project_dir, app.state.dir) if app.state.dir else project_dir / ".watcher" / name,
                None if shared_dir else project_dir / ".deployment-color",
            ),
            health=app.health,
            verify=app.verify,
            drain=app.drain,
            hooks=app.hooks,
            bake=BakeSettings(
                app.bake.duration,
                app.bake.max_error_rate if app.bake.enabled else None,
                app.bake.max_latency_ratio or None if app.bake.enabled else None,
                app.bake.min_requests,
                app.bake.baseline,
            ),
            registry=RegistryCredentials(
                self.env.get("REGISTRY_USERNAME") or None, read_secret(self.env, "REGISTRY_PASSWORD")
            ),
            poll=self._poll(name, app, model.poll),
            policy=self._policy(name, app.policy),
            notify=NotifySettings(
                host_routes + self._routes(name, app.notify), model.notify.timeout, model.notify.queue
            ),
            github=GithubSettings(
                model.github.api_url,
                read_secret(self.env, "GITHUB_TOKEN"),
                app.github.repository,
                app.github.environment or name,
                app.github.environment_url or app.verify.url,
            ),
            dashboard_url=model.dashboard.url.rstrip("/") if model.dashboard.url else None,
            freezes=self._freezes(name, app),
            smoke=smoke_settings(
                app.hooks.smoke,
                app.hooks.smoke_timeout,
                app.smoke,
                lambda key, problem: self.fail(name, key, problem),
            ),
            promote=PromoteSettings(app.promote.mode == "manual", app.promote.timeout),
        )

    def _freezes(self, name: str, app: AppModel) -> tuple[FreezeWindow, ...]:
        windows = []
        for index, entry in enumerate(app.freeze):
            try:
                windows.append(window(entry.start, entry.end, entry.timezone, entry.reason))
            except ValueError as exc:
                key, _, problem = str(exc).partition(": ")
                raise self.fail(name, f"freeze[{index}].{key}", problem) from None
        return tuple(windows)

    def _routes(self, app: str | None, notify: AppNotifyModel) -> tuple[NotifyRoute, ...]:
        routes = [NotifyRoute(url) for url in notify.urls]
        routes += [NotifyRoute(route.url, frozenset(route.events)) for route in notify.routes]
        for index, route in enumerate(routes):
            problem = _apprise_problem(route.url)
            if problem:  # which entry, and its scheme: never the URL, which holds a token
                key = (
                    f"notify.urls[{index}]"
                    if index < len(notify.urls)
                    else f"notify.routes[{index - len(notify.urls)}].url"
                )
                raise self.fail(app, key, problem)
        return tuple(routes)

    def _env_routes(self) -> tuple[NotifyRoute, ...]:
        """WATCHER_NOTIFY_URLS[_FILE]: URLs separated by spaces or lines (`#` starts a comment
        line in the file), sent every event of every app."""
        text = read_secret(self.env, "WATCHER_NOTIFY_URLS") or ""
        urls = [
            word for line in text.splitlines() if not line.lstrip().startswith("#") for word in line.split()
        ]
        for index, url in enumerate(urls):
            problem = _apprise_problem(url)
            if problem:
                raise ConfigError(f"environment WATCHER_NOTIFY_URLS: URL {index + 1}: {problem}")
        return tuple(NotifyRoute(url) for url in urls)

    def _services(self, name: str, app: AppModel) -> tuple[Service, ...]:
        if not app.services:
            raise self.fail(
                name, "services", "list at least one stateless service, e.g. [services.web] port = 8080"
            )
        services = tuple(Service(service, spec.port, spec.path) for service, spec in app.services.items())
        proxied = [s for s in services if s.port is not None]
        if not proxied:
            raise self.fail(
                name,
                "services",
                "give at least one service the port Caddy proxies to, e.g. [services.web] port = 8080",
            )
        for service in services:
            if service.path and service.port is None:
                raise self.fail(
                    name, f"services.{service.name}.path", "only a service with a port is proxied"
                )
        if sum(1 for s in proxied if s.path is None) != 1:
            raise self.fail(
                name,
                "services",
                "several services have a port: give all but one a path "
                'prefix (e.g. [services.api] path = "/api"), so Caddy knows '
                "which answers what",
            )
        overlap = set(app.shared_services) & {s.name for s in services}
        if overlap:
            raise self.fail(
                name, "shared_services", f"{', '.join(sorted(overlap))} cannot be both shared and per colour"
            )
        return services

    def _poll(self, name: str, app: AppModel, host: Any) -> PollSettings:
        interval = app.poll.interval if app.poll.interval is not None else host.interval
        jitter = app.poll.jitter if app.poll.jitter is not None else host.jitter
        if jitter > interval:
            key = "poll.jitter" if app.poll.jitter is not None else None
            raise (
                self.fail(name, key, f"must not exceed poll.interval ({interval:g}s)")
                if key
                else self.fail(None, "poll.jitter", f"must not exceed poll.interval ({interval:g}s)")
            )
        enabled = app.poll.enabled if app.poll.enabled is not None else host.enabled
        return PollSettings(enabled=enabled, interval=interval, jitter=jitter, page_size=host.page_size)

    def _policy(self, name: str, policy: PolicyModel) -> PolicySettings:
        # Validated here, so a bad range or pattern stops watcher at start-up, not at the first poll.
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        kind = policy.kind
        if policy.range is not None:
            if kind != "semver":
                raise self.fail(name, "policy.range", 'only applies to kind = "semver"')
            try:
                SpecifierSet(policy.range)
            except InvalidSpecifier:
                raise self.fail(
                    name,
                    "policy.range",
                    f'not a version range like ">=1.2,<2" (comma-separated '
                    f"comparisons: >=, >, <=, <, ==, !=, ~=, ==1.*), got {policy.range!r}",
                ) from None
        if kind == "regex" and policy.include is None:
            raise self.fail(name, "policy.include", 'is required for kind = "regex", e.g. "^main-(\\\\d+)$"')
        if policy.include is not None and kind != "regex":
            raise self.fail(name, "policy.include", 'only applies to kind = "regex"')
        for key, pattern in [
            ("policy.include", policy.include),
            *(("policy.exclude", p) for p in policy.exclude),
        ]:
            if pattern is None:
                continue
            try:
                compiled = re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:  # a{4294967296}; 1000 nested groups
                raise self.fail(name, key, f"not a valid regular expression {pattern!r}: {exc}") from None
            if key == "policy.include" and compiled.groups > 1 and "order" not in compiled.groupindex:
                raise self.fail(
                    name, key, "has several capture groups: name the one that orders tags (?P<order>...)"
                )
        return PolicySettings(
            kind=kind,
            range=policy.range,
            prereleases=policy.prereleases,
            include=policy.include,
            exclude=tuple(policy.exclude),
            tag=policy.tag,
        )

    def _check_apart(self, host: HostConfig) -> None:
        """What two apps may never share: each would overwrite the other's deploys or traffic."""
        claimed: dict[tuple[str, object], str] = {}
        for name, config in host.apps.items():
            route = f"{config.caddy.site}{config.caddy.path or ''}"
            for kind, value, key in [
                ("compose project", config.project(), "project"),
                ("compose project", config.project("blue"), "project"),
                ("compose project", config.project("green"), "project"),
                ("route file", config.caddy.route_file, "caddy.route_file"),
                ("state directory", config.state.dir, "state.dir"),
                ("Caddy route", route, "caddy.path"),
            ]:
                other = claimed.setdefault((kind, value), name)
                if other != name:
                    raise self.fail(
                        name, key, f"{kind} {value} is already {other}'s: two apps never share one"
                    )
            if config.state.dir == host.caddy.run_dir:
                raise self.fail(
                    name, "state.dir", f"{host.caddy.run_dir} is Caddy's run directory; keep state out of it"
                )


_LEGACY_TOP = {
    "services",
    "health",
    "verify",
    "drain",
    "bake",
    "hooks",
    "smoke",
    "state",
    "policy",
    "caddy",
    "poll",
    "redis",
    "webhook",
    "worker",
    "freeze",
    "promote",
}

_TYPES = {
    "string_type": "expected a string",
    "int_type": "expected a number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "int_parsing": "expected a number",
}


def _problem(error: Any, known: list[str]) -> str:
    """pydantic's error in the words of this file's documentation."""
    kind, message = error["type"], error["msg"]
    value = error.get("input")
    if kind == "extra_forbidden":
        where = "section" if len(error["loc"]) == 1 else "key"
        return f"unknown {where} (known: {', '.join(known)})" if known else f"unknown {where}"
    if kind == "missing":
        return "is required"
    if kind in _TYPES:
        return f"{_TYPES[kind]}, got {value!r}"
    if kind == "literal_error":
        expected = message.split("Input should be ", 1)[-1].replace("'", "")
        return f"expected {expected}, got {value!r}"
    if kind in ("greater_than", "less_than", "greater_than_equal", "less_than_equal"):
        return f"out of range ({message.split('Input should be ', 1)[-1]}), got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"expected an absolute path, got {value!r}"
    return message.removeprefix("Value error, ")


def _apprise_problem(url: str) -> str | None:
    """Why apprise cannot send to `url` (named by its scheme only), or None."""
    import apprise  # only when notifications are configured: most commands never send one

    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # its messages quote the URL and its token
    if apprise.Apprise.instantiate(url) is not None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return (
        f"not a URL apprise can send to (scheme {scheme!r}; see https://github.com/caronc/apprise/wiki)"
        if scheme
        else "not an apprise URL (expected SCHEME://..., e.g. json://host/path or slack://...)"
    )


def _caddy(name: str, app: AppModel, project_dir: Path, host: HostCaddy) -> AppCaddy:
    """The app's route through the host's Caddy: its own keys, else the host's."""
    route_file = (
        _resolve(project_dir, app.caddy.route_file) if app.caddy.route_file else host.run_dir / f"{name}.live"
    )
    try:
        in_caddy = str(Path(host.mount) / route_file.relative_to(host.run_dir))
    except ValueError:
        in_caddy = None
    return AppCaddy(
        admin=_admin_path(project_dir, app.caddy.admin) if app.caddy.admin else host.admin,
        route_file=route_file,
        site=app.caddy.site or host.site,
        path=app.caddy.path,
        route_file_in_caddy=in_caddy,
        access_log=host.run_dir / ACCESS_LOG,
    )


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def _admin_path(base: Path, admin: str) -> str:
    if admin.startswith("unix://"):
        return "unix://" + str(_resolve(base, admin[len("unix://") :]))
    return admin
