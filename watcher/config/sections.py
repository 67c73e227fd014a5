"""One app's sections, from the schema's models to settings, checked for what a schema cannot
say: settings that only make sense together, patterns that must compile, URLs apprise must know,
paths resolved against the right directory, and what two apps may not share. Each check raises
through `fail`, so its error names file, app and key (wording.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from watcher.backends.access_log import FILE_NAME as ACCESS_LOG
from watcher.config.env import notify_urls
from watcher.config.schema import AppModel, AppNotifyModel, BakeModel, PolicyModel, PollModel
from watcher.config.settings import (
    AppCaddy,
    AppState,
    BakeSettings,
    HostCaddy,
    HostConfig,
    NotifyRoute,
    PolicySettings,
    PollSettings,
    Service,
)
from watcher.config.wording import Fail
from watcher.errors import ConfigError
from watcher.freeze import FreezeWindow, window


def services(name: str, app: AppModel, fail: Fail) -> tuple[Service, ...]:
    if not app.services:
        raise fail(name, "services", "list at least one stateless service, e.g. [services.web] port = 8080")
    result = tuple(
        Service(
            service,
            spec.port,
            spec.path,
            keep_prefix=spec.keep_prefix,
            follows_version=spec.follows_version,
            one_shot=spec.one_shot,
            health_path=spec.health.path if spec.health else None,
            health_port=(spec.health.port or spec.port) if spec.health else None,
        )
        for service, spec in app.services.items()
    )
    proxied = [s for s in result if s.port is not None]
    if not proxied:
        raise fail(
            name,
            "services",
            "give at least one service the port Caddy proxies to, e.g. [services.web] port = 8080",
        )
    for service in result:
        if service.path and service.port is None:
            raise fail(name, f"services.{service.name}.path", "only a service with a port is proxied")
        if service.keep_prefix and not service.path:
            raise fail(
                name, f"services.{service.name}.keep_prefix", "only a service with a path has a prefix"
            )
        if service.health_path and service.health_port is None:
            raise fail(
                name,
                f"services.{service.name}.health",
                'say which port answers it: health = { path = "/up", port = 8080 }, or give the service a port',
            )
        if service.one_shot and service.port is not None:
            raise fail(name, f"services.{service.name}.one_shot", "a one-shot service exits: it has no port")
        if app.platform == "swarm" and service.health_path:
            raise fail(
                name,
                f"services.{service.name}.health",
                "on Swarm the tasks are judged by their own healthcheck (watcher cannot reach them): "
                "give the image or the compose service a healthcheck and remove this key",
            )
        if app.platform == "swarm" and service.one_shot:
            raise fail(
                name,
                f"services.{service.name}.one_shot",
                "a stack has no one-shot services (Swarm restarts what exits): run the migration "
                "from a pre-deploy hook instead",
            )
    if sum(1 for s in proxied if s.path is None) != 1:
        raise fail(
            name,
            "services",
            "several services have a port: give all but one a path "
            'prefix (e.g. [services.api] path = "/api"), so Caddy knows '
            "which answers what",
        )
    overlap = set(app.shared_services) & {s.name for s in result}
    if overlap:
        raise fail(
            name, "shared_services", f"{', '.join(sorted(overlap))} cannot be both shared and per colour"
        )
    return result


def poll(name: str, app: AppModel, host: PollModel, fail: Fail) -> PollSettings:
    """The app's `[poll]` keys, else the host's."""
    interval = app.poll.interval if app.poll.interval is not None else host.interval
    jitter = app.poll.jitter if app.poll.jitter is not None else host.jitter
    if jitter > interval:
        problem = f"must not exceed poll.interval ({interval:g}s)"
        raise fail(name if app.poll.jitter is not None else None, "poll.jitter", problem)
    enabled = app.poll.enabled if app.poll.enabled is not None else host.enabled
    return PollSettings(enabled=enabled, interval=interval, jitter=jitter, page_size=host.page_size)


def policy(name: str, model: PolicyModel, fail: Fail) -> PolicySettings:
    """Checked here, so a bad range or pattern stops watcher at start-up, not at the first poll."""
    _check_range(name, model, fail)
    if model.kind == "regex" and model.include is None:
        raise fail(name, "policy.include", 'is required for kind = "regex", e.g. "^main-(\\\\d+)$"')
    if model.include is not None and model.kind != "regex":
        raise fail(name, "policy.include", 'only applies to kind = "regex"')
    _check_patterns(name, model, fail)
    return PolicySettings(
        kind=model.kind,
        range=model.range,
        prereleases=model.prereleases,
        include=model.include,
        exclude=tuple(model.exclude),
        tag=model.tag,
    )


def _check_range(name: str, model: PolicyModel, fail: Fail) -> None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if model.range is None:
        return
    if model.kind != "semver":
        raise fail(name, "policy.range", 'only applies to kind = "semver"')
    try:
        SpecifierSet(model.range)
    except InvalidSpecifier:
        raise fail(
            name,
            "policy.range",
            f'not a version range like ">=1.2,<2" (comma-separated '
            f"comparisons: >=, >, <=, <, ==, !=, ~=, ==1.*), got {model.range!r}",
        ) from None


def _check_patterns(name: str, model: PolicyModel, fail: Fail) -> None:
    for key, pattern in [("policy.include", model.include), *(("policy.exclude", p) for p in model.exclude)]:
        if pattern is None:
            continue
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:  # a{4294967296}; 1000 nested groups
            raise fail(name, key, f"not a valid regular expression {pattern!r}: {exc}") from None
        if key == "policy.include" and compiled.groups > 1 and "order" not in compiled.groupindex:
            raise fail(name, key, "has several capture groups: name the one that orders tags (?P<order>...)")


def freezes(name: str, app: AppModel, fail: Fail) -> tuple[FreezeWindow, ...]:
    windows = []
    for index, entry in enumerate(app.freeze):
        try:
            windows.append(window(entry.start, entry.end, entry.timezone, entry.reason))
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise fail(name, f"freeze[{index}].{key}", problem) from None
    return tuple(windows)


def bake(model: BakeModel) -> BakeSettings:
    """`enabled = false`: the bake judges neither errors nor latency."""
    return BakeSettings(
        model.duration,
        model.max_error_rate if model.enabled else None,
        model.max_latency_ratio or None if model.enabled else None,
        model.min_requests,
        model.baseline,
    )


def routes(app: str | None, notify: AppNotifyModel, fail: Fail) -> tuple[NotifyRoute, ...]:
    """The notification routes of `[notify]` (app None) or of one app's."""
    result = [NotifyRoute(url) for url in notify.urls]
    result += [NotifyRoute(route.url, frozenset(route.events)) for route in notify.routes]
    for index, route in enumerate(result):
        problem = _apprise_problem(route.url)
        if problem:  # which entry, and its scheme: never the URL, which holds a token
            key = (
                f"notify.urls[{index}]"
                if index < len(notify.urls)
                else f"notify.routes[{index - len(notify.urls)}].url"
            )
            raise fail(app, key, problem)
    return tuple(result)


def env_routes(env: Mapping[str, str]) -> tuple[NotifyRoute, ...]:
    """WATCHER_NOTIFY_URLS[_FILE]'s routes: every event of every app."""
    urls = notify_urls(env)
    for index, url in enumerate(urls):
        problem = _apprise_problem(url)
        if problem:
            raise ConfigError(f"environment WATCHER_NOTIFY_URLS: URL {index + 1}: {problem}")
    return tuple(NotifyRoute(url) for url in urls)


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


def caddy(name: str, app: AppModel, project_dir: Path, host: HostCaddy) -> AppCaddy:
    """The app's route through the host's Caddy: its own keys, else the host's."""
    route_file = (
        resolve(project_dir, app.caddy.route_file) if app.caddy.route_file else host.run_dir / f"{name}.live"
    )
    try:
        in_caddy = str(Path(host.mount) / route_file.relative_to(host.run_dir))
    except ValueError:
        in_caddy = None
    return AppCaddy(
        admin=admin_path(project_dir, app.caddy.admin) if app.caddy.admin else host.admin,
        route_file=route_file,
        site=app.caddy.site or host.site,
        path=app.caddy.path,
        route_file_in_caddy=in_caddy,
        access_log=host.run_dir / ACCESS_LOG,
    )


def state(name: str, app: AppModel, project_dir: Path, *, shared_dir: bool) -> AppState:
    return AppState(
        resolve(project_dir, app.state.dir) if app.state.dir else project_dir / ".watcher" / name,
        None if shared_dir else project_dir / ".deployment-color",
    )


def check_apart(host: HostConfig, fail: Fail) -> None:
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
                raise fail(name, key, f"{kind} {value} is already {other}'s: two apps never share one")
        if config.state.dir == host.caddy.run_dir:
            raise fail(
                name, "state.dir", f"{host.caddy.run_dir} is Caddy's run directory; keep state out of it"
            )


def resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def admin_path(base: Path, admin: str) -> str:
    if admin.startswith("unix://"):
        return "unix://" + str(resolve(base, admin[len("unix://") :]))
    return admin
