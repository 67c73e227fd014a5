"""What is live: one source of truth, the route file, with the recorded state beside it.

The colour Caddy is told to route to *is* the live colour, whatever Docker says of its health:
health is shown and warned about, never a reason to call another colour live (a flapping
healthcheck must not turn the serving colour into a deploy's target). The recorded state adds
what the route file cannot say: since when, which image, what came before, and a deploy that was
interrupted. Where the two disagree we say so and trust the route file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from watcher.backends.instance import Instance
from watcher.engine.state import AWAITING, PROMOTE, DeployState, Pending, Release
from watcher.platforms.base import agreed, of_image
from watcher.platforms.color import Color
from watcher.platforms.health import Health, judge


@dataclass(frozen=True)
class Observed:
    """What the route file and the platform show right now."""

    route: Color | None
    instances: dict[Color, list[Instance]]
    services: tuple[str, ...] = ("web",)
    image: str = ""  # the app's image repository: only its containers give a colour's version
    closed: bool = False  # the route file says `none`: deliberately nothing live
    following: frozenset[str] = frozenset()  # services whose tag is the version (a companion's too)
    one_shots: frozenset[str] = frozenset()  # services that exit 0 once per deploy, by design

    def of(self, color: Color) -> list[Instance]:
        return self.instances.get(color, [])

    def health(self, color: Color) -> Health:
        return judge(self.of(color), self.services, one_shots=self.one_shots)

    def app(self, color: Color) -> list[Instance]:
        return of_image(self.of(color), self.image) if self.image else self.of(color)

    def version(self, color: Color) -> str | None:
        companions = [c for c in self.of(color) if c.service in self.following]
        return agreed({c.version for c in self.app(color) + companions})

    def image_id(self, color: Color) -> str | None:
        return agreed({c.image_id for c in self.app(color)})

    @property
    def anything(self) -> bool:
        return any(self.instances.values())


@dataclass(frozen=True)
class View:
    """The reconciled truth: the live colour (the route's), its health, what came before."""

    live: Release | None
    previous: Release | None
    recorded: DeployState
    observed: Observed
    warnings: list[str] = field(default_factory=list)

    @property
    def route(self) -> Color | None:
        return self.observed.route

    @property
    def live_health(self) -> Health:
        return self.observed.health(self.live.color) if self.live else Health("absent", "nothing is live")

    @property
    def route_lost(self) -> bool:
        """No route file although colours exist: Caddy falls back, and watcher cannot know where."""
        return (
            self.route is None
            and not self.observed.closed
            and (self.observed.anything or self.recorded.live is not None)
        )

    @property
    def in_sync(self) -> bool:
        recorded = self.recorded.live
        same = (recorded is None and self.live is None) or (
            recorded is not None and recorded.same_as(self.live)
        )
        return same and self.recorded.pending is None and not self.route_lost


def reconcile(recorded: DeployState, observed: Observed, holder: dict[str, Any] | None = None) -> View:
    """`holder`: who holds the host lock (`status` knows), so that a pending note written by
    that very process reads as running, not interrupted."""
    warnings: list[str] = []
    pending = recorded.pending
    if pending and pending.phase == AWAITING:
        warnings.append(
            f"{pending.version} on {pending.color} awaits promotion until {pending.until} "
            "(`watcher promote` switches to it, `watcher abort` removes it)"
        )
    elif pending:
        warnings.append(in_flight(pending, holder))

    route = observed.route
    live: Release | None = None
    if route is not None:
        live = _live(recorded.live, route, observed)
        health = observed.health(route)
        if not health.healthy:
            warnings.append(f"the live colour {route} is {health}: Caddy routes to it alone")
    elif not observed.closed and (observed.anything or recorded.live is not None):
        warnings.append(
            "the route file is missing while colours exist (was the run directory removed?): "
            "Caddy falls back to whichever colour answers; deploys refuse until it is restored"
        )

    if live is not None and live.unverified:
        warnings.append(unverified_warning(live))

    rec = recorded.live
    if rec and live and not rec.same_as(live):
        warnings.append(
            f"recorded state says {rec.color} ({rec.version}) is live, "
            f"but Caddy routes to {live.color} ({live.version})"
        )

    previous = recorded.previous
    if rec and live and rec.color != live.color:
        # A deploy switched traffic and died before recording it: what was live before is
        # what a rollback returns to.
        previous = rec
    return View(live, previous, recorded, observed, warnings)


def in_flight(pending: Pending, holder: dict[str, Any] | None) -> str:
    """What the note of a run that has not ended says: running, when the host lock's holder is
    the process that wrote it, else interrupted (its process is gone)."""
    started = "" if pending.kind == PROMOTE else f", started {pending.started}"  # a promote keeps the wait's
    what = f"a {pending.kind} of {pending.version} to {pending.color} (pid {pending.pid} on {pending.host}{started})"
    if holder is not None and (holder.get("pid"), holder.get("host")) == (pending.pid, pending.host):
        return f"{what} is running, in phase '{pending.phase}'"
    return f"{what} was interrupted during '{pending.phase}'"


def unverified_warning(live: Release) -> str:
    return (
        f"{live.version} on {live.color} serves unverified: its verification failed (or never ended) "
        f"after the switch, and the old colour was down, so traffic stayed on it; deploy a "
        "version that passes verification"
    )


def _live(recorded: Release | None, route: Color, observed: Observed) -> Release:
    """The route's colour as a release: the version its app containers run, and the recorded
    details (since, digest, image) when they describe the same thing."""
    version = observed.version(route)
    image = observed.image_id(route)
    if (
        recorded is not None
        and recorded.color == route
        and version in (None, recorded.version)
        and (image is None or recorded.image in (None, image))
    ):
        return replace(recorded, image=recorded.image or image)
    return Release(route, version or "unknown", "", None, image)


def served(recorded: DeployState, route: Color | None) -> Release | None:
    """What serves, read without Docker (for the triggers and the queue's no-op rule): the route's
    colour with the recorded release when they agree, else that colour with an unknown version."""
    if route is None:
        return None
    if recorded.live is not None and recorded.live.color == route:
        return recorded.live
    return Release(route, "unknown", "")
