"""From the TOML file to `HostConfig`: find it, read it, apply the environment, validate it with
the schema, then build the host's settings and each app's (sections.py), and check what two apps
may not share. Every error names the file, the app, the key and what is wrong (wording.py),
because a deploy tool that guesses at a bad setting is worse than one that refuses to start."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watcher.config import sections
from watcher.config.child_env import pass_env
from watcher.config.env import apply_env, read_secret, read_strong_secret, refuse_secrets_in_file
from watcher.config.promote import PromoteSettings
from watcher.config.schema import AppModel, FileModel, legacy_to_apps
from watcher.config.settings import (
    AppConfig,
    GithubSettings,
    HostCaddy,
    HostConfig,
    NotifySettings,
    RedisSettings,
    RegistryCredentials,
    Retention,
    WebhookSettings,
)
from watcher.config.smoke import smoke_settings
from watcher.config.wording import Wording
from watcher.errors import ConfigError

DEFAULT_LOCATIONS = ("watcher.toml", "config/watcher.toml")


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


def load_config(path: Path, env: Mapping[str, str] | None = None, app: str | None = None) -> AppConfig:
    """One app's configuration (the only one when `app` is None)."""
    return load_host(path, env).app(app)


def load_host(path: Path, env: Mapping[str, str] | None = None) -> HostConfig:
    """Parse and validate the file at `path`, then apply environment overrides."""
    env = os.environ if env is None else env
    return _Loader(path, _read(path), env).host()


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
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


class _Loader:
    """One file, read, with the environment applied and the schema checked, on its way to a HostConfig."""

    def __init__(self, path: Path, raw: dict[str, Any], env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        legacy = "app" in raw
        if legacy and "apps" in raw:
            raise ConfigError(
                f"{path}: [app] and [apps.<name>]: use one layout: [app] for a single app, "
                "[apps.<name>] tables for several"
            )
        refuse_secrets_in_file(path, raw)
        if legacy:
            name, raw = legacy_to_apps(raw)
            if name is None:
                raise ConfigError(f"{path}: app.name: is required")
            if not isinstance(name, str):
                raise ConfigError(f"{path}: app.name: expected a string, got {name!r}")
        self.wording = Wording(path, legacy, apply_env(raw, env))
        self.fail = self.wording.fail
        self.model = self._validate(raw)

    @cached_property
    def registry(self) -> RegistryCredentials:
        """REGISTRY_USERNAME[_FILE] and REGISTRY_PASSWORD[_FILE]: both, or neither (anonymous);
        the token services beside the registries' own hosts that may receive them."""
        username = read_secret(self.env, "REGISTRY_USERNAME") or None
        password = read_secret(self.env, "REGISTRY_PASSWORD") or None
        if (username is None) != (password is None):
            given, missing = ("USERNAME", "PASSWORD") if username else ("PASSWORD", "USERNAME")
            raise ConfigError(
                f"environment REGISTRY_{given}[_FILE] is set without REGISTRY_{missing}[_FILE]: "
                "set both for a private registry, or neither to pull anonymously"
            )
        hosts = self.model.registry.token_hosts
        return RegistryCredentials(
            username,
            password,
            frozenset((name, host) for name, listed in hosts.items() for host in listed),
            frozenset(self.model.registry.plain_http),
        )

    def host(self) -> HostConfig:
        model = self.model
        host = self._host()
        routes = sections.routes(None, model.notify, self.fail) + sections.env_routes(self.env)
        notify = NotifySettings(routes, model.notify.timeout, model.notify.queue)
        for name in model.apps:
            host.apps[name] = self._app(name, host, notify)
        sections.check_apart(host, self.fail)
        return host

    @cached_property
    def project_dirs(self) -> dict[str, Path]:
        """Each app's, against the file's directory (some apps may share one)."""
        return {
            name: sections.resolve(self.path.parent, app.project_dir) for name, app in self.model.apps.items()
        }

    def _validate(self, raw: dict[str, Any]) -> FileModel:
        if not raw.get("apps") and isinstance(raw.get("apps", {}), dict):
            raise ConfigError(
                f"{self.path}: apps: configure at least one app: [apps.<name>] with image, "
                "[apps.<name>.services.web] port and [apps.<name>.verify] url"
            )
        try:
            return FileModel.model_validate(raw)
        except ValidationError as exc:
            raise self.wording.explain(exc) from None

    def _host(self) -> HostConfig:
        """The host's settings; its apps are added one by one."""
        model = self.model
        base = self.path.parent
        if self.wording.legacy:  # the single-app file's paths are relative to its app's project_dir
            only = next(iter(model.apps.values()))
            base = sections.resolve(base, only.project_dir)
        run_dir = sections.resolve(base, model.caddy.run_dir)
        admin = sections.admin_path(base, model.caddy.admin or f"unix://{run_dir / 'caddy-admin.sock'}")
        return HostConfig(
            source=self.path,
            apps={},
            webhook=self._webhook(),
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

    def _webhook(self) -> WebhookSettings:
        model, webhook = self.model, self.model.webhook
        if model.metrics.listen == webhook.listen:
            raise ConfigError(
                f"{self.path}: metrics.listen: {webhook.listen} is the receiver's address already "
                "([webhook] listen); leave it out to serve /metrics there"
            )
        for name in ("WEBHOOK_SECRET", "WATCHER_API_TOKEN"):
            if read_secret(self.env, f"{name}_PREVIOUS") and not read_secret(self.env, name):
                raise ConfigError(
                    f"{name}_PREVIOUS is set without {name}: set the new value beside the old one"
                )
        return WebhookSettings(
            listen=webhook.listen,
            max_body=webhook.max_body,
            status_auth=webhook.status_auth,
            threads=webhook.threads,
            secret=read_strong_secret(self.env, "WEBHOOK_SECRET"),
            registry_token=read_strong_secret(self.env, "WEBHOOK_REGISTRY_TOKEN"),
            api_token=read_strong_secret(self.env, "WATCHER_API_TOKEN"),
            metrics_listen=model.metrics.listen,
            secret_previous=read_strong_secret(self.env, "WEBHOOK_SECRET_PREVIOUS"),
            api_token_previous=read_strong_secret(self.env, "WATCHER_API_TOKEN_PREVIOUS"),
        )

    def _check_files(self, name: str, app: AppModel, project_dir: Path) -> None:
        """The project directory and the compose files the app's deploys run."""
        if not project_dir.is_dir():
            raise self.fail(name, "project_dir", f"{project_dir} is not a directory")
        for file_name in app.compose_files:
            if not (project_dir / file_name).is_file():
                raise self.fail(name, "compose_files", f"{file_name!r} not found in {project_dir}")
        for color in ("blue", "green"):
            if not (project_dir / f"compose.{color}.yml").is_file():
                raise self.fail(name, "project_dir", f"compose.{color}.yml not found in {project_dir}")

    def _app(self, name: str, host: HostConfig, notify: NotifySettings) -> AppConfig:
        """One app: its own sections, with the host's defaults where the app leaves a key out."""
        app, project_dir = self.model.apps[name], self.project_dirs[name]
        self._check_files(name, app, project_dir)
        shared_dir = list(self.project_dirs.values()).count(project_dir) > 1
        return AppConfig(
            source=self.path,
            name=name,
            project_name=app.project or name,
            image=app.image,
            platform=app.platform,
            swarm=app.swarm,
            project_dir=project_dir,
            compose_files=tuple(app.compose_files),
            services=sections.services(name, app, self.fail),
            shared_services=tuple(app.shared_services),
            version_env=app.version_env,
            caddy=sections.caddy(name, app, project_dir, host.caddy),
            state=sections.state(name, app, project_dir, shared_dir=shared_dir),
            health=app.health,
            verify=app.verify,
            drain=app.drain,
            hooks=app.hooks,
            bake=sections.bake(app.bake),
            registry=self.registry,
            poll=sections.poll(name, app, self.model.poll, self.fail),
            policy=sections.policy(name, app.policy, self.fail),
            notify=replace(notify, routes=notify.routes + sections.routes(name, app.notify, self.fail)),
            github=self._github(name, app),
            dashboard_url=self.model.dashboard.url.rstrip("/") if self.model.dashboard.url else None,
            freezes=sections.freezes(name, app, self.fail),
            smoke=smoke_settings(
                app.hooks.smoke, app.hooks.smoke_timeout, app.smoke, partial(self.fail, name)
            ),
            promote=PromoteSettings(app.promote.mode == "manual", app.promote.timeout),
            pass_env=pass_env(app.pass_env, partial(self.fail, name)),
        )

    def _github(self, name: str, app: AppModel) -> GithubSettings:
        """Deployment statuses: the host's API and token, the app's repository and environment."""
        return GithubSettings(
            self.model.github.api_url,
            read_secret(self.env, "GITHUB_TOKEN"),
            app.github.repository,
            app.github.environment or name,
            app.github.environment_url or app.verify.url,
        )
