"""Docker Compose as a platform: a colour is a compose project (`<project>-blue`, `-green`) made of
the app's compose files plus that colour's overlay; the shared services (caddy, redis) are the
app's own project, started if missing, never recreated by a deploy.

A colour's *version* and *image* are those of its containers that run the app's image
(`app.image`); a sidecar on another image is listed with the colour but never makes its version
unknown.
"""

from __future__ import annotations

import json

from watcher.backends.compose import ComposeProject
from watcher.backends.containers import Containers
from watcher.backends.instance import Instance
from watcher.config import AppConfig
from watcher.platforms.base import agreed, of_image
from watcher.platforms.color import Color
from watcher.platforms.health import Health, judge
from watcher.platforms.health_check import wait_until_healthy
from watcher.platforms.http_health import HttpHealth
from watcher.progress import Progress

#: The version a compose file is rendered with to tell which services follow the version.
PROBE = "watcher-probe"


class ComposeColor:
    """One colour of the app's stateless services: a compose project."""

    def __init__(self, config: AppConfig, docker: Containers, color: Color) -> None:
        self.config = config
        self.docker = docker
        self.color = color
        self.services = [s.name for s in config.services]
        self.http = HttpHealth(config.services)
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

    def upstreams(self) -> list[str]:
        """The services' network aliases with their ports (services without a port are not Caddy's)."""
        return [
            s.upstream(self.config.name, self.color.value) for s in self.config.services if s.port is not None
        ]

    # -- what Docker says ----------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """This colour's containers of the configured services."""
        return self.of(self.docker.of_project(self.name))

    def of(self, containers: list[Instance]) -> list[Instance]:
        """The colour's containers among `containers`, health by HTTP where a service declares it."""
        return self.http.judged([c for c in containers if c.service in self.services])

    def _app(self, instances: list[Instance] | None) -> list[Instance]:
        return of_image(self.instances() if instances is None else instances, self.config.image)

    def health(self, instances: list[Instance] | None = None) -> Health:
        return judge(self.instances() if instances is None else instances, self.services)

    def version(self, instances: list[Instance] | None = None) -> str | None:
        return agreed({c.version for c in self._app(instances)})

    def image_id(self, instances: list[Instance] | None = None) -> str | None:
        return agreed({c.image_id for c in self._app(instances)})

    def retained(self, instances: list[Instance] | None = None) -> bool:
        found = self.instances() if instances is None else instances
        return (
            bool(found)
            and all(c.state in ("exited", "created") for c in found)
            and {c.service for c in found} >= set(self.services)
        )

    def wait_healthy(self, *, timeout: float, interval: float, progress: Progress) -> float:
        interval = self.http.wait_interval(interval)
        return wait_until_healthy(self, timeout=timeout, interval=interval, progress=progress)

    # -- what a deploy does to it ------------------------------------------------------------

    def env(self, version: str | None) -> dict[str, str]:
        return {**self.config.compose_env(version), "WATCHER_COLOR": self.color.value}

    def render(self, version: str) -> dict[str, str]:
        """What the compose files and this colour's overlay make each service's image for `version`."""
        rendered = json.loads(self._project.run(["config", "--format", "json"], self.env(version)))
        return {
            name: str(spec.get("image", ""))
            for name, spec in rendered.get("services", {}).items()
            if name in self.services
        }

    def start(self, version: str) -> None:
        """Create this colour's containers running `version` (the local image of its tag)."""
        self._project.run(["up", "-d", "--no-deps", "--pull", "never", *self.services], self.env(version))

    def resume(self) -> None:
        """`up` would recreate the containers when the tag now points at another image: `start`."""
        self._project.run(["start", *self.services], self.env(None))

    def stop(self) -> None:
        """SIGTERM, then compose's stop_grace_period; the containers are kept for a rollback."""
        self._project.run(["stop", *self.services], self.env(None))

    def remove(self) -> None:
        self._project.run(["down", "--remove-orphans"], self.env(None))


class ComposePlatform:
    """The app's colours as compose projects and its shared services, on one Docker engine."""

    def __init__(self, config: AppConfig, docker: Containers | None = None) -> None:
        self.config = config
        self.docker = docker or Containers()
        self.images = self.docker
        self.colors = {color: ComposeColor(config, self.docker, color) for color in Color}
        self._shared = ComposeProject(config.project(), config.project_dir, config.compose_files)

    def color(self, color: Color) -> ComposeColor:
        return self.colors[color]

    def observe(self) -> dict[Color, list[Instance]]:
        found = self.docker.of_projects([stack.name for stack in self.colors.values()])
        return {color: stack.of(found[stack.name]) for color, stack in self.colors.items()}

    def host_id(self) -> str:
        return self.docker.engine_id()

    def architecture(self) -> tuple[str, str]:
        return self.docker.platform()

    def declared_images(self, version: str) -> dict[str, tuple[str, bool]]:
        """One `compose config`, at a probe version: a service whose image carries the probe
        follows the version (its image for `version` is the probe's, with `version` in its place)."""
        probe = f"{version}-{PROBE}"
        return {
            name: (image.replace(probe, version), probe in image)
            for name, image in self.colors[Color.BLUE].render(probe).items()
        }

    def pull(self, version: str, services: list[str] | None = None) -> None:
        """A failure changes nothing that runs."""
        names = services if services is not None else [s.name for s in self.config.services]
        self._shared.run(["pull", "--quiet", *names], self.config.compose_env(version))

    def ensure_shared(self, version: str) -> None:
        if self.config.shared_services:
            self._shared.run(
                ["up", "-d", "--no-recreate", *self.config.shared_services], self.config.compose_env(version)
            )

    def answers(self) -> bool:
        return self.docker.answers()

    def proxy_log(self, since: float) -> list[str]:
        return self.docker.caddy_log(since)
