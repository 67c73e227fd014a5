"""What a platform runs of a colour: an instance of a service (a container, a task), as the
engine and `status` read it whatever the platform. Kept apart from the Docker backend so that
reading it needs no Docker SDK."""

from __future__ import annotations

from dataclasses import dataclass

#: How long a container without any healthcheck must have stayed up to count as ready: an app
#: that dies of its config a moment after start must not be judged healthy, and traffic moved, on
#: the look that caught it running.
SETTLE = 2.0


def repository(image: str) -> str:
    """An image reference without its tag or digest (`ghcr.io/acme/app:1.2` -> `ghcr.io/acme/app`)."""
    head, _, last = image.rpartition("/")
    name = last.split(":", 1)[0].split("@", 1)[0]
    return f"{head}/{name}" if head else name


@dataclass(frozen=True)
class Instance:
    """One running copy of a service of a colour: a container (Compose) or a task (Swarm)."""

    id: str
    name: str
    service: str
    image: str
    image_id: str
    state: str  # running, exited, created, restarting, dead, paused
    health: str | None  # healthy, unhealthy, starting; None without a healthcheck
    exit_code: int
    restart_count: int = 0  # restarts by Docker's restart policy since the container was started
    addresses: tuple[str, ...] = ()  # its IP addresses, one per network it is on
    up_for: float | None = None  # seconds since it (re)started, when it was looked at
    probe: str = ""  # what watcher's own HTTP GET saw, when it judges the health (http_health.py)
    node: str = ""  # the swarm node a task runs on ("": one engine, Compose)

    @property
    def repository(self) -> str:
        return repository(self.image)

    @property
    def version(self) -> str:
        """The tag of the image reference the container was created from."""
        last = self.image.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ready(self) -> bool:
        """Running and healthy, or, without a healthcheck to say so, up for SETTLE seconds."""
        if self.health is None:
            return self.running and (self.up_for is None or self.up_for >= SETTLE)
        return self.running and self.health == "healthy"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "service": self.service,
            "state": self.state,
            "health": self.health,
            "version": self.version,
            "image": self.image,
            "id": self.id[:12],
            "restarts": self.restart_count,
            "probe": self.probe or None,
            "exit_code": self.exit_code,
            "node": self.node or None,
        }
