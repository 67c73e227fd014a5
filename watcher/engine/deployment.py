"""The blue-green deploy flow, phase by phase. Read `Deployment.deploy` top to bottom.

    pull -> inspect -> pre-deploy hook -> start idle colour -> health -> smoke -> [guard] SWITCH
         -> verify (window, and the bake) -> record -> drain old -> stop old -> receipt

The live colour is the route file's (reconcile.py); the target is always the other colour, and
nothing here ever stops, removes or recreates the live colour's containers. Every move of traffic
goes through `TrafficSwitch.move_to`, which refuses a colour that is not healthy at that moment.

Until the state is recorded, any failure or interrupt runs `_abort`: traffic goes back to the
colour that was live if it is still healthy; if it is not, a healthy new colour is left serving
(and recorded), never removed; if neither is healthy, nothing is touched. Once the new version is
recorded live, nothing switches back: an interrupt leaves both colours running, which is safe.

The bake (bake.py) judges the new colour's answers during the verification window: a version
that fails more than the old one did goes back through `_abort` like any failed verification.
Every run that moved traffic or unwound ends with a traffic receipt (receipt.py, `self.receipt`):
what Caddy served on each colour, read from its access log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

from watcher.backends.access_log import AccessLog
from watcher.backends.caddy import CaddyAdmin
from watcher.backends.compose import ComposeError
from watcher.backends.containers import Containers, PullFailed
from watcher.backends.registry import ImageRef, RegistryClient, RegistryError
from watcher.config import Config
from watcher.config.smoke import PREVIEW_HEADER
from watcher.engine import pin
from watcher.engine import receipt as receipts
from watcher.engine.arch import host_platform
from watcher.engine.bake import Bake
from watcher.engine.color import Color
from watcher.engine.drain import wait_drained
from watcher.engine.health_check import HealthCheckFailed, wait_until_healthy
from watcher.engine.hooks import run_hook
from watcher.engine.progress import Progress
from watcher.engine.promotion import AWAITING, awaiting, deadline, expired, keep_preview
from watcher.engine.promotion import describe as describe_wait
from watcher.engine.receipt import Receipt
from watcher.engine.reconcile import Observed, View, reconcile
from watcher.engine.rollback import RollbackTarget, choose, rollback_target
from watcher.engine.smoke import clear_preview, run_smoke
from watcher.engine.stack import ColorStack, SharedStack
from watcher.engine.state import DeployState, Pending, Prepared, Release, StateStore
from watcher.engine.switch import TargetNotHealthy, TrafficSwitch
from watcher.engine.verification import COLOR_HEADER, answer, wait_for_version
from watcher.errors import (
    DeployFailed,
    DockerUnavailable,
    GuardLost,
    StateUnwritable,
    UsageError,
    WatcherError,
)
from watcher.interrupts import shielded
from watcher.validation import validate_tag

#: How long an abort waits for a Docker engine that went away (a restart) to remove what the
#: deploy started: dockerd restarts every running container by its restart policy, so what is
#: not removed comes back beside the live colour.
DOCKER_WAIT = 120.0


class Guard(Protocol):
    """Checked right before the switch: raises if this process may no longer switch traffic."""

    def check(self) -> None: ...


@dataclass
class DeployResult:
    kind: str
    version: str
    color: Color | None
    previous: Release | None
    phases: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    noop: bool = False
    drained: bool = True
    message: str = ""
    digest: str | None = None  # what the tag pointed at when pulled (None: used the local image)
    receipt: Receipt | None = None
    awaiting: bool = False  # manual promotion: healthy on `color`, traffic untouched
    until: str | None = None  # ... until this moment (ISO), then removed

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "version": self.version,
            "color": self.color.value if self.color else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "noop": self.noop,
            "drained": self.drained,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "total": round(self.total, 3),
            "message": self.message,
            "awaiting": self.awaiting,
            "digest": self.digest,
            "receipt": self.receipt.to_dict() if self.receipt else None,
        }


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, decided from the view before anything changes."""

    live: Release | None
    target: ColorStack
    image: str | None  # the local image ID to run, when known
    reuse: bool  # the target's retained containers are that very image: start them


class Deployment:
    """The engine. It knows Docker Compose and Caddy; it knows nothing of queues or webhooks."""

    def __init__(
        self,
        config: Config,
        *,
        progress: Progress | None = None,
        docker: Containers | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.config = config
        self.progress = progress or Progress()
        self.docker = docker or Containers()
        self.colors = {color: ColorStack(config, self.docker, color) for color in Color}
        self.shared = SharedStack(config, self.docker)
        self.switch = TrafficSwitch(config.route_file)
        self.store = StateStore(config.state_dir, config.deployment_color_file)
        self.caddy = CaddyAdmin(config.caddy_admin)
        self.registry = registry
        self.access_log = AccessLog(config.access_log) if config.access_log else None
        self.receipt: Receipt | None = None  # of the last run that moved traffic or unwound
        self._guard: Guard | None = None
        self._engine = ""
        #: The tag's digest when it moved away from the one the deploy was asked for: a new request
        #: the caller (the worker) queues; set whether the deploy then succeeds or fails.
        self.moved: str | None = None

    # -- reading -------------------------------------------------------------------------

    def observe(self) -> Observed:
        return Observed(
            self.switch.current(),
            {c: s.containers() for c, s in self.colors.items()},
            tuple(s.name for s in self.config.services),
            self.config.image,
            self.switch.closed(),
        )

    def view(self) -> View:
        return reconcile(self.store.load(), self.observe())

    def _check_images(self, version: str) -> None:
        """Refuse compose files that would run another image than `app.image:<version>`: the
        services whose image follows the version must name the app's repository (a hard-coded
        repository that differs from the config would deploy, and verify, the wrong thing)."""
        stack = self.colors[Color.BLUE]
        wanted, probe = stack.declared_images(version), stack.declared_images(f"{version}-watcher-probe")
        versioned = {name: image for name, image in wanted.items() if probe.get(name) != image}
        if not versioned:
            raise DeployFailed(
                f"no service of {', '.join(self.config.compose_files)} takes its image tag from "
                f"${{{self.config.version_env}}}: give the app's services "
                f"image: ${{APP_IMAGE}}:${{{self.config.version_env}}}"
            )
        for name, image in versioned.items():
            if image != self.shared.image(version):
                raise DeployFailed(
                    f"service {name}: its image resolves to {image}, not the app's "
                    f"{self.shared.image(version)}: use image: ${{APP_IMAGE}}:"
                    f"${{{self.config.version_env}}} (watcher sets APP_IMAGE to {self.config.image})"
                )

    def rollback_target(self, view: View) -> RollbackTarget | None:
        return rollback_target(view, self.colors, self.docker, self.config.image)

    # -- deploy --------------------------------------------------------------------------

    def deploy(
        self,
        version: str,
        *,
        guard: Guard,
        kind: str = "deploy",
        prefer_local: bool = False,
        image: str | None = None,
        digest: str | None = None,
    ) -> DeployResult:
        """Put `version` (pinned to the local `image`, for a rollback, or to the registry `digest`
        its job was queued at) live on the idle colour with zero failed requests, or change nothing."""
        _checked(version)
        self._guard = guard
        self.receipt = None
        self.moved = None
        progress = self.progress
        self._check_engine()
        self._check_images(version)

        with progress.phase("pull", self.shared.image(version)):
            digest = self._pull(version, prefer_local or image is not None, digest)

        with progress.phase("inspect", "the live colour from the route file, its health from Docker"):
            view = self.view()
            for warning in view.warnings:
                progress.say(f"  note: {warning}")
            plan = self._plan(view, version, image)
            live, target = plan.live, plan.target
            digest = digest or recorded_digest(view, version, plan.image)
            if (
                live
                and live.version == version
                and plan.image
                and view.observed.image_id(live.color) == plan.image
            ):
                self._sync_state(view)
                return DeployResult(
                    kind,
                    version,
                    live.color,
                    view.previous,
                    dict(progress.durations),
                    progress.total,
                    noop=True,
                    message=f"{version} is already live on {live.color}",
                    digest=digest,
                )
            progress.say(
                f"  live: {live.color} ({live.version}, {view.live_health})"
                if live
                else "  live: nothing yet"
            )
            progress.say(f"  target: {target}")
            if live is not None and view.live_health.healthy:
                self._check_route(live.color)

        if awaiting(waiting := view.recorded.pending):
            progress.say(f"  superseding: {describe_wait(waiting)}; its containers go")
        self._note_pending(view, Pending(kind, version, target.color, "prepare"))
        if clear_preview(self.config.preview_file):
            progress.say(
                f"  removed {self.config.preview_file}, left by a deploy that stopped in its smoke phase"
            )
        started = False
        try:
            if self.config.pre_deploy:
                with progress.phase("pre-deploy hook", " ".join(self.config.pre_deploy)):
                    run_hook(
                        self.config.pre_deploy,
                        cwd=self.config.project_dir,
                        timeout=self.config.pre_deploy_timeout,
                        env={
                            **self.config.compose_env(version),
                            "WATCHER_VERSION": version,
                            "WATCHER_COLOR": target.color.value,
                            "WATCHER_PREVIOUS_VERSION": live.version if live else "",
                        },
                    )

            with progress.phase("start", f"{target.name} at {version}"):
                self._mark("start")
                self.config.route_file.parent.mkdir(parents=True, exist_ok=True)  # ours, not Docker's
                if live is None and view.route is None:
                    with self.fenced():
                        self.switch.close()  # nothing is verified yet: Caddy answers 503, not the new colour
                self.shared.ensure(version)
                started = True
                self._start(plan, version)

            with progress.phase(
                "health", f"every {self.config.health_interval:g}s, up to {self.config.health_timeout:g}s"
            ):
                self._mark("health")
                wait_until_healthy(
                    target,
                    timeout=self.config.health_timeout,
                    interval=self.config.health_interval,
                    progress=progress,
                )

            if self.config.smoke.enabled:
                with progress.phase("smoke", f"{target} previewed at {self.config.preview_url}"):
                    self._mark("smoke")
                    run_smoke(self.config, version, target.color, progress)

        except BaseException as failure:
            self._failed(plan, version, digest, started, False, None, failure)
            raise
        if self.config.promote.manual and kind == "deploy":
            return self._await_promotion(plan, view, version, digest)
        return self._go_live(plan, view, version, digest, kind)

    def _go_live(self, plan: Plan, view: View, version: str, digest: str | None, kind: str) -> DeployResult:
        """The second half of a deploy, from the guard check before the switch: the target colour
        runs `version`, healthy (and smoke-tested)."""
        progress, live, target = self.progress, plan.live, plan.target
        switched = False
        moved_at: float | None = None
        try:
            assert self._guard is not None
            self._guard.check()
            release = Release(target.color, version, digest=digest, image=plan.image or target.image_id())
            prepared = self._prepare(DeployState(release, live or view.previous, None))
            with (
                shielded(),
                progress.phase("switch", f"traffic {live.color if live else 'nothing'} -> {target}"),
            ):
                self._mark("switch")
                with self.fenced():
                    self.switch.move_to(target)
                switched, moved_at = True, time.time()

            bake = self._bake(kind, live, target, moved_at)
            with progress.phase(
                "verify",
                f"{self.config.verify_url} answers {version} from {target}"
                + (" (and the bake)" if bake else ""),
            ):
                self._mark("verify")
                self._verify(target, version, bake)
        except BaseException as failure:
            self._failed(plan, version, digest, True, switched, moved_at, failure)
            raise

        with shielded(), progress.phase("record", f"{version} live on {target}"):
            self._record(prepared)

        drained = True
        if live:
            drained = self._retire(self.colors[live.color], target)
        self.receipt = self._take_receipt(kind, moved_at)
        message = f"{version} is live on {target}" + (
            f" (was {live.version} on {live.color})" if live else ""
        )
        progress.say(message)
        progress.say(f"  {self.receipt.summary()}")
        return DeployResult(
            kind,
            version,
            target.color,
            live,
            dict(progress.durations),
            progress.total,
            drained=drained,
            message=f"{message}; {self.receipt.summary()}",
            digest=digest,
            receipt=self.receipt,
        )

    def _failed(
        self,
        plan: Plan,
        version: str,
        digest: str | None,
        started: bool,
        switched: bool,
        moved_at: float | None,
        failure: BaseException,
    ) -> None:
        """Abort, and take the receipt of what was served meanwhile; the caller re-raises."""
        failed_at = time.time()
        try:
            self._abort(plan, version, digest, started, switched, failure)
        finally:
            self.receipt = self._take_receipt("abort", moved_at or failed_at)

    def rollback(self, *, guard: Guard, to: str | None = None) -> DeployResult:
        """Back to the previous release (or `to`): instant when its colour is retained."""
        if to is not None:
            _checked(to)
        found = choose(self.view(), self.colors, self.docker, self.config.image, to)
        self.progress.say(f"rolling back to {found.describe()}")
        return self.deploy(
            found.release.version, guard=guard, kind="rollback", prefer_local=True, image=found.image
        )

    # -- manual promotion (promotion.py) ----------------------------------------------------

    def _await_promotion(self, plan: Plan, view: View, version: str, digest: str | None) -> DeployResult:
        """Stop before the switch: the target runs `version`, healthy, smoke-tested and open to
        the preview header; traffic stays where it is until `promote` (or `abort_waiting`)."""
        progress, target, live = self.progress, plan.target, plan.live
        pending = Pending(
            "deploy",
            version,
            target.color,
            AWAITING,
            until=deadline(self.config.promote.timeout),
            digest=digest,
            image=plan.image or target.image_id(),
        )
        try:
            keep_preview(self.config.preview_file, target.color)
            self._save(replace(self.store.load(), pending=pending))
        except (OSError, WatcherError) as failure:
            self._failed(plan, version, digest, True, False, None, failure)
            raise
        message = (
            f"{version} is healthy on {target}, awaiting promotion until {pending.until}: `watcher promote` "
            f"switches to it, `watcher abort` removes it (preview it at {self.config.preview_url} with "
            f"the {PREVIEW_HEADER} header set to the secret in {self.config.preview_file})"
        )
        progress.say(message)
        return DeployResult(
            "deploy",
            version,
            target.color,
            live,
            dict(progress.durations),
            progress.total,
            message=message,
            digest=digest,
            awaiting=True,
            until=pending.until,
        )

    def promote(self, *, guard: Guard) -> DeployResult:
        """Switch to the colour a manual deploy left waiting: the second half of that deploy
        (guard, switch, verify and bake, record, drain, stop old, receipt)."""
        self._guard, self.receipt, self.moved = guard, None, None
        self._check_engine()
        view = self.view()
        pending = self._waiting(view, "promote")
        if expired(pending):
            removed = self._remove_waiting(view, pending)
            raise DeployFailed(
                f"the wait of {pending.version} on {pending.color} expired at {pending.until}: "
                f"not promoted, nothing was switched; {removed}"
            )
        target, live = self.colors[pending.color], view.live
        containers = target.containers()
        health = target.health(containers)
        if (
            not health.healthy
            or target.version(containers) != pending.version
            or (pending.image and target.image_id(containers) != pending.image)
        ):
            raise DeployFailed(
                f"{target} is {health} (running {target.version(containers) or 'nothing'}), so "
                f"{pending.version} was not promoted and nothing was switched: `watcher abort` "
                "removes it, a new deploy replaces it"
            )
        if live is not None and view.live_health.healthy:
            self._check_route(live.color)
        self.progress.say(f"promoting {pending.version} on {target}")
        clear_preview(self.config.preview_file)
        return self._go_live(
            Plan(live, target, pending.image, False), view, pending.version, pending.digest, "deploy"
        )

    def abort_waiting(self, *, guard: Guard) -> str:
        """Remove the colour a manual deploy left waiting; the live colour is never touched."""
        self._guard = guard
        self._check_engine()
        view = self.view()
        return self._remove_waiting(view, self._waiting(view, "abort"))

    def expire_waiting(self, *, guard: Guard) -> str | None:
        """Remove the waiting colour once its wait is over; None when nothing waits or the wait lasts."""
        pending = self.store.load().pending
        if pending is None or not awaiting(pending) or not expired(pending):
            return None
        self._guard = guard
        self._check_engine()
        removed = self._remove_waiting(self.view(), pending)
        return f"the wait of {pending.version} on {pending.color} expired at {pending.until}: {removed}"

    def _waiting(self, view: View, verb: str) -> Pending:
        pending = view.recorded.pending
        if pending is None or not awaiting(pending):
            doing = (
                f"; a {pending.kind} of {pending.version} is in phase {pending.phase!r}" if pending else ""
            )
            raise UsageError(
                f"nothing awaits promotion for {self.config.app}{doing}: nothing to {verb} (`watcher status`)"
            )
        if view.route == pending.color:
            raise DeployFailed(
                f"Caddy routes to {pending.color} although {pending.version} awaits promotion "
                "there; nothing was changed (`watcher status`)"
            )
        return pending

    def _remove_waiting(self, view: View, pending: Pending) -> str:
        """Remove the waiting colour and its note, under the guard (never interrupted halfway)."""
        target = self.colors[pending.color]
        assert self._guard is not None
        self._guard.check()
        with shielded():
            clear_preview(self.config.preview_file)
            self.progress.say(f"  removing {target.name} ({pending.version}, awaiting promotion)")
            target.remove()
            self._save(replace(self.store.load(), pending=None))
        live = view.live
        return f"removed {target.name} ({pending.version}); " + (
            f"{live.version} is still live on {live.color}" if live else "nothing is live"
        )

    # -- phases ---------------------------------------------------------------------------

    def _check_engine(self) -> None:
        """One Docker host per app: refuse an engine other than the one the state was recorded on."""
        self._engine = self.docker.engine_id()
        recorded = self.store.load().engine
        if recorded and self._engine and recorded != self._engine:
            raise WatcherError(
                f"{self.store.path} was recorded on Docker engine {recorded}, but this watcher "
                f"talks to engine {self._engine}: an app's colours live on one Docker host. Run "
                "watcher on that host (or point DOCKER_HOST at its engine); nothing was changed"
            )

    def _pull(self, version: str, prefer_local: bool, queued: str | None = None) -> str | None:
        """Pull `version` at the digest it was queued at (or the tag's, when none was), checked for
        this host's platform first; return that digest (None when the local image is used)."""
        image = self.shared.image(version)
        if prefer_local and self.docker.image_present(image):
            self.progress.say(f"  {image} is present locally; not pulling")
            return None
        ref = ImageRef.parse(self.config.image)
        registry = self.registry or RegistryClient(
            username=self.config.registry_username, password=self.config.registry_password
        )
        try:
            chosen = pin.resolve(registry, ref, version, queued, image)
            self.moved = chosen.moved
            pin.check(registry, ref, chosen, host_platform(*self.docker.platform()), image)
        finally:
            if self.registry is None:
                registry.close()
        digest = chosen.digest
        if chosen.moved:
            self.progress.say(
                f"  {image} was queued at {digest}, but the tag has moved to {chosen.moved} since: "
                "deploying the queued digest; the new one is a job of its own"
            )
        else:
            self.progress.say(f"  {image} is {digest}")
        try:
            if chosen.moved is None:
                self.shared.pull(version)
            elif sidecars := self._sidecars(version):
                self.shared.pull(version, sidecars)
            self._hold(image, ref, digest)
        except (ComposeError, PullFailed) as exc:
            raise DeployFailed(f"pull failed, nothing was changed: {exc}") from None
        return digest

    def _sidecars(self, version: str) -> list[str]:
        """The colour services whose image is not the app's (their own images, pulled by tag)."""
        app = self.shared.image(version)
        return [
            name for name, image in self.colors[Color.BLUE].declared_images(version).items() if image != app
        ]

    def _hold(self, image: str, ref: ImageRef, digest: str) -> None:
        """The local `image` must be the pinned `digest`: if the pull brought another (the tag
        moved during it) or none, pull the digest and point the tag at it. What Docker pulled is
        not reported as a move: only the registry's answer to the check is (a registry whose
        digests Docker records otherwise would make each job queue the next)."""
        pulled = [d.rpartition("@")[2] for d in self.docker.repo_digests(image) if same_repository(d, ref)]
        if digest in pulled:
            return
        self.progress.say(
            f"  the pull brought {', '.join(pulled) or 'no image of the checked digest'} (the tag "
            f"moved during it?): pulling {digest} itself"
        )
        self.docker.pull_digest(image, digest)
        if digest not in [
            d.rpartition("@")[2] for d in self.docker.repo_digests(image) if same_repository(d, ref)
        ]:
            raise PullFailed(f"{image} does not carry {digest} after pulling it")

    def _plan(self, view: View, version: str, image: str | None) -> Plan:
        if view.route_lost:
            raise DeployFailed(
                f"the route file {self.config.route_file} is missing although colours exist, so Caddy no longer "
                f"reads the file watcher writes (was {self.config.route_file.parent} removed after Caddy started?). "
                f"Write the colour that should serve into it (e.g. `echo blue > {self.config.route_file}`), then "
                f"restart Caddy so it mounts the directory again (`docker compose -p {self.config.project()} "
                "restart caddy`); nothing was changed"
            )
        live = view.live
        target = self.colors[live.color.other if live else Color.BLUE]
        assert view.route != target.color, "a deploy never targets the colour Caddy routes to"
        wanted = image or self.docker.image_id(self.shared.image(version))
        containers = view.observed.of(target.color)
        reuse = (
            target.retained(containers)
            and target.version(containers) == version
            and wanted is not None
            and target.image_id(containers) == wanted
        )
        return Plan(live, target, wanted, reuse)

    def _check_route(self, live: Color) -> None:
        """Before anything changes: Caddy's answers must come from the colour the route file names,
        or Caddy does not read this route file and a switch would be silently ignored."""
        seen = answer(self.config.verify_url, self.config.verify_header)
        for _ in range(10):
            if seen.color is not None:
                break
            time.sleep(0.3)
            seen = answer(self.config.verify_url, self.config.verify_header)
        if seen.color == live.value:
            return
        if seen.error:
            raise DeployFailed(
                f"{self.config.verify_url} does not answer ({seen.error}): is Caddy running? "
                f"(`docker compose -p {self.config.project()} ps caddy`); nothing was changed"
            )
        if seen.color is None and seen.status is not None and seen.status >= 500:
            raise DeployFailed(
                f"{self.config.verify_url} answers {seen.status} with no {COLOR_HEADER} header: Caddy "
                f"cannot reach the live colour {live} (`watcher status` shows its containers); "
                "nothing was changed"
            )
        if seen.color is None:
            raise DeployFailed(
                f"{self.config.verify_url} answers without a {COLOR_HEADER} header, so watcher cannot "
                "tell which colour serves: each colour's reverse_proxy in the Caddyfile must set "
                f"`header_down {COLOR_HEADER} <colour>` (see the Caddyfile shipped with watcher), or "
                f"Caddy does not read {self.config.route_file}; nothing was changed"
            )
        raise DeployFailed(
            f"Caddy answers from {seen.color} although {self.config.route_file} says {live}: Caddy "
            f"does not read this route file (was {self.config.route_file.parent} removed or "
            f"recreated after Caddy started? restart Caddy: `docker compose -p "
            f"{self.config.project()} restart caddy`); nothing was changed"
        )

    def _start(self, plan: Plan, version: str) -> None:
        """Start the target colour; its leftovers go first (they never serve: Caddy routes to the
        live colour alone), unless they are the retained containers of this very image."""
        target = plan.target
        if plan.reuse:
            self.progress.say(f"  reusing retained {target} containers of {version}")
            target.resume()
            return
        leftovers = target.containers()
        if leftovers:
            if any(c.running for c in leftovers):
                wait_drained(
                    self.caddy, target.upstreams, timeout=self.config.drain_timeout, progress=self.progress
                )
            self.progress.say(
                f"  removing leftover {target} containers "
                f"({', '.join(f'{c.name}: {c.version} {c.state}' for c in leftovers)})"
            )
            target.remove()
        ref = self.shared.image(version)
        if plan.image and self.docker.image_id(ref) != plan.image:
            self.progress.say(f"  pointing {ref} at {plan.image[:19]} again (an earlier image of the tag)")
            self.docker.tag(plan.image, ref)
        target.start(version)

    def _verify(self, target: ColorStack, version: str, bake: Bake | None) -> None:
        """The new version must answer through Caddy, from the new colour, then stay healthy and
        answering for the window (and pass the bake, when one runs, for its duration)."""
        cfg = self.config
        if not wait_for_version(
            cfg.verify_url,
            version,
            cfg.verify_header,
            timeout=cfg.verify_timeout,
            progress=self.progress,
            color=target.color.value,
        ):
            raise DeployFailed(
                f"{cfg.verify_url} did not answer {version} from {target} within "
                f"{cfg.verify_timeout:g}s after the switch"
            )
        window = max(cfg.verify_window, self._bake_duration() if bake else 0.0)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            health = target.health()
            if not health.healthy:
                raise DeployFailed(f"{target} turned {health} during the verification window")
            seen = answer(cfg.verify_url, cfg.verify_header)
            if (seen.version, seen.color) != (version, target.color.value):
                raise DeployFailed(
                    f"{cfg.verify_url} answered {seen} instead of {version!r} from {target} "
                    "during the verification window"
                )
            if bake and (verdict := bake.check(time.time())):
                raise DeployFailed(verdict)
            self.progress.waiting(
                f"the verification window ({version} healthy and answering)",
                window - (deadline - time.monotonic()),
                window,
            )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if bake and (verdict := bake.check(time.time(), final=True)):
            raise DeployFailed(verdict)

    def _bake_duration(self) -> float:
        duration = self.config.bake.duration
        return self.config.verify_window if duration is None else duration

    def _bake(self, kind: str, live: Release | None, target: ColorStack, moved_at: float) -> Bake | None:
        """The bake of a deploy that has a colour to go back to (a rollback is the way back
        itself, and a first deploy has nothing to fall back on), when Caddy logs what it serves."""
        settings = self.config.bake
        if kind != "deploy" or live is None or not settings.judges or self._bake_duration() <= 0:
            return None
        if self.access_log is None or not self.access_log.exists():
            self.progress.say(
                f"  note: no bake: Caddy writes no access log at {self.config.access_log} "
                "(regenerate the Caddyfile with `watcher caddyfile`)"
            )
            return None
        return Bake(
            settings, self.access_log, self.config.app, live.color.value, target.color.value, moved_at
        )

    def _take_receipt(self, kind: str, moved_at: float) -> Receipt:
        """What Caddy served from LEAD before `moved_at` to now. Never fails the run: a log that
        cannot be read makes a receipt that says why."""
        now = time.time()
        log = self.access_log
        if log is None or not log.exists():
            return receipts.missing(
                kind,
                moved_at,
                now,
                f"Caddy writes no access log at {self.config.access_log} "
                "(regenerate the Caddyfile with `watcher caddyfile`)",
            )
        try:
            served = log.served(self.config.app, moved_at - receipts.LEAD, now)
        except OSError as exc:
            return receipts.missing(kind, moved_at, now, f"cannot read {log.path}: {exc.strerror or exc}")
        return receipts.build(kind, served, moved_at, moved_at - receipts.LEAD, now, str(log.path))

    def _retire(self, old: ColorStack, new: ColorStack) -> bool:
        """Drain the old colour, then stop (or remove) it, unless the new one is no longer healthy:
        then the old one is the last healthy colour and keeps running."""
        progress = self.progress
        with progress.phase("drain", f"in-flight requests on {', '.join(old.upstreams) or old.name}"):
            drained = wait_drained(
                self.caddy, old.upstreams, timeout=self.config.drain_timeout, progress=progress
            )
        health = new.health()
        if not health.healthy:
            progress.say(f"  warning: {new} is {health}; leaving {old} running (`watcher status`)")
            return drained
        verb = "stop" if self.config.retain_old else "remove"
        with progress.phase(f"{verb} old", old.name):
            (old.stop if self.config.retain_old else old.remove)()
        return drained

    def _abort(
        self,
        plan: Plan,
        version: str,
        digest: str | None,
        started: bool,
        switched: bool,
        failure: BaseException,
    ) -> None:
        """Leave one healthy colour serving. Never interrupted.

        Not when the guard is lost: another holder may already be deploying over these very
        containers, so this process touches nothing more. The guard is checked first whatever
        the failure: a holder that was paused past its lock's lease may wake up to a failed
        health check or verification caused by the new holder's work, and must not undo it.
        """
        if not isinstance(failure, GuardLost) and self._guard is not None:
            try:
                self._guard.check()
            except GuardLost as lost:
                failure = lost
        if isinstance(failure, GuardLost):
            self.progress.say(f"aborting without touching anything: {failure}")
            return
        with shielded():
            self.progress.say(f"aborting: {failure}")
            if isinstance(failure, HealthCheckFailed) and failure.details:
                self.progress.say(failure.details)
            try:
                try:
                    kept = self._unwind(plan, version, digest, started, switched)
                except (DockerUnavailable, ComposeError):
                    if not self._docker_came_back():
                        raise
                    kept = self._unwind(plan, version, digest, started, switched)
            except WatcherError as exc:  # report, and leave the trail in state for `status`
                self.progress.say(f"  abort step failed: {exc}; run `watcher status`")
                return
        if kept:
            raise DeployFailed(f"{failure}; {kept}") from failure

    def _unwind(self, plan: Plan, version: str, digest: str | None, started: bool, switched: bool) -> str:
        """Undo what this deploy did; returns why something was kept instead ("" when undone)."""
        progress, target, live = self.progress, plan.target, plan.live
        old = self.colors[live.color] if live else None
        if switched and old is not None:
            try:
                progress.say(f"  switching traffic back to {old} ({live.version if live else ''})")
                with self.fenced():
                    self.switch.move_to(old)
            except TargetNotHealthy as refused:
                return self._leave_serving(plan, version, digest, str(refused))
        elif switched:
            with self.fenced():
                self.switch.close()
        if switched:
            wait_drained(self.caddy, target.upstreams, timeout=self.config.drain_timeout, progress=progress)
        if started:
            progress.say(f"  {'stopping' if plan.reuse else 'removing'} {target.name}")
            (target.stop if plan.reuse else target.remove)()
        self.store.discard()
        self._save(replace(self.store.load(), pending=None))
        progress.say(f"{live.version} is still live on {live.color}" if live else "nothing is live")
        return ""

    def _leave_serving(self, plan: Plan, version: str, digest: str | None, why: str) -> str:
        """The old colour is not healthy any more: the new one keeps the traffic if it is healthy
        (recorded as live, never removed); if it is not, nothing is touched."""
        target, live = plan.target, plan.live
        health = target.health()
        if not health.healthy:
            self._save(replace(self.store.load(), pending=None))
            return (
                f"{why}, and {target} is {health} too: traffic stays on {target}, nothing was removed "
                "(see `watcher status`)"
            )
        release = Release(target.color, version, digest=digest, image=plan.image or target.image_id())
        self.store.discard()
        self._save(DeployState(release, live, None))
        return (
            f"{why}, so {version} is left serving on {target}; {live.color if live else 'the old colour'} "
            "is kept as it is"
        )

    # -- state ----------------------------------------------------------------------------

    @contextmanager
    def fenced(self, guard: Guard | None = None) -> Iterator[None]:
        """Check the guard (a fenced lock) and make the write it allows, with no other watcher
        process on this host in between. Without this, a holder paused right after a passing
        check (SIGSTOP, a frozen VM) would write after a new holder took over; with it, the new
        holder's writes wait for the paused one's, so they land after it, in grant order."""
        guard = guard if guard is not None else self._guard
        with self.store.writing():
            if guard is not None:
                guard.check()
            yield

    def _save(self, state: DeployState) -> None:
        """Every state write is fenced: a holder that lost the lock while paused must not
        overwrite what the new holder recorded."""
        try:
            with self.fenced():
                self.store.save(replace(state, engine=self._engine or state.engine))
        except OSError as exc:
            raise StateUnwritable(f"cannot write {self.store.path} ({exc.strerror or exc})") from exc

    def _prepare(self, state: DeployState) -> Prepared:
        """The record of the new release, written whole before traffic moves: a full disk then
        stops the deploy with nothing switched, and a disk that fills up after the switch cannot
        refuse the record step (a rename)."""
        try:
            return self.store.prepare(replace(state, engine=self._engine or state.engine))
        except OSError as exc:
            raise DeployFailed(
                f"cannot write {self.store.prepared_path} ({exc.strerror or exc}), so the new "
                "release could not be recorded: traffic was not switched"
            ) from exc

    def _record(self, prepared: Prepared) -> None:
        """The record step: the state prepared before the switch goes in force. Traffic is on the
        new colour already; a failure (the lock lost, a file system gone read-only) only leaves the
        state behind the route file, which `status` and the next deploy reconcile."""
        live = prepared.state.live
        try:
            with self.fenced():
                self.store.commit(prepared)
        except OSError as exc:
            raise WatcherError(
                f"{live.version if live else 'the new version'} serves, but "
                f"{self.store.path} could not be written ({exc.strerror}); the old colour keeps "
                "running: free the disk and run `watcher status`"
            ) from exc

    def _note_pending(self, view: View, pending: Pending) -> None:
        """Record the reconciled truth plus what this deploy is about to do."""
        try:
            self._save(DeployState(view.live, view.previous, pending))
        except StateUnwritable as exc:
            raise DeployFailed(f"{exc}; nothing was changed") from exc

    def _mark(self, phase: str) -> None:
        """Note the phase for `status` after a crash. A disk that refuses the note does not stop
        the deploy: the record itself is prepared before the switch."""
        state = self.store.load()
        if state.pending:
            try:
                self._save(replace(state, pending=replace(state.pending, phase=phase)))
            except StateUnwritable as exc:
                self.progress.say(f"  note: {exc}: phase {phase!r} is not noted; carrying on")

    def _docker_came_back(self) -> bool:
        """After an abort step failed: False if Docker answers (it was not Docker's absence);
        else wait up to DOCKER_WAIT for the engine, True once it answers again."""
        if self._docker_answers():
            return False
        self.progress.say(
            f"  Docker is not answering; waiting up to {DOCKER_WAIT:g}s for it to finish the abort"
        )
        deadline = time.monotonic() + DOCKER_WAIT
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if self._docker_answers():
                self.progress.say("  Docker answers again")
                return True
        return False

    @staticmethod
    def _docker_answers() -> bool:
        """Asked on a new connection: a daemon that is shutting down has closed its socket but
        still answers on the connections it has."""
        try:
            Containers().client.close()
        except DockerUnavailable:
            return False
        return True

    def _sync_state(self, view: View) -> None:
        if not view.in_sync:
            kept = view.recorded.pending if awaiting(view.recorded.pending) else None
            self._save(DeployState(view.live, view.previous, kept))


def _checked(version: str) -> str:
    try:
        return validate_tag(version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def same_repository(repo_digest: str, ref: ImageRef) -> bool:
    """Whether a RepoDigests entry (`repo@sha256:...`, Docker's short names for Docker Hub) is of `ref`."""
    name = repo_digest.rpartition("@")[0]
    try:
        return ImageRef.parse(name) == ref
    except RegistryError:
        return False


def recorded_digest(view: View, version: str, image: str | None) -> str | None:
    """The digest a local image had when it was pulled, as the state recorded it: a rollback
    reuses the image without asking the registry, and its release keeps saying what it runs."""
    for release in (view.previous, view.live):
        if release and release.version == version and release.digest and release.image in (None, image):
            return release.digest
    return None
