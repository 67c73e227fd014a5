"""What is really live: the recorded state checked against what Caddy routes to and what
Docker runs. When they disagree we say so and trust what serves traffic, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.backends.containers import ContainerInfo
from watcher.engine.color import Color
from watcher.engine.state import DeployState, Release


@dataclass(frozen=True)
class Observed:
    """What Caddy's route file and Docker show right now."""

    route: Color | None
    containers: dict[Color, list[ContainerInfo]]

    def ready(self, color: Color) -> bool:
        found = self.containers.get(color, [])
        return bool(found) and all(c.ready for c in found)

    def running(self, color: Color) -> bool:
        return any(c.running for c in self.containers.get(color, []))

    def version(self, color: Color) -> str | None:
        versions = {c.version for c in self.containers.get(color, [])}
        return versions.pop() if len(versions) == 1 else None


@dataclass(frozen=True)
class View:
    """The reconciled truth: the colour serving traffic, what came before, and what differs."""

    live: Release | None
    previous: Release | None
    recorded: DeployState
    observed: Observed
    warnings: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.recorded.live == self.live and self.recorded.pending is None


def reconcile(recorded: DeployState, observed: Observed) -> View:
    warnings: list[str] = []
    pending = recorded.pending
    if pending:
        warnings.append(f"a {pending.kind} of {pending.version} to {pending.color} (pid {pending.pid} on "
                        f"{pending.host}, started {pending.started}) was interrupted during '{pending.phase}'")

    # Caddy routes to the route file's colour first (blue when there is none yet) and falls
    # back to the other colour when the first is down: the serving colour is the first ready.
    first = observed.route or Color.BLUE
    serving = next((c for c in (first, first.other) if observed.ready(c)), None)
    live: Release | None = None
    if serving is not None:
        version = observed.version(serving) or "unknown"
        since = recorded.live.since if recorded.live and recorded.live.color == serving \
            and recorded.live.version == version else ""
        live = Release(serving, version, since) if since else Release(serving, version)
        if observed.route is not None and serving != observed.route:
            warnings.append(f"Caddy routes to {observed.route} first, but {observed.route} is not healthy: "
                            f"traffic is served by {serving} (fallback)")
    elif observed.running(Color.BLUE) or observed.running(Color.GREEN):
        warnings.append("no colour is healthy: Caddy has nothing healthy to send traffic to")

    rec = recorded.live
    if rec and (live is None or (rec.color, rec.version) != (live.color, live.version)):
        now = f"{live.color} ({live.version})" if live else "nothing"
        warnings.append(f"recorded state says {rec.color} ({rec.version}) is live, but traffic goes to {now}")

    previous = recorded.previous
    if rec and live and (rec.color, rec.version) != (live.color, live.version):
        # An interrupted deploy switched traffic without recording it: what was live before
        # is what a rollback should return to.
        previous = rec if rec.color != live.color else recorded.previous
    return View(live, previous, recorded, observed, warnings)
