"""The configuration file's shape, as pydantic models: which sections and keys exist, their
types and defaults. Unknown keys are refused (a typo must not silently fall back to a default),
and nothing is coerced (`port = "8080"` is an error, not a guess).

Two layouts map onto `FileModel`: today's `[apps.<name>]` tables for many apps, and the
single-app file (`[app]` plus top-level `[services]`, `[health]`, ...), which `legacy_to_apps`
rewrites into one `apps` entry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from watcher.config.values import (
    Admin,
    Duration,
    EnvName,
    HttpUrl,
    Image,
    KeyPrefix,
    Listen,
    Name,
    PathText,
    PositiveDuration,
    RedisUrl,
    RegistryHost,
    RoutePath,
    Site,
    Size,
    Tag,
    TokenHost,
    at_least,
    between,
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ServiceHealthModel(Section):
    """Health judged by watcher over HTTP, for images without a shell or `wget` to run a Docker
    healthcheck in (kamal-proxy's convention is `/up`)."""

    path: RoutePath
    port: Annotated[int, between(1, 65535, "port")] | None = None  # default: the service's port


class ServiceModel(Section):
    port: Annotated[int, between(1, 65535, "port")] | None = None
    path: RoutePath | None = None  # a second proxied service: the prefix Caddy sends to it
    keep_prefix: bool = False  # send the full path to it (Caddy `handle`), not the path without `path`
    follows_version: bool | None = None  # None: when its image's tag is the version variable
    one_shot: bool | None = None  # None: when a colour service waits for it to complete successfully
    health: ServiceHealthModel | None = None


class AppCaddyModel(Section):
    site: Site | None = None  # default: [caddy] site
    path: RoutePath | None = None  # default: every path of the site
    route_file: PathText | None = None  # default: <[caddy] run_dir>/<app>.live
    admin: Admin | None = None  # default: [caddy] admin


class HealthModel(Section):
    timeout: Duration = 300.0
    interval: PositiveDuration = 3.0


class VerifyModel(Section):
    url: HttpUrl
    header: str | None = None
    timeout: Duration = 30.0
    window: Duration = 10.0


class DrainModel(Section):
    timeout: Duration = 30.0
    retain_old: bool = True


def _rate(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a fraction between 0 and 1 (0.01 is 1 %), got {value!r}")
    return value


def _ratio(value: float) -> float:
    if value != 0 and value < 1.0:
        raise ValueError(f"must be at least 1 (0 turns the latency check off), got {value!r}")
    return value


class BakeModel(Section):
    """After the switch: the new colour's errors and p99 against the old colour's before it."""

    enabled: bool = True
    duration: Duration | None = None  # default: [verify] window
    max_error_rate: Annotated[float, AfterValidator(_rate)] = 0.01
    max_latency_ratio: Annotated[float, AfterValidator(_ratio)] = 3.0
    min_requests: Annotated[int, between(1, 1_000_000)] = 50
    baseline: PositiveDuration = 300.0  # how long before the switch the old colour is read


class HooksModel(Section):
    pre_deploy: list[str] = []
    pre_deploy_timeout: Duration = 600.0
    smoke: list[str] = []  # run against the previewed idle colour, before the switch
    smoke_timeout: Duration = 300.0


class SmokeCheckModel(Section):
    """One `[[smoke]]` request sent through Caddy to the previewed idle colour."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    path: Annotated[str, Field(pattern=r"^/[^\s]*$")]
    status: Annotated[int, between(100, 599)] = 200
    body_contains: Annotated[str, Field(min_length=1)] | None = None
    body: str | None = None  # sent with the request
    headers: dict[str, str] = {}
    timeout: PositiveDuration = 10.0


class PromoteModel(Section):
    """`[promote]`: manual holds a deploy, healthy and previewable, until `watcher promote`."""

    mode: Literal["auto", "manual"] = "auto"
    timeout: PositiveDuration = 3600.0  # an unpromoted deploy is removed after this


class StateModel(Section):
    dir: PathText | None = None  # default: <project_dir>/.watcher/<app>


class PolicyModel(Section):
    kind: Literal["semver", "regex", "digest"] = "semver"
    range: str | None = None
    prereleases: bool = False
    include: str | None = None
    exclude: list[str] = []
    tag: Tag = "latest"


class AppPollModel(Section):
    """Per app; unset keys take the host's `[poll]`."""

    enabled: bool | None = None
    interval: Annotated[Duration, at_least(1.0)] | None = None
    jitter: Duration | None = None


NotifyEvent = Literal[
    "started",
    "succeeded",
    "failed",
    "rolled_back",
    "rollback_done",
    "paused",
    "resumed",
    "refused",
    "redis_lost",
]


class NotifyRouteModel(Section):
    """One apprise URL that is sent only the events it names."""

    url: Annotated[str, Field(min_length=1)]
    events: Annotated[list[NotifyEvent], Field(min_length=1)]


class AppNotifyModel(Section):
    urls: list[Annotated[str, Field(min_length=1)]] = []  # apprise URLs sent every event of the app
    routes: list[NotifyRouteModel] = []


class AppGithubModel(Section):
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] | None = None
    environment: Annotated[str, Field(min_length=1)] | None = None  # default: the app's name
    environment_url: HttpUrl | None = None  # default: [verify] url


class FreezeModel(Section):
    """A scheduled freeze (watcher/freeze.py): 5-field cron times, in `timezone`."""

    start: Annotated[str, Field(min_length=1)]
    end: Annotated[str, Field(min_length=1)]
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    reason: str = ""


class SwarmModel(Section):
    """[apps.<name>.swarm]: how the colours' stacks meet the edge Caddy (platform = "swarm")."""

    network: Name = "watcher-edge"  # the external attachable overlay the edge Caddy is on


class AppModel(Section):
    image: Image
    project: Name | None = None  # the shared compose project (default: the app's name)
    project_dir: PathText = "."
    compose_files: list[PathText] = ["compose.yml"]
    shared_services: list[Name] = []
    version_env: EnvName = "APP_VERSION"
    pass_env: list[EnvName] = []  # watcher's variables its hooks and compose see besides the allowed
    services: dict[Name, ServiceModel]
    caddy: AppCaddyModel = AppCaddyModel()
    health: HealthModel = HealthModel()
    verify: VerifyModel
    drain: DrainModel = DrainModel()
    bake: BakeModel = BakeModel()
    hooks: HooksModel = HooksModel()
    smoke: list[SmokeCheckModel] = []
    promote: PromoteModel = PromoteModel()
    state: StateModel = StateModel()
    policy: PolicyModel = PolicyModel()
    poll: AppPollModel = AppPollModel()
    notify: AppNotifyModel = AppNotifyModel()
    github: AppGithubModel = AppGithubModel()
    freeze: list[FreezeModel] = []
    platform: Literal["compose", "swarm"] = "compose"  # what runs the colours (docs/platforms.md)
    swarm: SwarmModel = SwarmModel()


class RedisModel(Section):
    url: RedisUrl | None = None
    lock_ttl: Annotated[Duration, at_least(1.0)] = 30.0
    prefix: KeyPrefix = ""  # keys are [<prefix>:]watcher:<app>:...


class WebhookModel(Section):
    listen: Listen = "127.0.0.1:9000"
    max_body: Size = 1024 * 1024
    status_auth: bool = True
    threads: Annotated[int, between(1, 64)] = 8


class MetricsModel(Section):
    listen: Listen | None = None  # GET /metrics on its own address instead of the receiver's


class PollModel(Section):
    enabled: bool = True
    interval: Annotated[Duration, at_least(1.0)] = 60.0
    jitter: Duration = 5.0
    page_size: Annotated[int, between(1, 10000)] | None = None


class WorkerModel(Section):
    concurrency: Annotated[int, between(1, 32)] = 1


class HistoryModel(Section):
    keep: Annotated[int, between(1, 100_000, "keep")] = 1000  # finished jobs kept per app
    max_age: Annotated[Duration, at_least(60.0)] = 90 * 86400.0  # and none older than this


class NotifyModel(AppNotifyModel):
    """The host's URLs get every app's events; the sender's bounds apply to every URL."""

    timeout: PositiveDuration = 10.0  # one send, after which it counts as failed
    queue: Annotated[int, between(1, 10_000, "queue")] = 100  # events waiting; more are dropped


class GithubModel(Section):
    api_url: HttpUrl = "https://api.github.com"


class DashboardModel(Section):
    url: HttpUrl | None = None  # the dashboard's public base URL, for links in messages


class RegistryModel(Section):
    #: A registry's token service on another host, where the registry credentials may go too
    #: (Docker Hub's auth.docker.io is built in; a realm on the registry's own host needs nothing).
    token_hosts: dict[RegistryHost, list[TokenHost]] = {}
    #: Registries reached over plain http (a private network without TLS; Docker's engines
    #: need them in insecure-registries too). Credentials cross the network in clear text.
    plain_http: list[RegistryHost] = []


class CaddyModel(Section):
    """The one Caddy in front of the apps."""

    admin: Admin | None = None  # default: unix://<run_dir>/caddy-admin.sock
    run_dir: PathText = ".watcher/run"  # host directory mounted into Caddy at `mount`
    mount: Annotated[str, Field(pattern=r"^/[^\s{}]*$")] = "/run/watcher"
    site: Site = ":80"  # the site address of apps that name none


class FileModel(Section):
    apps: dict[Name, AppModel]
    redis: RedisModel = RedisModel()
    webhook: WebhookModel = WebhookModel()
    metrics: MetricsModel = MetricsModel()
    poll: PollModel = PollModel()
    worker: WorkerModel = WorkerModel()
    history: HistoryModel = HistoryModel()
    notify: NotifyModel = NotifyModel()
    github: GithubModel = GithubModel()
    dashboard: DashboardModel = DashboardModel()
    caddy: CaddyModel = CaddyModel()
    registry: RegistryModel = RegistryModel()


#: Top-level sections of the single-app layout that belong to its one app.
LEGACY_APP_SECTIONS = (
    "services",
    "health",
    "verify",
    "drain",
    "bake",
    "hooks",
    "smoke",
    "state",
    "policy",
    "freeze",
    "promote",
)
HOST_SECTIONS = ("redis", "webhook", "metrics", "poll", "worker", "history")


def legacy_to_apps(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The single-app layout as `{"apps": {name: {...}}, ...}`; returns (name, rewritten)."""
    app = dict(raw.get("app") or {}) if isinstance(raw.get("app"), dict) else {}
    name = app.pop("name", None)
    body: dict[str, Any] = dict(app)
    for section in LEGACY_APP_SECTIONS:
        if section in raw:
            body[section] = raw[section]
    if "caddy" in raw:
        body["caddy"] = raw["caddy"]
    rewritten = {
        k: v for k, v in raw.items() if k in HOST_SECTIONS or k not in ("app", "caddy", *LEGACY_APP_SECTIONS)
    }
    rewritten["apps"] = {name: body} if isinstance(name, str) else {}  # the caller refuses such a name
    return name, rewritten
