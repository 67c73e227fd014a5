"""The settings watcher runs on, resolved from the file: `HostConfig` (one per process) and one
`AppConfig` per app, read where they are used. Plain frozen dataclasses: the file's shape is
schema.py's, how it becomes these is loader.py's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from watcher.config.child_env import child_env
from watcher.config.promote import PromoteSettings
from watcher.config.schema import DrainModel, HealthModel, HooksModel, SwarmModel, VerifyModel
from watcher.config.smoke import SmokeSettings
from watcher.errors import UsageError
from watcher.freeze import FreezeWindow


@dataclass(frozen=True)
class Service:
    """A stateless service that runs once per colour; Caddy dials `<app>-<name>-<colour>:<port>`.
    Without a port it runs per colour but is not proxied (a sidecar, a queue consumer). A second
    proxied service is reached under its `path` prefix of the app's route."""

    name: str
    port: int | None
    path: str | None = None
    keep_prefix: bool = False  # Caddy sends the full path (`handle`), not the rest (`handle_path`)
    follows_version: bool | None = None  # its image's tag is the app's version (None: detected)
    one_shot: bool | None = None  # runs to completion once per deploy of the colour (None: detected)
    health_path: str | None = None  # watcher judges its health by HTTP GET here (no Docker healthcheck)
    health_port: int | None = None

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
    # *_PREVIOUS[_FILE]: the value being rotated out, still accepted beside the new one
    secret_previous: str | None = field(default=None, repr=False)
    api_token_previous: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The GitHub HMAC keys accepted: WEBHOOK_SECRET, and its previous value while rotating."""
        return tuple(filter(None, (self.secret, self.secret_previous)))

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """The API tokens accepted: WATCHER_API_TOKEN, and its previous value while rotating."""
        return tuple(filter(None, (self.api_token, self.api_token_previous)))

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
    """REGISTRY_USERNAME and REGISTRY_PASSWORD[_FILE]: for private images (None: anonymous), and
    `[registry] token_hosts`: the (registry, token service host) pairs they may also be sent to."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token_hosts: frozenset[tuple[str, str]] = frozenset()
    plain_http: frozenset[str] = frozenset()  # [registry] plain_http: registries without TLS


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
    pass_env: tuple[str, ...] = ()  # [apps.<name>] pass_env: besides child_env.py's allow-list
    platform: str = "compose"  # what runs the colours: "compose" or "swarm" (docs/platforms.md)
    swarm: SwarmModel = SwarmModel()

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
    def probe_file(self) -> Path:
        """Beside the route file (so Caddy reads it too): the secret that marks watcher's own
        checks in Caddy's access log (engine/verification.py)."""
        return self.caddy.route_file.parent / f"{self.name}.probe"

    @property
    def preview_url(self) -> str:
        """The app's root through Caddy, where the smoke phase sends its requests: the origin of
        [verify] url plus the app's path prefix."""
        origin = re.match(r"^https?://[^/?#]*", self.verify.url)
        return (origin.group(0) if origin else self.verify.url.rstrip("/")) + (self.caddy.path or "")

    def overlay(self, color: str) -> str:
        return f"compose.{color}.yml"

    def compose_env(self, version: str | None) -> dict[str, str]:
        """The whole environment of the app's compose commands and hooks: what child_env.py lets
        through (never watcher's secrets), then the app's name, image and (when known) version."""
        files = [*self.compose_files, self.overlay("blue"), self.overlay("green")]
        env = child_env([self.project_dir / name for name in files], self.pass_env)
        env |= {"WATCHER_APP": self.name, "APP_IMAGE": self.image}
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
