"""Where triggers put their requests: the narrow face of the deploy queue they need, and the
adapter from the real queue (watcher/queue) to it.

Triggers only enqueue; they never deploy inline. Keeping them behind these Protocols lets the
webhook receiver and the poller be read (and unit-tested) without the queue's internals, while
`RedisSink` makes the end-to-end path the real one: the same DeployQueue, Suspension and keys
the workers and `watcher enqueue/pause/resume` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import redis

from watcher.queue.queue import DeployQueue
from watcher.queue.suspension import Suspension as QueueSuspension


@dataclass(frozen=True)
class EnqueueOutcome:
    job_id: str
    created: bool      # False: the queue found the request already waiting, or already live
    reason: str


@dataclass(frozen=True)
class LiveVersion:
    version: str
    digest: str | None


class Enqueuer(Protocol):
    def enqueue(self, app: str, version: str, *, source: str, requested_by: str,
                digest: str | None) -> EnqueueOutcome: ...

    def live(self, app: str) -> LiveVersion | None:
        """What the last deploy under the lock put live (None: nothing recorded)."""

    def waiting(self, app: str) -> str | None:
        """The version of the newest waiting job, if any."""


class Suspension(Protocol):
    def pause(self, app: str, *, by: str, reason: str) -> dict[str, Any]: ...

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None: ...

    def state(self, app: str) -> dict[str, Any] | None: ...


class RedisSink:
    """Enqueuer and Suspension over the real Redis queue."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def _queue(self, app: str) -> DeployQueue:
        return DeployQueue(self.client, app)

    def enqueue(self, app: str, version: str, *, source: str, requested_by: str,
                digest: str | None) -> EnqueueOutcome:
        done = self._queue(app).enqueue(version, source=source, requested_by=requested_by, digest=digest)
        return EnqueueOutcome(done.job.id, not done.noop, done.message)

    def live(self, app: str) -> LiveVersion | None:
        live = self._queue(app).live()
        return LiveVersion(live.version, live.digest) if live else None

    def waiting(self, app: str) -> str | None:
        jobs = self._queue(app).waiting()
        return jobs[-1].version if jobs else None

    def pause(self, app: str, *, by: str, reason: str) -> dict[str, Any]:
        return QueueSuspension(self.client, app).pause(by=by, reason=reason)

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        return QueueSuspension(self.client, app).resume()

    def state(self, app: str) -> dict[str, Any] | None:
        return QueueSuspension(self.client, app).paused()
