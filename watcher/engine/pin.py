"""The pull phase: the digest a deploy runs is the one its job was queued at, checked for this
host before any pull.

A tag can move between the enqueue and the pull (a re-push of `1.4`, a new `latest`). Deploying
whatever the tag points at by then would swap in an image nobody asked for, under the old job's
name. So the deploy runs the queued digest, and the move is reported (`Pin.moved`) for the
worker to queue as a new job: the engine knows nothing of queues. With no queued digest (a deploy
from the CLI), the tag's digest at the time of the check is the pin.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.backends.compose import ComposeError
from watcher.backends.manifests import ImagePlatform, platforms
from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError
from watcher.config import AppConfig
from watcher.engine.arch import host_platform, missing
from watcher.engine.run import Run
from watcher.errors import DeployFailed, PullFailed
from watcher.platforms.base import Platform
from watcher.progress import Progress


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


def check_images(config: AppConfig, platform: Platform, version: str) -> dict[str, str]:
    """Refuse compose files that would not run `app.image:<version>`: a service that follows
    the version must run the app's repository (a hard-coded repository that differs from the
    config would deploy, and verify, the wrong thing); the other services that follow it are
    its companions on images of their own. Returns each service's image for `version`."""
    declared = platform.declared_images(version)
    app = f"{config.image}:{version}"
    versioned = {name: image for name, (image, follows) in declared.items() if follows}
    if not versioned:
        raise DeployFailed(
            f"no service of {', '.join(config.compose_files)} takes its image tag from "
            f"${{{config.version_env}}}: give the app's services "
            f"image: ${{APP_IMAGE}}:${{{config.version_env}}}"
        )
    if app not in versioned.values():
        name, image = next(iter(versioned.items()))
        raise DeployFailed(
            f"service {name}: its image resolves to {image}, not the app's {app}: use "
            f"image: ${{APP_IMAGE}}:${{{config.version_env}}} (watcher sets APP_IMAGE to {config.image})"
        )
    return {name: image for name, (image, _) in declared.items()}


class Puller:
    """Pull `run.version` at the digest it was queued at (or the tag's, when none was), checked
    for the platform's architecture first; `run.digest` says what was pulled (None: the local
    image is used), `run.moved` where the tag went meanwhile."""

    def __init__(
        self, config: AppConfig, platform: Platform, registry: RegistryClient | None, progress: Progress
    ) -> None:
        self.config, self.platform, self.registry, self.progress = config, platform, registry, progress

    def pull(self, run: Run, declared: dict[str, str], *, prefer_local: bool, queued: str | None) -> None:
        image, images = f"{self.config.image}:{run.version}", self.platform.images
        if prefer_local and images.image_present(image):
            self.progress.say(f"  {image} is present locally; not pulling it")
            self._pull_missing(run.version, declared)
            return
        ref = ImageRef.parse(self.config.image)
        credentials = self.config.registry
        registry = self.registry or RegistryClient(
            username=credentials.username,
            password=credentials.password,
            token_hosts=credentials.token_hosts,
            plain_http=credentials.plain_http,
        )
        try:
            chosen = resolve(registry, ref, run.version, queued, image)
            run.moved = chosen.moved
            check(registry, ref, chosen, host_platform(*self.platform.architecture()), image)
        finally:
            if self.registry is None:
                registry.close()
        run.digest = chosen.digest
        if chosen.moved:
            self.progress.say(
                f"  {image} was queued at {chosen.digest}, but the tag has moved to {chosen.moved} since: "
                "deploying the queued digest; the new one is a job of its own"
            )
        else:
            self.progress.say(f"  {image} is {chosen.digest}")
        try:
            if chosen.moved is None:
                self.platform.pull(run.version)
            elif sidecars := [name for name, declared_image in declared.items() if declared_image != image]:
                self.platform.pull(run.version, sidecars)  # their own images, pulled by tag
            self._hold(image, ref, chosen.digest)
        except (ComposeError, PullFailed) as exc:
            raise DeployFailed(f"pull failed, nothing was changed: {exc}") from None

    def _pull_missing(self, version: str, declared: dict[str, str]) -> None:
        """The services' images that are not here (a companion at the version), by tag."""
        missing = [name for name, ref in declared.items() if not self.platform.images.image_present(ref)]
        if missing:
            try:
                self.platform.pull(version, missing)
            except (ComposeError, PullFailed) as exc:
                raise DeployFailed(f"pull failed, nothing was changed: {exc}") from None

    def _hold(self, image: str, ref: ImageRef, digest: str) -> None:
        """The local `image` must be the pinned `digest`: if the pull brought another (the tag
        moved during it) or none, pull the digest and point the tag at it. What Docker pulled is
        not reported as a move: only the registry's answer to the check is (a registry whose
        digests Docker records otherwise would make each job queue the next)."""
        images = self.platform.images
        pulled = [d.rpartition("@")[2] for d in images.repo_digests(image) if ref.names(d)]
        if digest in pulled:
            return
        self.progress.say(
            f"  the pull brought {', '.join(pulled) or 'no image of the checked digest'} (the tag "
            f"moved during it?): pulling {digest} itself"
        )
        images.pull_digest(image, digest)
        if digest not in [d.rpartition("@")[2] for d in images.repo_digests(image) if ref.names(d)]:
            raise PullFailed(f"{image} does not carry {digest} after pulling it")
