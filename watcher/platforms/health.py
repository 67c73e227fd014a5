"""The health of one colour, judged in one place from what Docker says of its containers (their
health set by watcher's own GET for a service with a health path: http_health.py).

Every move of traffic asks this (switch.py), the health wait asks it (health_check.py), and
`status` shows it. Docker health is a *property* of a colour: it never decides which colour is
live (the route file does; see reconcile.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from watcher.backends.instance import SETTLE, Instance

#: States from which a colour that is starting will not become healthy by waiting longer
#: (`stopped`: every container exited, e.g. a crash at start without a restart policy).
FAILED = frozenset({"unhealthy", "restarting", "exited", "stopped"})


@dataclass(frozen=True)
class Health:
    """healthy | starting | unhealthy | restarting | exited | stopped | absent, and why."""

    state: str
    reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    @property
    def failed(self) -> bool:
        """True when waiting longer cannot help: the health wait ends at once."""
        return self.state in FAILED

    def __str__(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason else self.state


def judge(
    containers: Sequence[Instance],
    services: Sequence[str],
    restarts_before: dict[str, int] | None = None,
    one_shots: Collection[str] = (),
) -> Health:
    """The colour's health. `restarts_before` (container id -> restart count when the wait began)
    turns any restart since then into `restarting`: a crash loop can look `running` between
    two restarts. A one-shot that exited 0 is done, not down; one that exited otherwise failed."""
    if not containers:
        return Health("absent", "no containers")
    shots = [c for c in containers if c.service in one_shots]
    rest = [c for c in containers if c.service not in one_shots]
    failed = _first(shots, lambda c: c.state in ("exited", "dead") and c.exit_code != 0)
    if failed is not None:
        return Health("exited", f"one-shot {failed.name} exited (code {failed.exit_code})")
    if shots and rest:
        health = judge(rest, [s for s in services if s not in one_shots], restarts_before)
        pending = _first(shots, lambda c: c.state not in ("exited", "dead"))
        if health.healthy and pending is not None:
            return Health("starting", f"one-shot {pending.name} is {pending.state}")
        return health
    restarted = [
        c
        for c in containers
        if restarts_before is not None and c.restart_count > restarts_before.get(c.id, 0)
    ]
    worst = _first(containers, lambda c: c.state == "restarting") or (restarted[0] if restarted else None)
    if worst is not None:
        return Health(
            "restarting",
            f"{worst.name} is restarting (exit code {worst.exit_code}, {worst.restart_count} restarts)",
        )
    if all(c.state in ("exited", "dead") for c in containers):
        return Health("stopped", ", ".join(c.name for c in containers) + " stopped")
    dead = _first(containers, lambda c: c.state in ("exited", "dead"))
    if dead is not None:
        return Health("exited", f"{dead.name} exited (code {dead.exit_code})")
    sick = _first(containers, lambda c: c.running and c.health == "unhealthy")
    if sick is not None:
        return Health("unhealthy", f"{sick.name} is unhealthy" + (f": {sick.probe}" if sick.probe else ""))
    missing = [s for s in services if not any(c.service == s for c in containers)]
    waiting = _first(containers, lambda c: not c.ready)
    if missing or waiting is not None:
        what = (
            f"{waiting.name}: {waiting.probe or waiting.health or _settling(waiting)}"
            if waiting
            else f"no container yet for {', '.join(missing)}"
        )
        return Health("starting", what)
    return Health("healthy")


def _settling(container: Instance) -> str:
    if container.running and container.up_for is not None:
        return f"up {container.up_for:.1f}s of the {SETTLE:g}s a container without a healthcheck must stay up"
    return container.state


def _first(containers: Sequence[Instance], test: Callable[[Instance], bool]) -> Instance | None:
    return next((c for c in containers if test(c)), None)
