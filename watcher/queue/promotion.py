"""Manual promotion in the queue: the deploy job that waits (status `awaiting promotion`, its
id in `watcher:<app>:awaiting`), and the promote and abort jobs that act on it.

A promote or abort is a job like a deploy, run by a worker under the deploy lock, so one colour
swap at a time per app holds. It is queued only while a job waits for promotion and no deploy
waits or runs (that newer push supersedes the waiting one: there is nothing left to promote);
a newer promote or abort supersedes one that waits. The waiting job is settled, fenced like any
job write, once the state file says its wait ended: promoted (succeeded), aborted (cancelled),
expired (failed) or removed by a newer deploy (superseded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from watcher.errors import GuardLost, UsageError
from watcher.queue.connection import key
from watcher.queue.job import ACTIONS, Job, Status
from watcher.queue.lock import OWNS, DeployLock
from watcher.queue.queue import _FINISH_FN, DeployQueue

# KEYS waiting running seq history wake awaiting; ARGV prefix action by now app retention
_ASK = (
    _FINISH_FN
    + """
local prefix, action, now = ARGV[1], ARGV[2], ARGV[4]
local function control(id)
  local s = redis.call('HGET', prefix .. id, 'source'); return s == 'promote' or s == 'abort'
end
local aw = redis.call('GET', KEYS[6])
if not aw or redis.call('HGET', prefix .. aw, 'status') ~= 'awaiting promotion' then return {'', 'none'} end
local run = redis.call('LINDEX', KEYS[2], 0)
if run and not control(run) then return {run, 'newer-running'} end
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if not control(id) then return {id, 'newer-queued'} end
  if redis.call('HGET', prefix .. id, 'source') == action then return {id, 'already-queued'} end
end
local id = tostring(redis.call('INCR', KEYS[3]))
redis.call('HSET', prefix .. id, 'id', id, 'app', ARGV[5], 'version', redis.call('HGET', prefix .. aw, 'version'),
           'source', action, 'requested_by', ARGV[3], 'created', now, 'status', 'queued', 'attempts', '0',
           'awaits', aw)
for _, old in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  finish(prefix, KEYS[4], ARGV[6], old, 'superseded', 'reason',
         'superseded by job ' .. id .. ' (' .. action .. ')', now)
end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], id)
redis.call('LPUSH', KEYS[5], id)
redis.call('LTRIM', KEYS[5], 0, 0)
return {id, 'queued'}
"""
)

# KEYS lock fence awaiting job; ARGV token fence id until
_MARK = (
    OWNS
    + """
if not owns() then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[4], 'until', ARGV[4])
return 1
"""
)

# KEYS lock fence awaiting job; ARGV token fence id status field text now
_SETTLE = (
    OWNS
    + """
if not owns() then return 0 end
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if redis.call('HGET', KEYS[4], 'status') ~= 'awaiting promotion' then return 1 end
redis.call('HSET', KEYS[4], 'status', ARGV[4], 'finished', ARGV[7], ARGV[5], ARGV[6])
return 1
"""
)


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
    """One app's waiting job and the requests that act on it."""

    def __init__(self, queue: DeployQueue) -> None:
        self.queue = queue
        self.client: redis.Redis = queue.client
        self.key = key(queue.app, "awaiting", prefix=queue.prefix)

    def _k(self, name: str) -> str:
        return key(self.queue.app, name, prefix=self.queue.prefix)

    def waiting(self) -> Job | None:
        """The job awaiting promotion, if any."""
        job_id = self.client.get(self.key)
        job = self.queue.get(job_id) if job_id else None
        return job if job is not None and job.status is Status.AWAITING else None

    def ask(self, action: str, *, requested_by: str) -> Asked:
        """Queue a promote or abort of the waiting job; UsageError when there is nothing to act on."""
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        k, q = self._k, self.queue
        job_id, outcome = self.client.eval(
            _ASK,
            6,
            k("waiting"),
            k("running"),
            k("seq"),
            k("history"),
            k("wake"),
            self.key,
            q.job_prefix,
            action,
            requested_by,
            repr(time.time()),
            q.app,
            q._retention,
        )
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

    def mark(self, lock: DeployLock, job: Job, until: str) -> None:
        """After the worker recorded `job` as awaiting promotion: it is the app's waiting job."""
        if not self.client.eval(
            _MARK,
            4,
            self._k("lock"),
            self._k("fence"),
            self.key,
            self.queue.job_prefix + job.id,
            lock.token,
            str(lock.fence),
            job.id,
            until,
        ):
            raise GuardLost(
                f"job {job.id} is no longer ours (fence {lock.fence}): not marked as awaiting promotion"
            )

    def settle(self, lock: DeployLock, job: Job, status: Status, text: str) -> None:
        """The waiting `job`'s end: promoted (succeeded, `text` its message) or not (`text` why)."""
        field = "message" if status is Status.SUCCEEDED else "reason"
        if not self.client.eval(
            _SETTLE,
            4,
            self._k("lock"),
            self._k("fence"),
            self.key,
            self.queue.job_prefix + job.id,
            lock.token,
            str(lock.fence),
            job.id,
            status.value,
            field,
            text,
            repr(time.time()),
        ):
            raise GuardLost(f"the deploy lock (fence {lock.fence}) was lost: job {job.id} was not settled")
