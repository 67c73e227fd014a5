"""The blue-green deploy flow, phase by phase, on any platform. Read `Deployment.deploy` top to bottom.

    pull -> inspect -> pre-deploy hook -> start idle colour -> health -> smoke -> [guard] SWITCH
         -> verify (window, and the bake) -> record -> drain old -> stop old -> receipt

The live colour is the route file's (reconcile.py); the target is always the other colour, and
nothing here ever stops, removes or recreates the live colour. Every move of traffic goes through
`TrafficSwitch.move_to`, which refuses a colour that is not healthy at that moment. The platform
(watcher/platforms) says what a colour is and does what the flow asks of it.

Until the state is recorded, any failure or interrupt unwinds (unwind.py): traffic goes back to
the colour that was live if it is still healthy, else a healthy new colour is left serving. Once
the new version is recorded live, nothing switches back: an interrupt leaves both colours
running, which is safe. A run's facts live in one `Run` (run.py): returned in the result, and
attached to the exception of a run that failed (`run_of`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from watcher.atomic import ensure_writable
from watcher.backends.access_log import AccessLog
from watcher.backends.caddy import CaddyAdmin
from watcher.backends.registry import RegistryClient
from watcher.config import AppConfig
from watcher.engine import bake, promotion, unwind
from watcher.engine import receipt as receipts
from watcher.engine.drain import wait_drained
from watcher.engine.hooks import run_hook
from watcher.engine.ledger import Ledger
from watcher.engine.pin import Puller, check_images
from watcher.engine.reconcile import Observed, View, reconcile
from watcher.engine.rollback import RollbackTarget, choose, rollback_target
from watcher.engine.run import DeployResult, Guard, Plan, Run, attach
from watcher.engine.smoke import clear_preview, run_smoke
from watcher.engine.state import PROMOTE, DeployState, Pending, Prepared, Release, StateStore, awaiting
from watcher.engine.switch import TrafficSwitch
from watcher.engine.verification import check_route, verify
from watcher.errors import DeployFailed, UsageError
from watcher.interrupts import shielded
from watcher.platforms.base import ColorStack, Platform
from watcher.platforms.color import Color
from watcher.progress import Progress
from watcher.validation import validate_tag


class Deployment:
    """The engine. It knows the flow, Caddy and the state; it knows nothing of queues or webhooks,
    and of Docker only what its platform tells it."""

    def __init__(
        self,
        config: AppConfig,
        *,
        progress: Progress | None = None,
        platform: Platform | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.config = config
        self.progress = progress or Progress()
        self.platform = platform or platform_of(config)
        self.switch = TrafficSwitch(config.caddy.route_file)
        self.store = StateStore(config.state.dir, config.state.deployment_color_file)
        self.ledger = Ledger(self.store, self.progress)
        self.caddy = CaddyAdmin(config.caddy.admin)
        self.access_log = AccessLog(config.caddy.access_log) if config.caddy.access_log else None
        self.puller = Puller(config, self.platform, registry, self.progress)

    # -- reading -------------------------------------------------------------------------

    def observe(self) -> Observed:
        stack = self.platform.color(Color.BLUE)  # both colours run the same files
        return Observed(
            self.switch.current(),
            self.platform.observe(),
            tuple(s.name for s in self.config.services),
            self.config.image,
            self.switch.closed(),
            frozenset(stack.following),
            frozenset(stack.one_shots),
        )

    def view(self, holder: dict[str, Any] | None = None) -> View:
        """The reconciled truth; `holder`: the host lock's (a run in flight reads as running)."""
        return reconcile(self.store.load(), self.observe(), holder)

    def rollback_target(self, view: View) -> RollbackTarget | None:
        return rollback_target(view, self.platform, self.config.image)

    # -- runs ----------------------------------------------------------------------------

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
        run = Run(kind, version)
        with self._running(run, guard):
            unwind.undo_unverified(self)
            declared = check_images(self.config, self.platform, version)
            with self.progress.phase("pull", f"{self.config.image}:{version}"):
                self.puller.pull(run, declared, prefer_local=prefer_local or image is not None, queued=digest)
            with self.progress.phase(
                "inspect", "the live colour from the route file, its health from the platform"
            ):
                view = self.view()
                noop = self._plan(run, view, image)
            if noop is not None:
                return noop
            self._ready(run, view)
            if self.config.promote.manual and kind == "deploy":
                return promotion.await_promotion(self, run)
            return self.go_live(run, view)

    def rollback(self, *, guard: Guard, to: str | None = None, done_if_live: bool = False) -> DeployResult:
        """Back to the previous release (or `to`): instant when its colour is retained.
        `done_if_live`: `to` already live is a no-op, not a usage error (a queued rollback, taken
        over after its worker died past its record)."""
        if to is not None:
            _checked(to)
        with self._running(Run("rollback", to or ""), guard):
            unwind.undo_unverified(self)
            view = self.view()
        if done_if_live and to is not None and view.live is not None and view.live.version == to:
            return self.deploy(to, guard=guard, kind="rollback", prefer_local=True)
        found = choose(view, self.platform, self.config.image, to)
        self.progress.say(f"rolling back to {found.describe()}")
        return self.deploy(
            found.release.version, guard=guard, kind="rollback", prefer_local=True, image=found.image
        )

    def promote(self, *, guard: Guard, version: str | None = None) -> DeployResult:
        """Switch to the colour a manual deploy left waiting: the second half of that deploy.
        `version`: the one a promote job was asked for (an earlier attempt may have promoted it)."""
        run = Run("deploy", "", promotion=True)
        with self._running(run, guard):
            return promotion.promote(self, run, version)

    def abort_awaited(self, *, guard: Guard) -> str:
        """Remove the colour a manual deploy left waiting; the live colour is never touched."""
        with self._running(Run("abort", ""), guard):
            view = self._undone(self.view())
            return promotion.remove_awaited(self, view, promotion.awaited(self, view, "abort"))

    def expire_awaited(self, *, guard: Guard) -> str | None:
        """Remove the waiting colour once its wait is over; None when nothing waits or the wait lasts."""
        pending = self.store.load().pending
        if pending is None or not (awaiting(pending) or pending.kind == PROMOTE):
            return None
        if not promotion.expired(pending):
            return None
        with self._running(Run("abort", pending.version), guard):
            removed = promotion.remove_awaited(self, self._undone(self.view()), pending)
        return f"the wait of {pending.version} on {pending.color} expired at {pending.until}: {removed}"

    def _undone(self, view: View) -> View:
        """The view once a promote its worker left halfway is unwound (its colour waits again)."""
        note = view.recorded.pending
        return promotion.undo(self, view, note) if note is not None and note.kind == PROMOTE else view

    # -- phases ---------------------------------------------------------------------------

    @contextmanager
    def _running(self, run: Run, guard: Guard) -> Iterator[None]:
        """The run's guard and host for every write; a failure leaves with the run's record attached."""
        try:
            self.ledger.claim(guard, self.platform.host_id())
            yield
        except BaseException as failure:
            attach(failure, run)
            raise

    def _plan(self, run: Run, view: View, image: str | None) -> DeployResult | None:
        """Decide the target from the view; a DeployResult when the version is live already."""
        config, say = self.config, self.progress.say
        for warning in view.warnings:
            say(f"  note: {warning}")
        if view.route_lost:
            raise DeployFailed(
                f"the route file {config.caddy.route_file} is missing although colours exist, so Caddy no longer "
                f"reads the file watcher writes (was {config.caddy.route_file.parent} removed after Caddy started?). "
                f"Write the colour that should serve into it (e.g. `echo blue > {config.caddy.route_file}`), then "
                f"restart Caddy so it mounts the directory again (`docker compose -p {config.project()} "
                "restart caddy`); nothing was changed"
            )
        live = view.live
        target = self.platform.color(live.color.other if live else Color.BLUE)
        assert view.route != target.color, "a deploy never targets the colour Caddy routes to"
        wanted = image or self.platform.images.image_id(f"{config.image}:{run.version}")
        found = view.observed.of(target.color)
        reuse = target.retained(found) and target.version(found) == run.version and wanted is not None
        run.plan = Plan(live, target, wanted, reuse and target.image_id(found) == wanted)
        run.digest = run.digest or recorded_digest(view, run.version, wanted)
        if (
            live
            and live.version == run.version
            and not live.unverified  # deployed again, it is verified on the other colour
            and wanted
            and view.observed.image_id(live.color) == wanted
        ):
            self.ledger.sync(view)
            message = f"{run.version} is already live on {live.color}"
            return run.result(self.progress, live.color, view.previous, message, noop=True)
        say(f"  live: {live.color} ({live.version}, {view.live_health})" if live else "  live: nothing yet")
        say(f"  target: {target.color}")
        if live is not None and view.live_health.healthy:
            check_route(config, live.color)
        return None

    def _ready(self, run: Run, view: View) -> None:
        """Pre-deploy hook, start, health, smoke: the target runs the version, healthy, or the
        run unwinds with nothing switched."""
        config, progress, target = self.config, self.progress, run.target
        if awaiting(waiting := view.recorded.pending):
            progress.say(f"  superseding: {promotion.describe(waiting)}; its containers go")
        self.ledger.note_pending(view, Pending(run.kind, run.version, target.color, "prepare"))
        if clear_preview(config.preview_file):
            progress.say(f"  removed {config.preview_file}, left by a deploy that stopped in its smoke phase")
        try:
            if config.hooks.pre_deploy:
                with progress.phase("pre-deploy hook", " ".join(config.hooks.pre_deploy)):
                    self._hook(run)
            with progress.phase("start", f"{target.name} at {run.version}"):
                self.ledger.mark("start")
                self._start(run, view)
            with progress.phase(
                "health", f"every {config.health.interval:g}s, up to {config.health.timeout:g}s"
            ):
                self.ledger.mark("health")
                target.wait_healthy(
                    timeout=config.health.timeout, interval=config.health.interval, progress=progress
                )
            if config.smoke.enabled:
                with progress.phase("smoke", f"{target.color} previewed at {config.preview_url}"):
                    self.ledger.mark("smoke")
                    run_smoke(config, run.version, target.color, progress)
        except BaseException as failure:
            unwind.fail(self, run, failure)
            raise

    def _hook(self, run: Run) -> None:
        live = run.plan.live if run.plan else None
        run_hook(
            self.config.hooks.pre_deploy,
            cwd=self.config.project_dir,
            timeout=self.config.hooks.pre_deploy_timeout,
            env={
                **self.config.compose_env(run.version),
                "WATCHER_VERSION": run.version,
                "WATCHER_COLOR": run.target.color.value,
                "WATCHER_PREVIOUS_VERSION": live.version if live else "",
            },
        )

    def _start(self, run: Run, view: View) -> None:
        """Start the target colour; its leftovers go first (they never serve: Caddy routes to the
        live colour alone), unless they are the retained containers of this very image."""
        assert run.plan is not None
        plan, target, say = run.plan, run.plan.target, self.progress.say
        # ours, not Docker's (who would create it as root), and writable before anything starts
        ensure_writable(self.config.caddy.route_file.parent, "the route file's directory (Caddy's run dir)")
        if plan.live is None and view.route is None:
            with self.ledger.fenced():
                self.switch.close()  # nothing is verified yet: Caddy answers 503, not the new colour
        self.platform.ensure_shared(run.version)
        run.started = True
        if plan.reuse:
            say(f"  reusing retained {target.color} containers of {run.version}")
            target.resume()
            return
        leftovers = target.instances()
        if leftovers:
            if any(c.running for c in leftovers):
                self._drain(target)
            listed = ", ".join(f"{c.name}: {c.version} {c.state}" for c in leftovers)
            say(f"  removing leftover {target.color} containers ({listed})")
            target.remove()
        ref, images = f"{self.config.image}:{run.version}", self.platform.images
        if plan.image and images.image_id(ref) != plan.image:
            say(f"  pointing {ref} at {plan.image[:19]} again (an earlier image of the tag)")
            images.tag(plan.image, ref)
        target.start(run.version)
        for line in target.one_shot_report():
            say(f"  {line}")

    def go_live(self, run: Run, view: View) -> DeployResult:
        """The second half of a deploy (and a promotion), from the guard check before the switch:
        the target colour runs the version, healthy (and smoke-tested)."""
        assert run.plan is not None
        config, progress, live, target = self.config, self.progress, run.plan.live, run.plan.target
        prepared = self._switch(run, view)
        with shielded(), progress.phase("record", f"{run.version} live on {target.color}"):
            self.ledger.record(prepared)
        drained = self.retire(self.platform.color(live.color), target) if live else True
        assert run.moved_at is not None
        run.receipt = receipts.take(config, self.access_log, run.kind, run.moved_at)
        message = f"{run.version} is live on {target.color}" + (
            f" (was {live.version} on {live.color})" if live else ""
        )
        progress.say(message)
        progress.say(f"  {run.receipt.summary()}")
        return run.result(
            self.progress, target.color, live, f"{message}; {run.receipt.summary()}", drained=drained
        )

    def _switch(self, run: Run, view: View) -> Prepared:
        """Guard, prepare the record, switch, verify (and bake); the run unwinds on any failure."""
        assert run.plan is not None
        config, progress, live, target = self.config, self.progress, run.plan.live, run.plan.target
        try:
            assert self.ledger.guard is not None
            self.ledger.guard.check()
            release = Release(
                target.color,
                run.version,
                digest=run.digest,
                image=run.plan.image or target.image_id(),
                how=run.how,
            )
            rolled_back = view.recorded.going_live(release, rolled_back_from=run.rolled_back_from)
            prepared = self.ledger.prepare(
                DeployState(release, live or view.previous, None, rolled_back=rolled_back)
            )
            with (
                shielded(),
                progress.phase("switch", f"traffic {live.color if live else 'nothing'} -> {target.color}"),
            ):
                self.ledger.mark("switch")
                with self.ledger.fenced():
                    self.switch.move_to(target)
                moved_at = time.time()
                run.switched, run.moved_at = True, moved_at
            old = live.color.value if live else None
            baking = bake.start(
                config, self.access_log, run.kind, old, target.color.value, moved_at, progress
            )
            what = f"{config.verify.url} answers {run.version} from {target.color}" + (
                " (and the bake)" if baking else ""
            )
            with progress.phase("verify", what):
                self.ledger.mark("verify")
                verify(config, target, run.version, baking, progress)
        except BaseException as failure:
            unwind.fail(self, run, failure)
            raise
        return prepared

    def retire(self, old: ColorStack, new: ColorStack) -> bool:
        """Drain the old colour, then stop (or remove) it, unless the new one is no longer healthy:
        then the old one is the last healthy colour and keeps running."""
        with self.progress.phase("drain", f"in-flight requests on {', '.join(old.upstreams()) or old.name}"):
            drained = self._drain(old)
        health = new.health()
        if not health.healthy:
            self.progress.say(
                f"  warning: {new.color} is {health}; leaving {old.color} running (`watcher status`)"
            )
            return drained
        verb = "stop" if self.config.drain.retain_old else "remove"
        with self.progress.phase(f"{verb} old", old.name):
            (old.stop if self.config.drain.retain_old else old.remove)()
        return drained

    def _drain(self, stack: ColorStack) -> bool:
        return wait_drained(
            self.caddy, stack.upstreams(), timeout=self.config.drain.timeout, progress=self.progress
        )


def _checked(version: str) -> str:
    try:
        return validate_tag(version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def recorded_digest(view: View, version: str, image: str | None) -> str | None:
    """The digest a local image had when it was pulled, as the state recorded it: a rollback
    reuses the image without asking the registry, and its release keeps saying what it runs."""
    for release in (view.previous, view.live):
        if release and release.version == version and release.digest and release.image in (None, image):
            return release.digest
    return None


def platform_of(config: AppConfig) -> Platform:
    """The app's platform (`platform` in its config): imported when a deploy needs it, so that
    processes that only read state (`status`, an idle `watcher run`) do not load the Docker SDK."""
    if config.platform == "swarm":
        from watcher.platforms.swarm import SwarmPlatform

        return SwarmPlatform(config)
    from watcher.platforms.compose import ComposePlatform

    return ComposePlatform(config)
