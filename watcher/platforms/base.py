"""The seam between the deploy flow and what runs an app's colours (docs/platforms.md).

The flow (engine/deployment.py) decides what moves when; a `Platform` says what a colour is and
does what the flow asks of it: start, stop, remove, inspect and judge a colour, pull and keep
images. `ComposePlatform` (compose.py) is the first: a colour is a compose project. A platform
reports each colour as `Instance`s (a container, a task) and judges them with platforms/health.py,
so `status`, the health wait and the switch read every platform the same way.

What the flow guarantees on top (never stops the live colour, switches only to a healthy one,
unwinds on any failure) holds whatever the platform, provided it keeps the contracts below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from watcher.backends.instance import Instance
from watcher.platforms.color import Color
from watcher.platforms.health import Health
from watcher.progress import Progress


def of_image(containers: list[Instance], repository: str) -> list[Instance]:
    """The containers that run `repository` (an app's image; sidecars run others)."""
    return [c for c in containers if c.repository == repository]


def agreed(values: set[str]) -> str | None:
    """The one value all containers agree on (a version, an image ID), else None."""
    return values.pop() if len(values) == 1 else None


class ColorStack(Protocol):
    """One colour of the app (a compose project, a swarm stack): everything the flow asks of it
    or does to it. The `instances` arguments let one look at the platform serve several
    judgements; without them each method looks again."""

    color: Color

    @property
    def name(self) -> str:
        """What the platform calls this colour (`shop-green`): in messages and leftovers."""
        ...

    @property
    def following(self) -> set[str]:
        """The services whose image's tag is the app's version (the app's, its companions')."""
        ...

    @property
    def one_shots(self) -> set[str]:
        """The services that run to completion once per start: exited 0 is done, not down."""
        ...

    def one_shot_report(self) -> list[str]:
        """What the one-shots of the last start did (exit code, last log lines): for the output."""
        ...

    def upstreams(self) -> list[str]:
        """Caddy's upstream addresses of this colour, whose in-flight counts a drain watches."""
        ...

    def instances(self) -> list[Instance]: ...

    def health(self, instances: list[Instance] | None = None) -> Health: ...

    def version(self, instances: list[Instance] | None = None) -> str | None:
        """The tag the app's instances run, when they agree (None: none, or they differ)."""
        ...

    def image_id(self, instances: list[Instance] | None = None) -> str | None:
        """The local image ID the app's instances run, when they agree."""
        ...

    def retained(self, instances: list[Instance] | None = None) -> bool:
        """Stopped but kept: `resume` brings it back as it was (an instant rollback)."""
        ...

    def start(self, version: str) -> None:
        """Run `version` (the local image of its tag) on this colour; never touches the other."""
        ...

    def resume(self) -> None:
        """Start the retained instances as they are (same image, no recreation)."""
        ...

    def stop(self) -> None:
        """Stop gracefully and keep for a rollback (Swarm: scale to 0)."""
        ...

    def remove(self) -> None: ...

    def leftovers(self) -> list[str]:
        """What of the colour exists without an instance, which `cleanup` removes: Swarm's
        networks of a `stack deploy` that failed before its services were created."""
        ...

    def wait_healthy(self, *, timeout: float, interval: float, progress: Progress) -> float:
        """Wait until `health()` is healthy; raise HealthCheckFailed at once when waiting cannot
        help, or after `timeout`. Returns the seconds it took."""
        ...


class Images(Protocol):
    """The image store the colours run from (the Docker engine's)."""

    def image_present(self, ref: str) -> bool: ...

    def image_id(self, ref: str) -> str | None: ...

    def tag(self, image_id: str, ref: str) -> None:
        """Point the tag `ref` at `image_id` (a rollback to an earlier digest of one tag)."""
        ...

    def repo_digests(self, ref: str) -> list[str]:
        """The registry digests the local `ref` was pulled at (`repo@sha256:...`)."""
        ...

    def pull_digest(self, ref: str, digest: str) -> None:
        """Pull `ref`'s repository at `digest` and point the tag `ref` at it."""
        ...

    def images_of(self, repository: str) -> list[str]: ...

    def remove_image(self, ref: str) -> bool: ...


class Platform(Protocol):
    """What runs one app's two colours and its shared services."""

    images: Images

    def color(self, color: Color) -> ColorStack: ...

    def observe(self) -> dict[Color, list[Instance]]:
        """Both colours' instances, in one look."""
        ...

    def host_id(self) -> str:
        """Which host (or cluster) the colours live on: a recorded state is only valid there."""
        ...

    def architecture(self) -> tuple[str, str]:
        """The OS and architecture images must be built for (`linux`, `x86_64`)."""
        ...

    def declared_images(self, version: str) -> dict[str, tuple[str, bool]]:
        """Each colour service's image for `version`, and whether it follows the version."""
        ...

    def pull(self, version: str, services: list[str] | None = None) -> None:
        """Pull the images of the colour services (or of `services`) for `version`."""
        ...

    def ensure_shared(self, version: str) -> None:
        """Start the shared services (Caddy...) that are not running; never recreate one."""
        ...

    def answers(self) -> bool:
        """Whether the platform answers a new connection now (an abort waits for a restart)."""
        ...

    def proxy_log(self, since: float) -> list[str]:
        """Caddy's log lines since `since` (epoch seconds): best effort, [] when unreadable."""
        ...

    def proxy_containers(self, run_dir: Path) -> list[str]:
        """`name: status` of the Caddy containers that read `run_dir` (the route files): what
        `status` names when Caddy is down. Best effort, [] when unknown."""
        ...
