"""The blue-green deploy flow, phase by phase. Read `Deployment.deploy` top to bottom.

    pull -> inspect -> pre-deploy hook -> start other colour -> health -> [guard] SWITCH
         -> verify (window; failure switches back) -> record -> drain old -> stop old

Until the state is recorded, any failure or interrupt runs `_abort`: traffic goes back to the
colour that was live, the new colour drains and is removed. After that point the new version
is live and recorded, and a failure while draining or stopping the old colour leaves both
running, which is safe.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator, Protocol

from watcher.backends.caddy import CaddyAdmin
from watcher.backends.compose import ComposeError
from watcher.backends.containers import Containers
from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError
from watcher.config import Config
from watcher.engine.color import Color
from watcher.engine.drain import wait_drained
from watcher.engine.health_check import HealthCheckFailed, wait_until_healthy
from watcher.engine.hooks import run_hook
from watcher.engine.progress import Progress
from watcher.engine.reconcile import Observed, View, reconcile
from watcher.engine.stack import Stacks
from watcher.engine.state import DeployState, Pending, Release, StateStore
from watcher.engine.switch import TrafficSwitch
from watcher.engine.verification import answered_version, wait_for_version
from watcher.errors import DeployFailed, GuardLost, UsageError
from watcher.interrupts import shielded
from watcher.validation import validate_tag


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
    digest: str | None = None   # what the tag pointed at when pulled (None: used the local image)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "version": self.version, "color": self.color.value if self.color else None,
                "previous": self.previous.to_dict() if self.previous else None, "noop": self.noop,
                "drained": self.drained, "phases": {k: round(v, 3) for k, v in self.phases.items()},
                "total": round(self.total, 3), "message": self.message,
                "digest": self.digest}


class Deployment:
    """The engine. It knows Docker Compose and Caddy; it knows nothing of queues or webhooks."""

    def __init__(self, config: Config, *, progress: Progress | None = None, docker: Containers | None = None,
                 registry: RegistryClient | None = None) -> None:
        self.config = config
        self.progress = progress or Progress()
        self.docker = docker or Containers()
        self.stacks = Stacks(config, self.docker)
        self.switch = TrafficSwitch(config.route_file)
        self.store = StateStore(config.state_dir, config.deployment_color_file)
        self.caddy = CaddyAdmin(config.caddy_admin)
        self.registry = registry
        self._guard: Guard | None = None

    # -- reading -------------------------------------------------------------------------

    def observe(self) -> Observed:
        return Observed(self.switch.current(), {c: self.stacks.containers(c) for c in Color})

    def view(self) -> View:
        return reconcile(self.store.load(), self.observe())

    # -- deploy --------------------------------------------------------------------------

    def deploy(self, version: str, *, guard: Guard, kind: str = "deploy", prefer_local: bool = False) -> DeployResult:
        """Put `version` live on the idle colour with zero failed requests, or change nothing."""
        _checked(version)
        self._guard = guard
        progress = self.progress

        with progress.phase("pull", f"{self.stacks.image(version)}"):
            digest = self._pull(version, prefer_local)

        with progress.phase("inspect", "live colour from state, Caddy and Docker"):
            view = self.view()
            for warning in view.warnings:
                progress.say(f"  note: {warning}")
            live = view.live
            if live and live.version == version and self._same_image(live.color, version):
                self._sync_state(view)
                return DeployResult(kind, version, live.color, view.previous, dict(progress.durations),
                                    progress.total, noop=True, message=f"{version} is already live on {live.color}",
                                    digest=digest)
            target = live.color.other if live else (view.observed.route or Color.BLUE)
            progress.say(f"  live: {live.color} ({live.version})" if live else "  live: nothing yet")
            progress.say(f"  target: {target}")

        self._note_pending(view, Pending(kind, version, target, "prepare"))
        switched = False
        try:
            if self.config.pre_deploy:
                with progress.phase("pre-deploy hook", " ".join(self.config.pre_deploy)):
                    run_hook(self.config.pre_deploy, cwd=self.config.project_dir, timeout=self.config.pre_deploy_timeout,
                             env={self.config.version_env: version, "WATCHER_VERSION": version,
                                  "WATCHER_COLOR": target.value,
                                  "WATCHER_PREVIOUS_VERSION": live.version if live else ""})

            with progress.phase("start", f"{self.config.project(target.value)} at {version}"):
                self._mark("start")
                self.config.route_file.parent.mkdir(parents=True, exist_ok=True)  # ours, not Docker's
                self.stacks.ensure_shared(version)
                self._clear_leftovers(target, version)
                self.stacks.start(target, version)

            with progress.phase("health", f"every {self.config.health_interval:g}s, "
                                          f"up to {self.config.health_timeout:g}s"):
                self._mark("health")
                wait_until_healthy(lambda: self.stacks.containers(target), self.stacks.service_names, self.docker,
                                   timeout=self.config.health_timeout, interval=self.config.health_interval,
                                   progress=progress)

            guard.check()
            with shielded(), progress.phase("switch", f"traffic {live.color if live else 'nothing'} -> {target}"):
                self._mark("switch")
                with self.fenced():
                    self.switch.route_to(target)
                switched = True

            with progress.phase("verify", f"{self.config.verify_url} answers {version}"):
                self._mark("verify")
                self._verify(target, version)

            with shielded():
                self._save(DeployState(Release(target, version), live, None))
        except BaseException as failure:
            self._abort(target, live, switched, failure)
            raise

        drained = True
        if live:
            old = [s.upstream(live.color.value) for s in self.config.services]
            with progress.phase("drain", f"in-flight requests on {', '.join(old)}"):
                drained = wait_drained(self.caddy, old, timeout=self.config.drain_timeout, progress=progress)
            verb = "stop" if self.config.retain_old else "remove"
            with progress.phase(f"{verb} old", f"{self.config.project(live.color.value)} ({live.version})"):
                (self.stacks.stop if self.config.retain_old else self.stacks.remove)(live.color)
        message = f"{version} is live on {target}" + (f" (was {live.version} on {live.color})" if live else "")
        progress.say(message)
        return DeployResult(kind, version, target, live, dict(progress.durations), progress.total,
                            drained=drained, message=message, digest=digest)

    def rollback(self, *, guard: Guard, to: str | None = None) -> DeployResult:
        """Back to the previous version (or `to`): instant when its colour is retained."""
        if to is not None:
            _checked(to)
        view = self.view()
        if to is None:
            if view.previous is None:
                raise UsageError("nothing to roll back to: no previous version is recorded "
                                 "(use `watcher rollback --to VERSION`)")
            to = view.previous.version
        if view.live and view.live.version == to:
            raise UsageError(f"{to} is already live on {view.live.color}")
        return self.deploy(to, guard=guard, kind="rollback", prefer_local=True)

    # -- phases ---------------------------------------------------------------------------

    def _pull(self, version: str, prefer_local: bool) -> str | None:
        """Pull `version`; return the digest the registry gave (None when the local image is used)."""
        image = self.stacks.image(version)
        if prefer_local and self.docker.image_present(image):
            self.progress.say(f"  {image} is present locally; not pulling")
            return None
        ref = ImageRef.parse(self.config.image)
        registry = self.registry or RegistryClient(username=self.config.registry_username,
                                                   password=self.config.registry_password)
        try:
            digest = registry.manifest_digest(ref, version)
        except NotFound:
            raise DeployFailed(f"{image} does not exist in the registry; nothing was changed") from None
        except RegistryError as exc:
            raise DeployFailed(f"cannot check {image} in the registry: {exc}; nothing was changed") from None
        finally:
            if self.registry is None:
                registry.close()
        self.progress.say(f"  {image} is {digest}")
        try:
            self.stacks.pull(version)
        except ComposeError as exc:
            raise DeployFailed(f"pull failed, nothing was changed: {exc}") from None
        return digest

    def _same_image(self, color: Color, version: str) -> bool:
        """Whether `color` already runs the image `version` now points at (a moved tag is new)."""
        local = self.docker.image_id(self.stacks.image(version))
        return local is not None and all(c.image_id == local for c in self.stacks.containers(color))

    def _clear_leftovers(self, target: Color, version: str) -> None:
        """Containers of the target colour that are not the retained `version` go first."""
        leftovers = self.stacks.containers(target)
        if not leftovers:
            return
        if any(c.running for c in leftovers):
            upstreams = [s.upstream(target.value) for s in self.config.services]
            wait_drained(self.caddy, upstreams, timeout=self.config.drain_timeout, progress=self.progress)
        if self.stacks.version(target, leftovers) == version and not any(c.running for c in leftovers):
            self.progress.say(f"  reusing retained {target} containers of {version}")
            return
        self.progress.say(f"  removing leftover {target} containers "
                          f"({', '.join(f'{c.name}: {c.version} {c.state}' for c in leftovers)})")
        self.stacks.remove(target)

    def _verify(self, target: Color, version: str) -> None:
        """The new version must answer through Caddy, then stay healthy for the window."""
        cfg = self.config
        if not wait_for_version(cfg.verify_url, version, cfg.verify_header, timeout=cfg.verify_timeout,
                                progress=self.progress):
            raise DeployFailed(f"{cfg.verify_url} did not answer {version} within {cfg.verify_timeout:g}s "
                               "after the switch")
        deadline = time.monotonic() + cfg.verify_window
        while time.monotonic() < deadline:
            sick = [c for c in self.stacks.containers(target) if not c.ready]
            if sick:
                raise DeployFailed(f"{sick[0].name} turned {sick[0].health or sick[0].state} "
                                   "during the verification window")
            seen = answered_version(cfg.verify_url, cfg.verify_header)
            if seen != version:
                raise DeployFailed(f"{cfg.verify_url} answered {seen!r} instead of {version} "
                                   "during the verification window")
            self.progress.waiting(f"the verification window ({version} healthy and answering)",
                                  cfg.verify_window - (deadline - time.monotonic()), cfg.verify_window)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _abort(self, target: Color, live: Release | None, switched: bool, failure: BaseException) -> None:
        """Back to the colour that was live; drain and remove the new one. Never interrupted.

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
            progress = self.progress
            progress.say(f"aborting: {failure}")
            if isinstance(failure, HealthCheckFailed) and failure.details:
                progress.say(failure.details)
            try:
                if switched and live:
                    progress.say(f"  switching traffic back to {live.color} ({live.version})")
                    with self.fenced():
                        self.switch.route_to(live.color)
                if switched:
                    upstreams = [s.upstream(target.value) for s in self.config.services]
                    wait_drained(self.caddy, upstreams, timeout=self.config.drain_timeout, progress=progress)
                if live is None and switched:
                    with self.fenced():
                        self.switch.clear()
                progress.say(f"  removing {self.config.project(target.value)}")
                self.stacks.remove(target)
            except Exception as exc:  # report, and leave the trail in state for `status`
                progress.say(f"  abort step failed: {exc}; run `watcher status`")
                return
            state = self.store.load()
            try:
                self._save(replace(state, pending=None))
            except GuardLost as exc:
                progress.say(f"  {exc}: the state is left to the new holder")
            progress.say(f"{live.version} is still live on {live.color}" if live else "nothing is live")

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
        with self.fenced():
            self.store.save(state)

    def _note_pending(self, view: View, pending: Pending) -> None:
        """Record the reconciled truth plus what this deploy is about to do."""
        self._save(DeployState(view.live, view.previous, pending))

    def _mark(self, phase: str) -> None:
        state = self.store.load()
        if state.pending:
            self._save(replace(state, pending=replace(state.pending, phase=phase)))

    def _sync_state(self, view: View) -> None:
        if not view.in_sync:
            self._save(DeployState(view.live, view.previous, None))


def _checked(version: str) -> str:
    try:
        return validate_tag(version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
