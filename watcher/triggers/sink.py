"""Where triggers put their requests: the narrow face of the deploy queue they need, and the
adapter from the real queue (watcher/queue) to it.

Triggers only enqueue; they never deploy inline. Keeping them behind these Protocols lets the
webhook receiver and the poller be read (and unit-tested) without the queue's internals, while
`RedisSink` makes the end-to-end path the real one: the same DeployQueue, Suspension and keys
the workers and `watcher enqueue/pause/resume` use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from watcher.config import Config, Retention
from watcher.engine.reconcile import served
from watcher.engine.state import StateStore
from watcher.engine.switch import TrafficSwitch
from watcher.queue.promotion import Promotions
from watcher.queue.queue import DeployQueue, Live
from watcher.queue.suspension import Suspension as QueueSuspension


@dataclass(frozen=True)
class EnqueueOutcome:
    job_id: str
    created: bool  # False: the queue found the request already waiting, or already live
    reason: str


@dataclass(frozen=True)
class LiveVersion:
    version: str
    digest: str | None
    color: str = ""


class Enqueuer(Protocol):
    def enqueue(
        self,
        app: str,
        version: str,
        *,
        source: str,
        requested_by: str,
        digest: str | None,
        repository: str | None = None,
    ) -> EnqueueOutcome: ...

    def live(self, app: str) -> LiveVersion | None:
        """What serves now, from the engine's route file and state (None: nothing live)."""

    def waiting(self, app: str) -> str | None:
        """The version of the newest waiting job, if any."""

    def act(self, app: str, action: str, *, requested_by: str) -> EnqueueOutcome:
        """Queue a promote or abort of the job awaiting promotion (UsageError: nothing to act on)."""


class Suspension(Protocol):
    def pause(self, app: str, *, by: str, reason: str, until: float | None = None) -> dict[str, Any]: ...

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None: ...

    def state(self, app: str) -> dict[str, Any] | None: ...


class RedisSink:
    """Enqueuer and Suspension over the real Redis queue. What is live comes from `live_of`, which
    reads the engine's one source (the route file and the state beside it), never a copy in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        live_of: Callable[[str], LiveVersion | None],
        prefix: str = "",
        retention: Retention = Retention(),
    ) -> None:
        self.client = client
        self.live_of = live_of
        self.prefix = prefix
        self.retention = retention

    def _queue(self, app: str) -> DeployQueue:
        return DeployQueue(self.client, app, prefix=self.prefix, retention=self.retention)

    def enqueue(
        self,
        app: str,
        version: str,
        *,
        source: str,
        requested_by: str,
        digest: str | None,
        repository: str | None = None,
    ) -> EnqueueOutcome:
        live = self.live_of(app)
        done = self._queue(app).enqueue(
            version,
            source=source,
            requested_by=requested_by,
            digest=digest,
            live=Live(live.version, live.color, live.digest) if live else None,
            repository=repository,
        )
        return EnqueueOutcome(done.job.id, not done.noop, done.message)

    def live(self, app: str) -> LiveVersion | None:
        return self.live_of(app)

    def waiting(self, app: str) -> str | None:
        jobs = self._queue(app).waiting()
        return jobs[-1].version if jobs else None

    def act(self, app: str, action: str, *, requested_by: str) -> EnqueueOutcome:
        asked = Promotions(self._queue(app)).ask(action, requested_by=requested_by)
        assert asked.job is not None
        return EnqueueOutcome(asked.job.id, asked.outcome == "queued", asked.message)

    def pause(self, app: str, *, by: str, reason: str, until: float | None = None) -> dict[str, Any]:
        return QueueSuspension(self.client, app, self.prefix).pause(by=by, reason=reason, until=until)

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        return QueueSuspension(self.client, app, self.prefix).resume()

    def state(self, app: str) -> dict[str, Any] | None:
        return QueueSuspension(self.client, app, self.prefix).paused()


def live_reader(*configs: Config) -> Callable[[str], LiveVersion | None]:
    """What serves each of these apps, read from its route file and state on this host."""
    sources = {
        c.app: (StateStore(c.state_dir, c.deployment_color_file), TrafficSwitch(c.route_file))
        for c in configs
    }

    def live_of(app: str) -> LiveVersion | None:
        if app not in sources:
            return None
        store, switch = sources[app]
        release = served(store.load(), switch.current())
        if release is None or release.version == "unknown":
            return None
        return LiveVersion(release.version, release.digest, release.color.value)

    return live_of
