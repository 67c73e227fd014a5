"""Docker Compose as a platform: a colour is a compose project (`<project>-blue`, `-green`) made of
the app's compose files plus that colour's overlay; the shared services (caddy, redis) are the
app's own project, started if missing, never recreated by a deploy.

Each use of a colour writes watcher's own overlay after the user's files (colour_model.py): the
colour project runs its own services only, on a network of its own, its dependencies on the shared
project dropped, and the services that follow the app's version at that version.

A colour's *version* is the tag its version-following containers agree on (the app's image and
its companions; a one-shot too); its *image* is the app image's ID. A sidecar on an image of its
own is listed with the colour but never makes its version unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

from watcher.atomic import write_atomic
from watcher.backends.compose import ComposeError, ComposeProject
from watcher.backends.containers import Containers
from watcher.backends.instance import Instance, repository
from watcher.config import AppConfig
from watcher.errors import StateUnwritable
from watcher.platforms.base import agreed, of_image
from watcher.platforms.color import Color
from watcher.platforms.colour_model import ColourModel, one_shots
from watcher.platforms.health import Health, judge
from watcher.platforms.health_check import wait_until_healthy
from watcher.platforms.http_health import HttpHealth
from watcher.progress import Progress

#: The version a compose file is rendered with to tell which services follow the version.
PROBE = "watcher-probe"
#: A one-shot's last log lines shown in the deploy's output.
ONE_SHOT_TAIL = 10


class ComposeColor:
    """One colour of the app's stateless services: a compose project."""

    def __init__(self, config: AppConfig, docker: Containers, color: Color) -> None:
        self.config = config
        self.docker = docker
        self.color = color
        self.services = [s.name for s in config.services]
        self.http = HttpHealth(config.services)
        self.generated = (config.state.dir / f"compose.{color.value}.watcher.yml").absolute()
        # Every profile: app services may sit behind one (so a plain `docker compose up` skips
        # them), and `down` must see them to remove them.
        files = config.compose_files + (config.overlay(color.value),)
        self._user = ComposeProject(config.project(color.value), config.project_dir, files, ("*",))
        self._project = ComposeProject(
            self._user.name, config.project_dir, files + (str(self.generated),), ("*",)
        )
        self._probed: dict | None = None

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

    @property
    def following(self) -> set[str]:
        """The services whose image's tag is the app's version (declared, else detected)."""
        return self._read_roles()[0]

    @property
    def one_shots(self) -> set[str]:
        """The services that run to completion once per deploy (declared, else detected)."""
        return self._read_roles()[1]

    def health(self, instances: list[Instance] | None = None) -> Health:
        return judge(
            self.instances() if instances is None else instances, self.services, one_shots=self.one_shots
        )

    def version(self, instances: list[Instance] | None = None) -> str | None:
        found = self.instances() if instances is None else instances
        return agreed(
            {c.version for c in self._app(found) + [c for c in found if c.service in self.following]}
        )

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

    def model(self, version: str) -> dict:
        """The user's compose files and colour overlay as compose renders them for `version`."""
        return json.loads(self._user.run(["config", "--format", "json"], self.env(version)))

    def probed(self, *, fresh: bool = False) -> dict:
        """The files rendered at the probe version, read once (`fresh`: read again). A service
        whose image carries the probe follows the version."""
        if self._probed is None or fresh:
            self._probed = self.model(PROBE)
        return self._probed

    def _read_roles(self) -> tuple[set[str], set[str]]:
        """Declared roles, else detected in the files; only what is declared when the files do
        not render (`status` still answers, and a deploy fails on them anyway)."""
        try:
            model = self.probed()
        except ComposeError:
            return self._declared("follows_version"), self._declared("one_shot")
        declared = {s.name: s.follows_version for s in self.config.services}
        following = {
            name
            for name in self.services
            if (PROBE in _image(model, name) if declared[name] is None else declared[name])
        }
        return following, one_shots(model, self.services, {s.name: s.one_shot for s in self.config.services})

    def _declared(self, role: str) -> set[str]:
        return {s.name for s in self.config.services if getattr(s, role)}

    def images(self, version: str, *, fresh: bool = False) -> dict[str, tuple[str, bool]]:
        """Each service's image for `version`, and whether it follows the version (a following
        service runs its repository at `version`, as watcher's overlay sets it)."""
        model = self.probed(fresh=fresh)
        following = self.following
        return {
            name: (f"{repository(_image(model, name))}:{version}", True)
            if name in following
            else (_image(model, name).replace(PROBE, version), False)
            for name in self.services
            if name in model.get("services", {})
        }

    def _write_overlay(self, version: str | None, ran: set[str] | frozenset[str] = frozenset()) -> None:
        """watcher's overlay of this colour, written afresh for each use (the user's files may
        have changed since); `version` sets the images of the services that follow it; `ran`:
        one-shots that already ran, which nothing waits for."""
        declared = self.images(version or PROBE, fresh=True)
        images = {name: image for name, (image, follows) in declared.items() if follows and version}
        text = ColourModel(self._probed or {}, tuple(self.services), self.name).overlay(images, ran)
        try:
            write_atomic(self.generated, text)
        except OSError as exc:
            raise StateUnwritable(
                f"cannot write {self.generated} ({exc.strerror or exc}): free the disk of the state "
                "directory; nothing was changed"
            ) from exc

    def start(self, version: str) -> None:
        """Create this colour's containers running `version` (the local image of its tag); its
        one-shots run to completion first (compose waits for them); a failed one says how."""
        self._write_overlay(version)
        try:
            self._project.run(["up", "-d", "--no-deps", "--pull", "never", *self.services], self.env(version))
        except ComposeError as exc:
            raise ComposeError("; ".join([str(exc), *self.one_shot_report()])) from None

    def pull(self, version: str, services: list[str]) -> None:
        self._write_overlay(version)
        self._project.run(["pull", "--quiet", *services], self.env(version))

    def one_shot_report(self) -> list[str]:
        """Each one-shot container's exit code and last log lines (the deploy's output)."""
        lines = []
        for c in self.instances():
            if c.service in self.one_shots and c.state in ("exited", "dead"):
                log = self.docker.logs(c.id, tail=ONE_SHOT_TAIL)
                lines.append(f"one-shot {c.name} exited {c.exit_code}" + (":" if log else ""))
                lines += [f"  | {line}" for line in log.splitlines()]
        return lines

    def resume(self) -> None:
        """`up` would recreate the containers when the tag now points at another image: `start`.
        The one-shots ran when this colour was deployed: an instant rollback does not run an old
        migration again over a newer schema; nothing waits for them this time."""
        ran = self.one_shots
        self._write_overlay(None, ran)
        self._project.run(["start", *[s for s in self.services if s not in ran]], self.env(None))

    def stop(self) -> None:
        """SIGTERM, then compose's stop_grace_period; the containers are kept for a rollback."""
        self._write_overlay(None)
        self._project.run(["stop", *self.services], self.env(None))

    def remove(self) -> None:
        """The colour's containers, its network and the volumes it created for itself (never a
        shared or external one: not `down -v`, which removes any volume the project declares);
        watcher's overlay of it goes last."""
        self._write_overlay(None)
        self._project.run(["down", "--remove-orphans"], self.env(None))
        for volume in ColourModel(self._probed or {}, tuple(self.services), self.name).own_volumes:
            self.docker.remove_volume(volume)
        self.generated.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """None: a network a failed `up` left is the next `up`'s, and removing a colour without
        containers would take the volumes it created for itself."""
        return []


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
        """One `compose config`, at a probe version (colour_model.py)."""
        return self.colors[Color.BLUE].images(version, fresh=True)

    def pull(self, version: str, services: list[str] | None = None) -> None:
        """Through a colour's project and watcher's overlay, so that a service following the
        version through a variable of its own is pulled at `version` too. A failure changes
        nothing that runs."""
        names = services if services is not None else [s.name for s in self.config.services]
        self.colors[Color.BLUE].pull(version, names)

    def ensure_shared(self, version: str) -> None:
        if self.config.shared_services:
            self._shared.run(
                ["up", "-d", "--no-recreate", *self.config.shared_services], self.config.compose_env(version)
            )

    def answers(self) -> bool:
        return self.docker.answers()

    def proxy_log(self, since: float) -> list[str]:
        return self.docker.caddy_log(since)

    def proxy_containers(self, run_dir: Path) -> list[str]:
        return self.docker.mounting(str(run_dir))


def _image(model: dict, service: str) -> str:
    return str(((model.get("services") or {}).get(service) or {}).get("image", ""))
