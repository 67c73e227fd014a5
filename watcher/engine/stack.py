"""The stacks of one app: a `ColorStack` per colour (its compose project, containers, health,
version, image and Caddy upstreams) and the `SharedStack` (caddy, redis: started if missing,
never recreated by a deploy).

A colour's *version* and *image* are those of its containers that run the app's image
(`app.image`); a sidecar on another image is listed with the colour but never makes its version
unknown.
"""

from __future__ import annotations

from watcher.backends.compose import ComposeProject
from watcher.backends.containers import ContainerInfo, Containers, agreed, of_image
from watcher.config import Config
from watcher.engine.color import Color
from watcher.engine.health import Health, judge


class ColorStack:
    """One colour of the app's stateless services: everything a deploy asks of or does to it."""

    def __init__(self, config: Config, docker: Containers, color: Color) -> None:
        self.config = config
        self.docker = docker
        self.color = color
        self.services = [s.name for s in config.services]
        #: Caddy's upstreams of this colour (services with a port), whose in-flight counts drain watches.
        self.upstreams = [s.upstream(config.app, color.value) for s in config.services if s.port is not None]
        # Every profile: app services may sit behind one (so a plain `docker compose up` skips
        # them), and `down` must see them to remove them.
        self._project = ComposeProject(
            config.project(color.value),
            config.project_dir,
            config.compose_files + (config.overlay(color.value),),
            ("*",),
        )

    @property
    def name(self) -> str:
        """The compose project's name, e.g. `demo-green`."""
        return self._project.name

    def __str__(self) -> str:
        return self.color.value

    # -- what Docker says ----------------------------------------------------------------------

    def containers(self) -> list[ContainerInfo]:
        """This colour's containers of the configured services."""
        return [c for c in self.docker.of_project(self.name) if c.service in self.services]

    def app_containers(self, containers: list[ContainerInfo] | None = None) -> list[ContainerInfo]:
        return of_image(self.containers() if containers is None else containers, self.config.image)

    def health(self, containers: list[ContainerInfo] | None = None) -> Health:
        return judge(self.containers() if containers is None else containers, self.services)

    def version(self, containers: list[ContainerInfo] | None = None) -> str | None:
        """The tag the app's containers run, when they agree (None: none, or they differ)."""
        return agreed({c.version for c in self.app_containers(containers)})

    def image_id(self, containers: list[ContainerInfo] | None = None) -> str | None:
        """The local image ID the app's containers run, when they agree."""
        return agreed({c.image_id for c in self.app_containers(containers)})

    def declared_images(self, version: str) -> dict[str, str]:
        """What compose.yml + this colour's overlay make each service's image for `version`."""
        import json

        rendered = json.loads(self._project.run(["config", "--format", "json"], self._env(version)))
        return {
            name: str(spec.get("image", ""))
            for name, spec in rendered.get("services", {}).items()
            if name in self.services
        }

    def retained(self, containers: list[ContainerInfo] | None = None) -> bool:
        """Stopped but kept: ready for an instant rollback (`resume`)."""
        found = self.containers() if containers is None else containers
        return (
            bool(found)
            and all(c.state in ("exited", "created") for c in found)
            and {c.service for c in found} >= set(self.services)
        )

    # -- what a deploy does to it ------------------------------------------------------------

    def _env(self, version: str | None) -> dict[str, str]:
        return {**self.config.compose_env(version), "WATCHER_COLOR": self.color.value}

    def start(self, version: str) -> None:
        """Create this colour's containers running `version` (the local image of its tag)."""
        self._project.run(["up", "-d", "--no-deps", "--pull", "never", *self.services], self._env(version))

    def resume(self) -> None:
        """Start the retained containers as they are: same IDs, same image (an instant rollback;
        `up` would recreate them when the tag now points at another image)."""
        self._project.run(["start", *self.services], self._env(None))

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then compose's stop_grace_period), keep for rollback."""
        self._project.run(["stop", *self.services], self._env(None))

    def remove(self) -> None:
        self._project.run(["down", "--remove-orphans"], self._env(None))


class SharedStack:
    """The shared services (caddy, redis) in the app's own compose project."""

    def __init__(self, config: Config, docker: Containers) -> None:
        self.config = config
        self.docker = docker
        self._project = ComposeProject(config.project(), config.project_dir, config.compose_files)

    def image(self, version: str) -> str:
        return f"{self.config.image}:{version}"

    def containers(self) -> list[ContainerInfo]:
        return [
            c
            for c in self.docker.of_project(self.config.project())
            if c.service in self.config.shared_services
        ]

    def pull(self, version: str, services: list[str] | None = None) -> None:
        """Pull every image of the version's colour services (or of `services`); a failure changes
        nothing that runs."""
        names = services if services is not None else [s.name for s in self.config.services]
        self._project.run(["pull", "--quiet", *names], self.config.compose_env(version))

    def ensure(self, version: str) -> None:
        """Start shared services that are not running; never recreate one."""
        if self.config.shared_services:
            self._project.run(
                ["up", "-d", "--no-recreate", *self.config.shared_services], self.config.compose_env(version)
            )
