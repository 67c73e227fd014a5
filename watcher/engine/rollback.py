"""The rollback target: the previous release, named only when it can really be rolled back to.

Instant: its colour's containers are retained (stopped, same version and image) and are started
again as they are. Full: its image is still on this host and a deploy recreates the colour from
it. A tag can move (the `digest` policy follows one mutable tag), so the target is an *image*:
rolling back to an earlier digest of the live tag points the local tag at that image again.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.engine.reconcile import View
from watcher.engine.state import Release
from watcher.errors import UsageError
from watcher.platforms.base import Platform
from watcher.platforms.color import Color


@dataclass(frozen=True)
class RollbackTarget:
    release: Release
    way: str  # "instant" (retained containers) or "full" (image present locally)
    image: str | None  # the local image ID to run (None: whatever the tag points at locally)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "version": self.release.version,
            "color": self.release.color.value,
            "way": self.way,
            "digest": self.release.digest,
            "image": self.image,
            "how": self.release.how,
            "unverified": self.release.unverified,
        }

    def describe(self) -> str:
        how = (
            f"instant: retained on {self.release.color}"
            if self.way == "instant"
            else "full: its image is on this host"
        )
        unverified = "; unverified: it never passed verification" if self.release.unverified else ""
        return f"{self.release.version} ({how}{unverified})"


def rollback_target(view: View, platform: Platform, repository: str) -> RollbackTarget | None:
    """The previous release if it can be rolled back to, else None."""
    previous = recorded_target(view)
    return None if previous is None else _reachable(previous, view, platform, repository)


def recorded_target(view: View) -> Release | None:
    """The release a rollback returns to, as recorded, whether or not it can be reached right now:
    a Docker engine restart leaves its containers exited, created or restarting for a while."""
    previous = view.previous
    if previous is None or _is_live(view.live, previous.version, previous.image):
        return None
    return previous


def holds(view: View, release: Release) -> bool:
    """True when the release's colour holds its containers (in any state): its version and,
    when recorded, its image; not a later deploy's leftovers on that colour."""
    observed = view.observed
    image = observed.image_id(release.color)
    return (
        bool(observed.of(release.color))
        and observed.version(release.color) == release.version
        and (release.image is None or image in (None, release.image))
    )


def choose(view: View, platform: Platform, repository: str, to: str | None) -> RollbackTarget:
    """What `rollback [--to VERSION]` deploys; UsageError when there is nothing to go back to, or
    when the previous release never passed verification and is not named (`--to`)."""
    previous = view.previous
    if to is None:
        if previous is None:
            raise UsageError(
                "nothing to roll back to: no previous version is recorded "
                "(use `watcher rollback --to VERSION`)"
            )
        if previous.unverified:
            raise UsageError(
                f"the rollback target {previous.version} never passed verification (it was "
                f"{previous.how} on {previous.color}): nothing was changed; roll back to it by "
                f"name, `watcher rollback --to {previous.version}`, or deploy another version"
            )
        to = previous.version
    idle = view.route.other if view.route else Color.BLUE
    release = previous if previous is not None and previous.version == to else Release(idle, to, "")
    if _is_live(view.live, to, release.image):
        raise UsageError(
            f"{to} is already live on {view.live.color if view.live else '?'}"
            + (" (and its earlier image is no longer recorded)" if release is previous else "")
        )
    found = _reachable(release, view, platform, repository)
    if found is not None:
        return found
    if release.image and _is_live(view.live, to, None):
        raise UsageError(
            f"the earlier image of {to} ({release.image[:19]}) is no longer on this host: "
            "nothing to roll back to"
        )
    # Not on this host: a full deploy of the tag, pulled from the registry.
    return RollbackTarget(release, "full", None)


def _is_live(live: Release | None, version: str, image: str | None) -> bool:
    return live is not None and live.version == version and (image is None or live.image in (None, image))


def _reachable(release: Release, view: View, platform: Platform, repository: str) -> RollbackTarget | None:
    stack, images = platform.color(release.color), platform.images
    containers = view.observed.of(release.color)
    if (
        release.color != view.route
        and stack.retained(containers)
        and stack.version(containers) == release.version
        and (release.image is None or stack.image_id(containers) == release.image)
    ):
        return RollbackTarget(release, "instant", stack.image_id(containers))
    if release.image and images.image_present(release.image):
        return RollbackTarget(release, "full", release.image)
    if release.image is None and images.image_present(f"{repository}:{release.version}"):
        return RollbackTarget(release, "full", None)
    return None
