"""Docker Swarm as a platform: a colour is a stack (`<project>-blue`, `-green`) deployed from the
app's compose files and colour overlay as `docker compose config` renders them (compose.py's
model), written as a stack file (stack_file.py), on the manager watcher runs on.

- Each colour service is `dnsrr` on the edge network the edge Caddy is on, where Caddy reaches
  its tasks as `tasks.<stack>_<service>` (caddyfile.py); its image is pinned by the digest the
  manager pulled (engine/pin.py), so every node runs the same bytes.
- `stop` scales the colour's services to 0 and keeps them: `resume` scales them back to the
  stack file's replicas (never `stack deploy` again: it would reset what it finds to the file).
- `remove` is `docker stack rm`, waited for: its networks go once its tasks have.
- Images: the manager's engine holds them (pulled there first, as on Compose), and an image's ID
  here is its *manifest digest*, the one name every node knows it by (SwarmImages).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from watcher.atomic import write_atomic
from watcher.backends.instance import Instance
from watcher.backends.registry import ImageRef, RegistryError
from watcher.backends.swarm import StackError, SwarmEngine, SwarmService, stack_command
from watcher.config import AppConfig
from watcher.errors import StateUnwritable
from watcher.platforms.base import agreed, of_image
from watcher.platforms.color import Color
from watcher.platforms.compose import ComposeColor
from watcher.platforms.health import Health, judge
from watcher.platforms.health_check import HealthCheckFailed
from watcher.platforms.stack_file import replicas, stack_file
from watcher.platforms.swarm_checks import refuse_for_swarm
from watcher.progress import Progress

log = logging.getLogger(__name__)

#: How long `remove` waits for `docker stack rm` to take the stack's networks too.
REMOVE_TIMEOUT = 60.0
#: How long `remove` waits for a scaled-down colour's tasks to stop before `docker stack rm`.
STOP_TIMEOUT = 30.0


class SwarmImages:
    """The manager's image store, with manifest digests as image IDs: a task's spec names its
    image by that digest, and a rollback finds it on every node by it."""

    def __init__(self, engine: SwarmEngine) -> None:
        self.engine = engine

    def _digest(self, ref: str) -> str | None:
        try:
            repository = ImageRef.parse(ref)
        except RegistryError:
            return None
        found = [d for d in self.engine.repo_digests(ref) if repository.names(d)]
        return found[0].rpartition("@")[2] if found else None

    def image_present(self, ref: str) -> bool:
        if ref.startswith("sha256:"):
            return any(self._digest(local) == ref for local in self._local_refs())
        return self.engine.image_present(ref)

    def image_id(self, ref: str) -> str | None:
        return self._digest(ref) if self.engine.image_present(ref) else None

    def tag(self, image_id: str, ref: str) -> None:
        """Point the tag at the image of that digest again (pulled by digest when it is not here)."""
        self.engine.pull_digest(ref, image_id)

    def repo_digests(self, ref: str) -> list[str]:
        return self.engine.repo_digests(ref)

    def pull_digest(self, ref: str, digest: str) -> None:
        self.engine.pull_digest(ref, digest)

    def images_of(self, repository: str) -> list[str]:
        return self.engine.images_of(repository)

    def remove_image(self, ref: str) -> bool:
        return self.engine.remove_image(ref)

    def _local_refs(self) -> list[str]:
        return [ref for image in self.engine.client.images.list() for ref in image.tags]


class SwarmColor:
    """One colour of the app: a swarm stack of its services."""

    def __init__(self, config: AppConfig, engine: SwarmEngine, images: SwarmImages, color: Color) -> None:
        self.config, self.engine, self.images, self.color = config, engine, images, color
        self.services = [s.name for s in config.services]
        self.model = ComposeColor(config, engine, color)  # renders the user's files
        self.stack_path = (config.state.dir / f"stack.{color.value}.watcher.json").absolute()

    @property
    def name(self) -> str:
        return self.config.project(self.color.value)

    def __str__(self) -> str:
        return self.color.value

    @property
    def following(self) -> set[str]:
        return self.model.following

    @property
    def one_shots(self) -> set[str]:
        return set()  # a one-shot has no place in a stack (swarm_checks.py refuses it)

    def one_shot_report(self) -> list[str]:
        return []

    def upstreams(self) -> list[str]:
        """Each running task's addresses with its service's port: Caddy lists a dynamic
        upstream by the address it resolved (`tasks.<stack>_<service>`)."""
        ports = {s.name: s.port for s in self.config.services if s.port is not None}
        return [
            f"{address}:{ports[i.service]}"
            for i in self.instances()
            if i.service in ports and i.running
            for address in i.addresses
        ]

    def instances(self) -> list[Instance]:
        return [i for i in self.engine.instances(self.name) if i.service in self.services]

    def health(self, instances: list[Instance] | None = None) -> Health:
        return judge(self.instances() if instances is None else instances, self.services)

    def version(self, instances: list[Instance] | None = None) -> str | None:
        found = self.instances() if instances is None else instances
        app = of_image(found, self.config.image)
        return agreed({i.version for i in app + [i for i in found if i.service in self.following]})

    def image_id(self, instances: list[Instance] | None = None) -> str | None:
        return agreed(
            {
                i.image_id
                for i in of_image(self.instances() if instances is None else instances, self.config.image)
            }
        )

    def retained(self, instances: list[Instance] | None = None) -> bool:
        found = self.instances() if instances is None else instances
        return (
            bool(found)
            and all(i.state == "exited" and i.name.endswith("(scaled to 0)") for i in found)
            and {i.service for i in found} >= set(self.services)
            and self.stack_path.is_file()
        )

    def wait_healthy(self, *, timeout: float, interval: float, progress: Progress) -> float:
        """Poll the tasks (at most every second): healthy when every service has its replicas
        running and healthy; a failed or rejected task, or one replaced since the wait began,
        ends the wait at once with Swarm's error for it."""
        started = time.monotonic()
        restarts = {i.id: i.restart_count for i in self.instances()}
        step = min(interval, 1.0)
        while True:
            found = self.instances()
            health = judge(found, self.services, restarts)
            elapsed = time.monotonic() - started
            if health.healthy:
                progress.say(f"  healthy: {len(found)} task(s) running on the swarm")
                return elapsed
            if health.failed:  # Swarm's own error first: a rejected task is "restarting" here
                errors = self.engine.task_errors(self.name)
                detail = f"{errors[0]} ({health.reason})" if errors else health.reason
                raise HealthCheckFailed(
                    f"{self.color} failed its health check after {elapsed:.0f}s: {detail}", "\n".join(errors)
                )
            if elapsed >= timeout:
                errors = self.engine.task_errors(self.name)
                raise HealthCheckFailed(
                    f"not healthy after {timeout:.0f}s (HEALTH_CHECK_TIMEOUT): {health.reason}",
                    "\n".join(errors),
                )
            progress.waiting(health.reason or "tasks to be created", elapsed, timeout)
            time.sleep(step)

    def env(self) -> dict[str, str]:
        """compose's environment (config/child_env.py: none of watcher's secrets)."""
        return self.model.env(None)

    def start(self, version: str) -> None:
        """`docker stack deploy` of the colour at `version`, images pinned by digest; first, what
        Swarm would silently break in the files (swarm_checks.py): a refusal deploys nothing."""
        model = self.model.model(version)
        nodes = len(self.engine.node_names()) or None
        for finding in refuse_for_swarm(self.config.name, model, self.services, nodes=nodes):
            log.warning("%s %s: %s", self.config.name, self.color.value, finding.message)
        declared = self.model.images(version, fresh=True)
        images = {}
        for name, (image, _) in declared.items():
            digest = self.images.image_id(image)
            images[name] = f"{image}@{digest}" if digest else image
        aliases = {
            s.name: (s.alias(self.config.name, self.color.value) if s.port is not None else None)
            for s in self.config.services
        }
        text = stack_file(model, aliases, images, edge_network=self.config.swarm.network)
        self._write(text)
        self.engine.ensure_network(self.config.swarm.network)
        stack_command(
            [
                "deploy",
                "--prune",
                "--resolve-image",
                "never",
                "--with-registry-auth",
                "-c",
                str(self.stack_path),
                self.name,
            ],
            self.env(),
            cwd=self.config.project_dir,
        )

    def resume(self) -> None:
        """Scale the retained services back to the stack file's replicas."""
        wanted = replicas(self.stack_path.read_text())
        for service in self._services():
            self.engine.scale(service, wanted.get(service.name, 1))

    def stop(self) -> None:
        """Scale to 0: Swarm stops each task gracefully (stop_grace_period); the services stay."""
        for service in self._services():
            if service.replicas:
                self.engine.scale(service, 0)

    def remove(self) -> None:
        """`docker stack rm`, waited for until its services and networks are gone. A colour with
        tasks is scaled to 0 first, and its tasks waited for (up to STOP_TIMEOUT): `stack rm`
        returns at once while its tasks' containers still stop, and until they have their
        addresses stay in `tasks.<stack>_<service>`, so the colour started again at once (a
        running leftover of an interrupted deploy) would have the edge dial dead addresses."""
        if any(s.replicas for s in self._services()):
            self.stop()
            deadline = time.monotonic() + STOP_TIMEOUT
            while (left := self.engine.live_tasks(self.name)) and time.monotonic() < deadline:
                time.sleep(0.5)
            if left:
                log.warning(
                    "%s: %d task(s) still stopping after %.0fs; removing it", self.name, left, STOP_TIMEOUT
                )
        if self._services() or self.engine.networks(self.name):
            stack_command(["rm", self.name], self.env(), cwd=self.config.project_dir)
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while self._services() or self.engine.networks(self.name):
            if time.monotonic() > deadline:
                raise StackError(f"docker stack rm {self.name}: still there after {REMOVE_TIMEOUT:.0f}s")
            time.sleep(0.5)
        self.stack_path.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """The stack's networks when it has no service: `stack deploy` creates networks, secrets
        and configs first, and one that failed creating a service leaves them (`stack rm` takes
        them all)."""
        if self._services():
            return []
        return [f"network {name}" for name in self.engine.networks(self.name)]

    def _services(self) -> list[SwarmService]:
        return [s for s in self.engine.services(self.name) if s.name in self.services]

    def _write(self, text: str) -> None:
        try:
            write_atomic(self.stack_path, text)
        except OSError as exc:
            raise StateUnwritable(
                f"cannot write {self.stack_path} ({exc.strerror or exc}): free the disk of the state "
                "directory; nothing was changed"
            ) from exc


class SwarmPlatform:
    """The app's colours as stacks on the swarm whose manager this Docker engine is."""

    def __init__(self, config: AppConfig, engine: SwarmEngine | None = None) -> None:
        self.config = config
        self.engine = engine or SwarmEngine()
        self.images = SwarmImages(self.engine)
        self.colors = {color: SwarmColor(config, self.engine, self.images, color) for color in Color}

    def color(self, color: Color) -> SwarmColor:
        return self.colors[color]

    def observe(self) -> dict[Color, list[Instance]]:
        return {color: stack.instances() for color, stack in self.colors.items()}

    def host_id(self) -> str:
        return f"swarm:{self.engine.cluster_id()}"

    def architecture(self) -> tuple[str, str]:
        return self.engine.platform()

    def declared_images(self, version: str) -> dict[str, tuple[str, bool]]:
        return self.colors[Color.BLUE].model.images(version, fresh=True)

    def pull(self, version: str, services: list[str] | None = None) -> None:
        """On the manager, through compose (as on Compose): the digest it pulls is the one the
        stack pins, and each node pulls it by that digest."""
        names = services if services is not None else [s.name for s in self.config.services]
        self.colors[Color.BLUE].model.pull(version, names)

    def ensure_shared(self, version: str) -> None:
        """The edge network; the edge Caddy and shared services are the operator's (README)."""
        self.engine.ensure_network(self.config.swarm.network)

    def answers(self) -> bool:
        return self.engine.answers()

    def proxy_log(self, since: float) -> list[str]:
        return self.engine.caddy_log(since)

    def proxy_containers(self, run_dir: Path) -> list[str]:
        return self.engine.mounting(str(run_dir))
