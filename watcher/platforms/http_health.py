"""Health judged by watcher's own HTTP GET, for services that declare `health = { path = ... }`:
images without a shell or `wget`/`curl` (distroless, scratch, many Go and Java images) cannot run
a Docker healthcheck, so watcher asks each running container itself, on every look.

How one look judges a container of such a service (its Docker healthcheck, if any, is ignored):

- **healthy**: the GET answered 2xx or 3xx within a few seconds.
- **starting**: nothing answered yet: the connection was refused (the server is not listening
  yet), or accepted without an answer in time. The health wait bounds this by
  HEALTH_CHECK_TIMEOUT, as it bounds Docker's `starting`.
- **unhealthy**: it answered nothing but another status (404, 500, 503...) for `WRONG_FOR`
  seconds, twice at least, as this process saw it (Docker's default 3 retries at a short
  interval); a wrong answer before that counts as starting, so an app that answers 503 for a
  moment while it warms up is not failed. Counted in time, not in looks: some paths look several
  times in a row. A single look (the check right before traffic moves, `status`) is never
  healthy on a wrong answer.
- **cannot be reached** (no route, no connection within a second on any of the container's
  addresses): starting, with a reason that says where watcher must run (docs/how-it-works.md,
  "Health by HTTP").

A container that exits or restart-loops is judged by Docker's state first (health.py), so the
wait still fails at once for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from watcher.backends.http_probe import Answer, get, nearest_first
from watcher.backends.instance import Instance
from watcher.config.settings import Service

#: Seconds of nothing but wrong answers that make a container unhealthy.
WRONG_FOR = 3.0
#: At most this many seconds between two looks of the health wait: no Docker event says when a
#: GET would succeed, so the wait asks as often as kamal-proxy does.
WAIT_INTERVAL = 1.0
UNREACHABLE_HINT = (
    "watcher cannot reach the container from where it runs: run it on the Docker host or in its "
    "container on the app's network (Docker Desktop cannot route to container addresses)"
)


class HttpHealth:
    """The HTTP judgement of one colour's services that declare a health path; remembers, per
    container, since when it answers wrong and the address that answered."""

    def __init__(
        self,
        services: Sequence[Service],
        ask: Callable[[str, int, str], Answer] = get,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = {
            s.name: (s.health_path, s.health_port or s.port)
            for s in services
            if s.health_path and (s.health_port or s.port)
        }
        self._ask, self._clock = ask, clock
        self._wrong: dict[str, tuple[float, int]] = {}  # container id -> (first wrong answer, how many)
        self._address: dict[str, str] = {}

    def wait_interval(self, interval: float) -> float:
        """The health wait's poll: no Docker event tells when a GET would succeed, so ask often."""
        return min(interval, WAIT_INTERVAL) if self.checks else interval

    def judged(self, containers: list[Instance]) -> list[Instance]:
        """`containers`, those of a checked service that run with the health their GET gives."""
        return [self._judge(c) if c.running and c.service in self.checks else c for c in containers]

    def _judge(self, container: Instance) -> Instance:
        path, port = self.checks[container.service]
        answer = self._reach(container, path, port)
        if answer is None:
            where = ", ".join(container.addresses) or "no address"
            return replace(container, health="starting", probe=f"{where}: {UNREACHABLE_HINT}")
        if answer.ok or answer.status is None:
            self._wrong.pop(container.id, None)
            return replace(container, health="healthy" if answer.ok else "starting", probe=str(answer))
        since, count = self._wrong.get(container.id, (self._clock(), 0))
        self._wrong[container.id] = (since, count + 1)
        lasted = self._clock() - since
        if count + 1 >= 2 and lasted >= WRONG_FOR:
            return replace(container, health="unhealthy", probe=f"{answer} for {lasted:.0f}s")
        return replace(container, health="starting", probe=f"{answer} (unhealthy if it lasts {WRONG_FOR:g}s)")

    def _reach(self, container: Instance, path: str, port: int) -> Answer | None:
        """The first answer from an address reachable from here: the one that answered last time
        first, then those on a network this host is on."""
        known = self._address.get(container.id)
        for address in sorted(nearest_first(container.addresses), key=lambda a: a != known):
            answer = self._ask(address, port, path)
            if answer.reached:
                self._address[container.id] = address
                return answer
        return None
