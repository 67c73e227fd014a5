"""The colour stacks: the stateless services of one colour, as one compose project each,
plus the shared project (caddy, redis) that a deploy starts if missing and never recreates.
"""

from __future__ import annotations

from watcher.backends.compose import ComposeProject
from watcher.backends.containers import ContainerInfo, Containers
from watcher.config import Config
from watcher.engine.color import Color


class Stacks:
    def __init__(self, config: Config, containers: Containers) -> None:
        self.config = config
        self.docker = containers
        self.service_names = [s.name for s in config.services]

    def _project(self, color: Color | None) -> ComposeProject:
        if color is None:
            return ComposeProject(self.config.project(), self.config.project_dir, self.config.compose_files)
        # Every profile: app services may sit behind one (so a plain `docker compose up` skips
        # them), and `down` must see them to remove them.
        return ComposeProject(self.config.project(color.value), self.config.project_dir,
                              self.config.compose_files + (self.config.overlay(color.value),), ("*",))

    def _env(self, version: str | None, color: Color | None = None) -> dict[str, str]:
        env = {self.config.version_env: version} if version else {}
        if color is not None:
            env["WATCHER_COLOR"] = color.value
        return env

    def image(self, version: str) -> str:
        return f"{self.config.image}:{version}"

    def containers(self, color: Color) -> list[ContainerInfo]:
        """This colour's containers of the configured stateless services."""
        return [c for c in self.docker.of_project(self.config.project(color.value))
                if c.service in self.service_names]

    def shared_containers(self) -> list[ContainerInfo]:
        return [c for c in self.docker.of_project(self.config.project())
                if c.service in self.config.shared_services]

    def pull(self, version: str) -> None:
        """Pull every image of the version; a failure changes nothing that runs."""
        self._project(None).run(["pull", "--quiet", *self.service_names], self._env(version))

    def ensure_shared(self, version: str) -> None:
        """Start shared services that are not running; never recreate one."""
        if self.config.shared_services:
            self._project(None).run(["up", "-d", "--no-recreate", *self.config.shared_services],
                                    self._env(version))

    def start(self, color: Color, version: str, *, recreate: bool = False) -> None:
        """Create (or restart retained) containers of `color` running `version`."""
        args = ["up", "-d", "--no-deps", "--pull", "never"]
        if recreate:
            args.append("--force-recreate")
        self._project(color).run([*args, *self.service_names], self._env(version, color))

    def stop(self, color: Color) -> None:
        """Stop gracefully (SIGTERM, then compose's stop_grace_period), keep for rollback."""
        self._project(color).run(["stop", *self.service_names], self._env(None, color))

    def remove(self, color: Color) -> None:
        self._project(color).run(["down", "--remove-orphans"], self._env(None, color))

    def version(self, color: Color, containers: list[ContainerInfo] | None = None) -> str | None:
        """The version a colour runs, when all its containers agree."""
        versions = {c.version for c in (containers if containers is not None else self.containers(color))}
        return versions.pop() if len(versions) == 1 else None
