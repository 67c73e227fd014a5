"""The digest a deploy runs: the one its job was queued at, checked for this host before any pull.

A tag can move between the enqueue and the pull (a re-push of `1.4`, a new `latest`). Deploying
whatever the tag points at by then would swap in an image nobody asked for, under the old job's
name. So the deploy runs the queued digest, and the move is reported (`Pin.moved`) for the
worker to queue as a new job: the engine knows nothing of queues. With no queued digest (a deploy
from the CLI), the tag's digest at the time of the check is the pin.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.backends.manifests import ImagePlatform, platforms
from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError
from watcher.engine.arch import missing
from watcher.errors import DeployFailed


@dataclass(frozen=True)
class Pin:
    """What to pull: `digest`; `current` is what the tag points at now."""

    digest: str
    current: str

    @property
    def moved(self) -> str | None:
        """The tag's new digest when it moved away from the queued one."""
        return self.current if self.current != self.digest else None


def resolve(registry: RegistryClient, ref: ImageRef, tag: str, queued: str | None, image: str) -> Pin:
    """What `image` (`ref`:`tag`) points at now, and the digest to deploy of it."""
    try:
        current = registry.manifest_digest(ref, tag)
    except NotFound:
        raise DeployFailed(f"{image} does not exist in the registry; nothing was changed") from None
    except RegistryError as exc:
        raise DeployFailed(f"cannot check {image} in the registry: {exc}; nothing was changed") from None
    return Pin(queued or current, current)


def check(registry: RegistryClient, ref: ImageRef, chosen: Pin, host: ImagePlatform, image: str) -> None:
    """The pinned digest must still exist and have an image for `host`; DeployFailed, with
    nothing pulled, when it does not."""
    try:
        manifest = registry.manifest(ref, chosen.digest)
        available = platforms(manifest, lambda digest: registry.blob(ref, digest))
    except NotFound:
        raise DeployFailed(
            f"{image} was queued at {chosen.digest}, which the registry no longer has (the tag "
            f"now points at {chosen.current}); nothing was changed"
        ) from None
    except RegistryError as exc:
        raise DeployFailed(
            f"cannot read the manifest of {image}@{chosen.digest}: {exc}; nothing was changed"
        ) from None
    refusal = missing(image, available, host)
    if refusal is not None:
        raise DeployFailed(f"{refusal}; nothing was changed")
