"""The deploy queue of one app in Redis: enqueue with coalescing, atomic take-next with recovery
of a dead worker's job, fenced job-state writes, cancel, listing and history.

Data (all `watcher:<app>:...`):
  job:<id>   hash, one per job (job.py); ids come from the counter `seq`
  waiting    list of queued job ids; coalescing keeps at most one
  running    list holding the id of the job a lock holder runs (at most one: one lock)
  history    list of finished job ids, newest first, trimmed to the app's `Retention` (count and age;
             older hashes go)
  last       id of the last job that ran to an end (succeeded or failed)
  wake       list a new job or a resume pushes to, so an idle worker's BLPOP returns at once

Why lists and Lua rather than Streams: only one job may run at a time (one lock), and a job's
liveness is exactly its lock's liveness. So "taken by a worker" means "in `running` under a fence";
a worker that takes the lock and finds a job still in `running` knows that job's worker lost the
lock (died, or was paused past its lease) and recovers it: retakes it under its own fence, or
marks it superseded (a newer request waits) or failed (its workers died `max_attempts` times).
The old worker, if it ever wakes, can no longer write: every job write is a Lua script that
compares the lock token, the fence counter and the job's fence. Every script is atomic, so a
job is never taken twice and never lost between two lists.

Coalescing happens at enqueue: a new request supersedes whatever waits (the newest request
wins); a request for a version already waiting (same digest, or a digest unknown on either
side) returns that job instead; a request for the live version while nothing waits or runs is
recorded as succeeded at once ("already live"). What is live is not kept in Redis: the caller
reads it from its one source, the route file and the state beside it (engine/reconcile.py). A
moved tag is a new request only when it carries its new digest (webhooks and the poller do; a
worker whose job's tag moved queues the new digest with `keep_newer`, so a newer request that
waits is never superseded by it; `watcher deploy` redeploys directly).
Scripts name job keys they compute, so a Redis Cluster is not supported (one Redis, any host).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from watcher.config import Retention
from watcher.engine.promotion import past
from watcher.engine.state import Release
from watcher.errors import GuardLost, UsageError
from watcher.freeze import FreezeSchedule, Hold
from watcher.queue.connection import key, retrying
from watcher.queue.job import SOURCES, Audit, Job, Status
from watcher.queue.lock import OWNS, DeployLock
from watcher.validation import validate_tag

#: A job whose worker died is retaken until it has been taken this many times, then failed.
MAX_ATTEMPTS = 2

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")

# finish(prefix, history, retention, id, status, field, text, now): the job's end, and the
# history trimmed to `retention` = "<keep> <max age in seconds>": at most keep ids, none whose
# job finished more than max age ago (the trimmed jobs' hashes go with them).
_FINISH_FN = """
local function finish(prefix, history, retention, id, status, field, text, now)
  local jk = prefix .. id
  redis.call('HSET', jk, 'status', status, 'finished', now)
  if field ~= '' then redis.call('HSET', jk, field, text) end
  redis.call('LPUSH', history, id)
  local keep, max_age = string.match(retention, '^(%d+) (%d+)$')
  local oldest = tonumber(now) - tonumber(max_age)
  while redis.call('LLEN', history) > 1 do
    local last = redis.call('LINDEX', history, -1)
    local ended = tonumber(redis.call('HGET', prefix .. last, 'finished') or '0')
    if redis.call('LLEN', history) <= tonumber(keep) and ended >= oldest then break end
    redis.call('DEL', prefix .. redis.call('RPOP', history))
  end
end
"""

# KEYS waiting running seq history wake
# ARGV prefix version digest source by now app retention live_version live_digest live_color repository
# keep_newer
# (repository: the GitHub repository a webhook named, for deployment statuses; '' when none)
# (keep_newer '1': a waiting request is newer than this one, so it stays and nothing is added)
# (what is live comes from the caller, who read it from the route file and state: one source)
_ENQUEUE = (
    _FINISH_FN
    + """
local prefix, version, digest, now, retention = ARGV[1], ARGV[2], ARGV[3], ARGV[6], ARGV[8]
local function same(v, d)
  return v == version and (not d or d == '' or digest == '' or d == digest)
end
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local j = redis.call('HMGET', prefix .. id, 'version', 'digest')
  if same(j[1], j[2]) then return {id, 'already-queued'} end
end
if ARGV[13] == '1' and redis.call('LLEN', KEYS[1]) > 0 then
  return {redis.call('LINDEX', KEYS[1], -1), 'newer-queued'}
end
local id = tostring(redis.call('INCR', KEYS[3]))
local jk = prefix .. id
redis.call('HSET', jk, 'id', id, 'app', ARGV[7], 'version', version, 'source', ARGV[4],
           'requested_by', ARGV[5], 'created', now, 'status', 'queued', 'attempts', '0')
if digest ~= '' then redis.call('HSET', jk, 'digest', digest) end
if ARGV[12] ~= '' then redis.call('HSET', jk, 'repository', ARGV[12]) end
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('LLEN', KEYS[2]) == 0 then
  if ARGV[9] ~= '' and same(ARGV[9], ARGV[10]) then
    finish(prefix, KEYS[4], retention, id, 'succeeded', 'message',
           version .. ' is already live on ' .. ARGV[11] .. ': nothing to do', now)
    return {id, 'live'}
  end
end
for _, old in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  finish(prefix, KEYS[4], retention, old, 'superseded', 'reason',
         'superseded by job ' .. id .. ' (' .. version .. ')', now)
end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], id)
redis.call('LPUSH', KEYS[5], id)
redis.call('LTRIM', KEYS[5], 0, 0)
return {id, 'queued'}
"""
)

# KEYS lock fence waiting running paused history last; ARGV token fence prefix worker now max retention frozen
# (frozen: '1' while a scheduled freeze holds deploys; a rollback still runs)
_TAKE = (
    OWNS
    + _FINISH_FN
    + """
if not owns() then return {'lost'} end
local prefix, now, retention = ARGV[3], ARGV[5], ARGV[7]
local orphan = redis.call('LINDEX', KEYS[4], 0)
if orphan then
  redis.call('LREM', KEYS[4], 0, orphan)
  local jk = prefix .. orphan
  local j = redis.call('HMGET', jk, 'worker', 'phase', 'attempts')
  local was = 'its worker ' .. (j[1] or '?') .. ' stopped during ' .. (j[2] or 'start')
  local attempts = tonumber(j[3] or '0')
  if redis.call('LLEN', KEYS[3]) > 0 then
    finish(prefix, KEYS[6], retention, orphan, 'superseded', 'reason', was .. ' and a newer request waits', now)
  elseif attempts >= tonumber(ARGV[6]) then
    finish(prefix, KEYS[6], retention, orphan, 'failed', 'reason',
           was .. ' (attempt ' .. attempts .. ' of ' .. ARGV[6] .. '); not retried', now)
    redis.call('SET', KEYS[7], orphan)
  else
    redis.call('HSET', jk, 'status', 'running', 'worker', ARGV[4], 'fence', ARGV[2], 'phase', 'recovering',
               'attempts', tostring(attempts + 1))
    redis.call('RPUSH', KEYS[4], orphan)
    return {'recovered', orphan, was}
  end
end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'paused'} end
local ids = redis.call('LRANGE', KEYS[3], 0, -1)
if #ids == 0 then return {'empty'} end
local id = ids[#ids]
if ARGV[8] == '1' and redis.call('HGET', prefix .. id, 'source') ~= 'rollback' then return {'frozen'} end
for i = 1, #ids - 1 do
  finish(prefix, KEYS[6], retention, ids[i], 'superseded', 'reason', 'superseded by job ' .. id, now)
end
redis.call('DEL', KEYS[3])
redis.call('HSET', prefix .. id, 'status', 'running', 'worker', ARGV[4], 'fence', ARGV[2], 'started', now,
           'phase', 'starting', 'attempts', tostring(tonumber(redis.call('HGET', prefix .. id, 'attempts') or '0') + 1))
redis.call('RPUSH', KEYS[4], id)
return {'started', id}
"""
)

_OWNS_JOB = (
    OWNS
    + """
local function owns_job()
  return owns() and redis.call('HGET', KEYS[3], 'fence') == ARGV[2]
         and redis.call('HGET', KEYS[3], 'status') == 'running'
end
"""
)

# KEYS lock fence job; ARGV token fence phase
_PHASE = (
    _OWNS_JOB
    + """
if not owns_job() then return 0 end
redis.call('HSET', KEYS[3], 'phase', ARGV[3])
return 1
"""
)

# KEYS lock fence job running history last
# ARGV token fence prefix id status field text now retention audit
# (audit: a JSON object of the job's other end fields, e.g. phases, before, after, digest)
_FINISH = (
    _OWNS_JOB
    + _FINISH_FN
    + """
if not owns_job() then return 0 end
redis.call('LREM', KEYS[4], 0, ARGV[4])
for name, value in pairs(cjson.decode(ARGV[10])) do redis.call('HSET', KEYS[3], name, value) end
finish(ARGV[3], KEYS[5], ARGV[9], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
redis.call('SET', KEYS[6], ARGV[4])
return 1
"""
)

# KEYS lock fence job running waiting history wake; ARGV token fence prefix id now retention why
_REQUEUE = (
    _OWNS_JOB
    + _FINISH_FN
    + """
if not owns_job() then return 0 end
redis.call('LREM', KEYS[4], 0, ARGV[4])
if redis.call('LLEN', KEYS[5]) > 0 then
  finish(ARGV[3], KEYS[6], ARGV[6], ARGV[4], 'superseded', 'reason', ARGV[7] .. ' and a newer request waits', ARGV[5])
  return 1
end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('HDEL', KEYS[3], 'phase', 'worker', 'fence', 'started')
redis.call('LPUSH', KEYS[5], ARGV[4])
redis.call('LPUSH', KEYS[7], ARGV[4])
redis.call('LTRIM', KEYS[7], 0, 0)
return 1
"""
)

# KEYS waiting history; ARGV prefix id now by retention
_CANCEL = (
    _FINISH_FN
    + """
local status = redis.call('HGET', ARGV[1] .. ARGV[2], 'status')
if not status then return 'missing' end
if status ~= 'queued' then return status end
redis.call('LREM', KEYS[1], 0, ARGV[2])
finish(ARGV[1], KEYS[2], ARGV[5], ARGV[2], 'cancelled', 'reason', 'cancelled by ' .. ARGV[4], ARGV[3])
return 'done'
"""
)


@dataclass(frozen=True)
class Enqueued:
    """What `enqueue` did: queued a new job, or found nothing to do (and said why)."""

    job: Job
    outcome: str  # "queued", "already-queued" (job is the waiting one), "live" (done at once),
    # "newer-queued" (keep_newer: job is the newer one that waits)

    @property
    def noop(self) -> bool:
        return self.outcome != "queued"

    @property
    def message(self) -> str:
        if self.outcome == "already-queued":
            return f"{self.job.version} is already queued as job {self.job.id}: nothing added"
        if self.outcome == "live":
            return self.job.message or f"{self.job.version} is already live"
        if self.outcome == "newer-queued":
            return f"job {self.job.id} ({self.job.version}), a newer request, is queued: nothing added"
        return f"job {self.job.id} queued: {self.job.kind} {self.job.version}"


@dataclass(frozen=True)
class Taken:
    """A job a worker now runs under its lock; `recovered` says whose job it took over."""

    job: Job
    recovered: str | None = None


class DeployQueue:
    """One app's queue. Reads and `enqueue`/`cancel` need no lock; `take` and every write about
    a running job need the DeployLock they run under (its token and fence are compared)."""

    def __init__(
        self,
        client: redis.Redis,
        app: str,
        *,
        retention: Retention = Retention(),
        max_attempts: int = MAX_ATTEMPTS,
        prefix: str = "",
        freezes: FreezeSchedule = FreezeSchedule(),
    ) -> None:
        self.client = client
        self.freezes = freezes
        self.app = app
        self.prefix = prefix
        self.retention = retention
        # The Lua scripts' argument: whole seconds, bounded so that Lua reads it as a plain integer.
        self._retention = f"{retention.keep} {int(min(retention.max_age, 10**12))}"
        self.max_attempts = max_attempts
        self.job_prefix = key(app, "job", "", prefix=prefix)

    def _key(self, name: str) -> str:
        return key(self.app, name, prefix=self.prefix)

    # -- asking -------------------------------------------------------------------------------

    def enqueue(
        self,
        version: str,
        *,
        source: str,
        requested_by: str,
        digest: str | None = None,
        live: Release | None = None,
        repository: str | None = None,
        keep_newer: bool = False,
    ) -> Enqueued:
        """Queue a deploy (or rollback) of `version`, coalescing with what waits; a no-op when
        `live` (read by the caller from the engine's view) is that very version. `keep_newer`:
        this request is older than any that waits (a tag that moved during a job), so a waiting
        one stays and nothing is added."""
        try:
            validate_tag(version)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if source not in SOURCES:  # promote and abort jobs are queued by queue/promotion.py
            raise UsageError(f"unknown job source {source!r} (known: {', '.join(SOURCES)})")
        if digest is not None and not _DIGEST.match(digest):
            raise UsageError(f"not an image digest: {digest!r} (expected e.g. sha256:<64 hex digits>)")
        k = self._key
        job_id, outcome = self.client.eval(
            _ENQUEUE,
            5,
            k("waiting"),
            k("running"),
            k("seq"),
            k("history"),
            k("wake"),
            self.job_prefix,
            version,
            digest or "",
            source,
            requested_by,
            repr(time.time()),
            self.app,
            self._retention,
            live.version if live else "",
            (live.digest or "") if live else "",
            live.color if live else "",
            repository or "",
            "1" if keep_newer else "",
        )
        job = self.get(job_id)
        assert job is not None, f"job {job_id} vanished right after enqueue"
        return Enqueued(job, outcome)

    def cancel(self, job_id: str, *, by: str) -> Job:
        """Cancel a waiting job. A running job is not cancelled: stop its worker (SIGTERM)."""
        k = self._key
        outcome = self.client.eval(
            _CANCEL,
            2,
            k("waiting"),
            k("history"),
            self.job_prefix,
            job_id,
            repr(time.time()),
            by,
            self._retention,
        )
        if outcome == "missing":
            raise UsageError(f"no job {job_id} (see `watcher queue` and `watcher history`)")
        job = self.get(job_id)
        assert job is not None
        if outcome == "running":
            raise UsageError(
                f"job {job_id} is running ({job.describe()}); it cannot be cancelled. "
                "Stop its worker with SIGTERM to abort it safely to the live colour"
            )
        if outcome != "done":
            raise UsageError(f"job {job_id} already ended: {job.describe()}")
        return job

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.client.hgetall(self.job_prefix + job_id)
        return Job.from_fields(raw) if raw else None

    def _jobs(self, ids: list[str]) -> list[Job]:
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_prefix + job_id)
            return [Job.from_fields(raw) for raw in pipe.execute() if raw]

    def waiting(self) -> list[Job]:
        return self._jobs(self.client.lrange(self._key("waiting"), 0, -1))

    def running(self) -> list[Job]:
        return self._jobs(self.client.lrange(self._key("running"), 0, -1))

    def history(self, limit: int = 20, *, since: float | None = None) -> list[Job]:
        """Finished jobs, newest first: at most `limit`, none that ended before `since` (Unix
        time) nor past the retention's age (trimmed only when a job ends: an idle app's old jobs
        are still held, not shown)."""
        oldest = max(since or 0.0, time.time() - self.retention.max_age)
        if since is None:
            jobs = self._jobs(self.client.lrange(self._key("history"), 0, max(0, limit - 1)))
        else:  # the list is in the order jobs ended: read it all (at most `keep` ids), then cut
            jobs = self._jobs(self.client.lrange(self._key("history"), 0, -1))
        return [job for job in jobs if (job.finished or 0.0) >= oldest][:limit]

    def finished_after(self, job_id: str | None) -> list[Job]:
        """The jobs that finished after job `job_id` did, newest first: the ones above it in the
        history (every one held, when it is None or trimmed away). One LRANGE when none did, so
        a reader that follows the history (the metrics) costs little per look."""
        ids = self.client.lrange(self._key("history"), 0, -1)
        return self._jobs(ids[: ids.index(job_id)] if job_id in ids else ids)

    def last_job(self) -> Job | None:
        """The last job that ran to an end (succeeded or failed)."""
        job_id = self.client.get(self._key("last"))
        return self.get(job_id) if job_id else None

    def follow(self, job_id: str, on_change: Callable[[Job], None], *, poll: float = 0.2) -> Job:
        """Block until the job ends, calling `on_change` whenever its status or phase changes."""
        seen: tuple[object, ...] = ()
        while True:
            job = retrying(lambda: self.get(job_id), f"following job {job_id}")
            if job is None:
                raise UsageError(f"no job {job_id}")
            now = (job.status, job.phase, job.worker, job.attempts)
            if now != seen:
                seen = now
                on_change(job)
            if job.status.final:
                return job
            time.sleep(poll)

    def has_work(self) -> bool:
        """Something a worker should take the lock for: a waiting job (unless paused, or held by
        a scheduled freeze), or a job in `running` while nobody holds the lock (its worker died)."""
        k = self._key
        with self.client.pipeline(transaction=False) as pipe:
            waiting, running, locked, paused = (
                pipe.llen(k("waiting")).llen(k("running")).exists(k("lock")).exists(k("paused")).execute()
            )
        if running and not locked:
            return True
        return bool(waiting and not paused) and self.held() is None or self._expiry_due()

    def _expiry_due(self) -> bool:
        """The job awaiting promotion has waited its `promote.timeout`: its colour must go."""
        job_id = self.client.get(self._key("awaiting"))
        job = self.get(job_id) if job_id else None
        return job is not None and job.status is Status.AWAITING and past(job.until)

    def held(self) -> Hold | None:
        """The scheduled freeze that holds the newest waiting job now, or None (nothing waits, no
        freeze is in force, or the job is a rollback: the way back is never frozen)."""
        hold = self.freezes.hold()
        if hold is None:
            return None
        newest = self.client.lindex(self._key("waiting"), -1)
        return (
            None
            if newest is None or self.client.hget(self.job_prefix + newest, "source") == "rollback"
            else hold
        )

    def wait_for_wake(self, timeout: float) -> None:
        """Block until a job is enqueued or the queue resumed, or `timeout` seconds pass."""
        self.client.blpop([self._key("wake")], timeout=timeout)

    # -- running (lock holders only; every write is fenced) -------------------------------------

    def take(self, lock: DeployLock, *, worker: str) -> Taken | None:
        """The next job to run under `lock`: a dead worker's job first, then the newest waiting
        one (older ones superseded). None when paused, frozen (a rollback excepted) or empty;
        GuardLost if the lock is gone."""
        k = self._key
        reply = self.client.eval(
            _TAKE,
            7,
            k("lock"),
            k("fence"),
            k("waiting"),
            k("running"),
            k("paused"),
            k("history"),
            k("last"),
            lock.token,
            str(lock.fence),
            self.job_prefix,
            worker,
            repr(time.time()),
            self.max_attempts,
            self._retention,
            "1" if self.freezes.hold() else "0",
        )
        if reply[0] == "lost":
            raise GuardLost(f"the deploy lock (fence {lock.fence}) was lost before a job was taken")
        if reply[0] not in ("started", "recovered"):
            return None
        job = self.get(reply[1])
        assert job is not None
        return Taken(job, reply[2] if reply[0] == "recovered" else None)

    def set_phase(self, lock: DeployLock, job: Job, phase: str) -> None:
        if not self.client.eval(
            _PHASE,
            3,
            self._key("lock"),
            self._key("fence"),
            self.job_prefix + job.id,
            lock.token,
            str(lock.fence),
            phase,
        ):
            raise GuardLost(f"job {job.id} is no longer ours (fence {lock.fence}): not entering {phase}")

    def finish(
        self,
        lock: DeployLock,
        job: Job,
        status: Status,
        *,
        reason: str | None = None,
        message: str | None = None,
        audit: Audit | None = None,
    ) -> None:
        """Record a job's end, if this grant still owns the job, with its audit trail: the
        seconds each engine phase took (the metrics' phase histograms read them back too), the
        versions live before and after, the digest deployed."""
        assert status in (Status.SUCCEEDED, Status.FAILED, Status.AWAITING)
        field, text = ("reason", reason) if reason else ("message", message or "")
        k = self._key
        done = self.client.eval(
            _FINISH,
            6,
            k("lock"),
            k("fence"),
            self.job_prefix + job.id,
            k("running"),
            k("history"),
            k("last"),
            lock.token,
            str(lock.fence),
            self.job_prefix,
            job.id,
            status.value,
            field,
            text,
            repr(time.time()),
            self._retention,
            json.dumps((audit or Audit()).fields()),
        )
        if not done:
            raise GuardLost(
                f"job {job.id} is no longer ours (fence {lock.fence}): its outcome "
                f"({status.value}) was not recorded"
            )

    def requeue(self, lock: DeployLock, job: Job, why: str) -> None:
        """Put a job we stopped (SIGTERM) back at the head of the queue, or supersede it."""
        k = self._key
        if not self.client.eval(
            _REQUEUE,
            7,
            k("lock"),
            k("fence"),
            self.job_prefix + job.id,
            k("running"),
            k("waiting"),
            k("history"),
            k("wake"),
            lock.token,
            str(lock.fence),
            self.job_prefix,
            job.id,
            repr(time.time()),
            self._retention,
            why,
        ):
            raise GuardLost(f"job {job.id} is no longer ours (fence {lock.fence}): not requeued")
