"""Manual promotion in the queue: the deploy job that waits (status `awaiting promotion`, its
id in `watcher:<app>:awaiting`), and the promote and abort jobs that act on it.

A promote or abort is a job like a deploy, run by a worker under the deploy lock, so one colour
swap at a time per app holds. It is queued only while a job waits for promotion and no deploy
waits or runs (that newer push supersedes the awaited one: there is nothing left to promote);
a newer promote or abort supersedes one that waits. The awaited job is settled, fenced like any
job write, once the state file says its wait ended: promoted (succeeded), aborted (cancelled),
expired (failed) or removed by a newer deploy (superseded). The host keeps a copy of the awaited
job from its mark to its settling (continuity.py), for a Redis that loses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from watcher.errors import GuardLost, UsageError
from watcher.queue.job import ACTIONS, Job, Status
from watcher.queue.lock import DeployLock
from watcher.queue.queue import DeployQueue


@dataclass(frozen=True)
class Asked:
    """What `ask` did: queued a promote or abort job, or why not (`outcome`)."""

    job: Job | None
    outcome: str  # "queued", "already-queued" (job: the one that waits)

    @property
    def message(self) -> str:
        assert self.job is not None
        if self.outcome == "already-queued":
            return (
                f"job {self.job.id} ({self.job.source} {self.job.version}) is already queued: nothing added"
            )
        return f"job {self.job.id} queued: {self.job.source} {self.job.version} (job {self.job.awaits})"


class Promotions:
    """One app's awaited job and the requests that act on it."""

    def __init__(self, queue: DeployQueue) -> None:
        self.queue = queue
        self.client: redis.Redis = queue.client
        self.key = queue.keys.awaiting

    def awaited(self) -> Job | None:
        """The job awaiting promotion, if any: a Redis that lost it gets it back first, so that
        `watcher promote` finds it and queues its promote (continuity.py)."""
        if self.queue.continuity is not None:
            self.queue.continuity.check()
        job_id = self.client.get(self.key)
        job = self.queue.get(job_id) if job_id else None
        return job if job is not None and job.status is Status.AWAITING else None

    def ask(self, action: str, *, requested_by: str) -> Asked:
        """Queue a promote or abort of the awaited job; UsageError when there is nothing to act on."""
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        q = self.queue
        job_id, outcome = q.write("ask", action, requested_by, q.app)
        if outcome == "none":
            raise UsageError(
                f"no job of {q.app} awaits promotion: nothing to {action} (`watcher queue`, `watcher status`)"
            )
        if outcome in ("newer-running", "newer-queued"):
            other = q.get(job_id)
            what = f"job {job_id} ({other.kind} {other.version})" if other else f"job {job_id}"
            raise UsageError(
                f"{what} {'runs' if outcome == 'newer-running' else 'waits'}: a newer deploy "
                f"supersedes the one awaiting promotion, so there is nothing to {action}"
            )
        return Asked(q.get(job_id), outcome)

    def keep(self, job: Job) -> None:
        """The host's copy of `job`, which the worker just recorded as the awaited job
        (continuity.py). StateUnwritable: the host keeps no copy."""
        marked = self.queue.get(job.id)
        if self.queue.continuity is not None and marked is not None and marked.status is Status.AWAITING:
            self.queue.continuity.keep_awaited(marked.to_fields())

    def settle(self, lock: DeployLock, job: Job, status: Status, text: str) -> None:
        """The awaited `job`'s end: promoted (succeeded, `text` its message) or not (`text` why).
        StateUnwritable: settled, but the host's copy stays (never put back: its wait ended)."""
        field = "message" if status is Status.SUCCEEDED else "reason"
        if not self.queue.write("settle", lock.token, str(lock.fence), job.id, status.value, field, text):
            raise GuardLost(f"the deploy lock (fence {lock.fence}) was lost: job {job.id} was not settled")
        if self.queue.continuity is not None:
            self.queue.continuity.forget_awaited(job.id)
