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
  epoch      the marker by which a Redis that forgot all this is noticed (continuity.py)

Why lists and Lua rather than Streams: only one job may run at a time (one lock), and a job's
liveness is exactly its lock's liveness. So "taken by a worker" means "in `running` under a fence";
a worker that takes the lock and finds a job still in `running` knows that job's worker lost the
lock (died, or was paused past its lease) and recovers it: retakes it under its own fence, or
marks it superseded (a newer request waits) or failed (its workers died `max_attempts` times).
The old worker, if it ever wakes, can no longer write: every job write is an operation of one
Lua script (scripts/queue.lua) that compares the lock token, the fence counter and the job's
fence. Each call is atomic, so a job is never taken twice and never lost between two lists.

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
from typing import Any

import redis

from watcher.config import Retention
from watcher.engine.promotion import past
from watcher.engine.state import Release
from watcher.errors import GuardLost, UsageError
from watcher.freeze import FreezeSchedule, Hold
from watcher.queue.connection import AppKeys, retrying
from watcher.queue.continuity import Continuity
from watcher.queue.job import SOURCES, Audit, Job, JobKind, Status
from watcher.queue.lock import DeployLock
from watcher.queue.scripts import script
from watcher.validation import validate_tag

#: A job whose worker died is retaken until it has been taken this many times, then failed.
MAX_ATTEMPTS = 2

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


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
        continuity: Continuity | None = None,
    ) -> None:
        self.client = client
        self.freezes = freezes
        self.continuity = continuity  # None: a Redis that forgets is not noticed (tests, tools)
        self.app = app
        self.retention = retention
        self.max_attempts = max_attempts
        k = self.keys = AppKeys(app, prefix)
        self._script_keys = (  # queue.lua's KEYS
            k.waiting,
            k.running,
            k.seq,
            k.history,
            k.wake,
            k.last,
            k.paused,
            k.awaiting,
            k.lock,
            k.fence,
            k.epoch,
        )
        # The history's age limit in whole seconds, bounded so that Lua reads it as a plain integer.
        self._max_age = int(min(retention.max_age, 10**12))

    def write(self, op: str, *args: object) -> Any:
        """Operation `op` of queue.lua (its KEYS and ARGV are documented there) on this app's queue.
        A Redis that forgot the queue is dealt with first (FORGOTTEN), and an id not reserved on
        the host yet is reserved (RESERVE): then the operation runs again."""
        for _ in range(3):
            kept = self.continuity
            marks = (kept.epoch, kept.ids) if kept else ("", "")
            common = (op, self.keys.jobs, repr(time.time()), self.retention.keep, self._max_age, *marks)
            try:
                return script(self.client, "queue")(keys=self._script_keys, args=(*common, *args))
            except redis.exceptions.ResponseError as exc:
                said = str(exc)
                if kept is None or not said.startswith(("FORGOTTEN", "RESERVE ")):
                    raise
                if said.startswith("FORGOTTEN"):
                    kept.recover()
                else:
                    kept.reserve(int(said.split()[1]))
        raise AssertionError(f"queue operation {op}: Redis kept refusing it: {said}")

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
        job_id, outcome = self.write(
            "enqueue",
            version,
            digest or "",
            source,
            requested_by,
            self.app,
            repository or "",
            "1" if keep_newer else "",
            live.version if live else "",
            (live.digest or "") if live else "",
            live.color if live else "",
        )
        job = self.get(job_id)
        assert job is not None, f"job {job_id} vanished right after enqueue"
        if outcome == "queued" and self.continuity is not None:
            self.continuity.keep_waiting(job.to_fields())
        return Enqueued(job, outcome)

    def cancel(self, job_id: str, *, by: str) -> Job:
        """Cancel a waiting job. A running job is not cancelled: stop its worker (SIGTERM)."""
        outcome = self.write("cancel", job_id, by)
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
        if self.continuity is not None:
            self.continuity.forget_waiting(job_id)
        return job

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.client.hgetall(self.keys.job(job_id))
        return Job.from_fields(raw) if raw else None

    def _jobs(self, ids: list[str]) -> list[Job]:
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            return [Job.from_fields(raw) for raw in pipe.execute() if raw]

    def waiting(self) -> list[Job]:
        return self._jobs(self.client.lrange(self.keys.waiting, 0, -1))

    def running(self) -> list[Job]:
        return self._jobs(self.client.lrange(self.keys.running, 0, -1))

    def history(self, limit: int = 20, *, since: float | None = None) -> list[Job]:
        """Finished jobs, newest first: at most `limit`, none that ended before `since` (Unix
        time) nor past the retention's age (trimmed only when a job ends: an idle app's old jobs
        are still held, not shown)."""
        oldest = max(since or 0.0, time.time() - self.retention.max_age)
        if since is None:
            jobs = self._jobs(self.client.lrange(self.keys.history, 0, max(0, limit - 1)))
        else:  # the list is in the order jobs ended: read it all (at most `keep` ids), then cut
            jobs = self._jobs(self.client.lrange(self.keys.history, 0, -1))
        return [job for job in jobs if (job.finished or 0.0) >= oldest][:limit]

    def finished_after(self, job_id: str | None) -> list[Job]:
        """The jobs that finished after job `job_id` did, newest first: the ones above it in the
        history (every one held, when it is None or trimmed away). One LRANGE when none did, so
        a reader that follows the history (the metrics) costs little per look."""
        ids = self.client.lrange(self.keys.history, 0, -1)
        return self._jobs(ids[: ids.index(job_id)] if job_id in ids else ids)

    def last_job(self) -> Job | None:
        """The last job that ran to an end (succeeded or failed)."""
        job_id = self.client.get(self.keys.last)
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
        k = self.keys
        if self.continuity is not None:
            self.continuity.check()
        with self.client.pipeline(transaction=False) as pipe:
            waiting, running, locked, paused = (
                pipe.llen(k.waiting).llen(k.running).exists(k.lock).exists(k.paused).execute()
            )
        if running and not locked:
            return True
        return bool(waiting and not paused) and self.held() is None or self._expiry_due()

    def _expiry_due(self) -> bool:
        """The job awaiting promotion has waited its `promote.timeout`: its colour must go."""
        job_id = self.client.get(self.keys.awaiting)
        job = self.get(job_id) if job_id else None
        return job is not None and job.status is Status.AWAITING and past(job.until)

    def held(self) -> Hold | None:
        """The scheduled freeze that holds the newest waiting job now, or None (nothing waits, no
        freeze is in force, or the job is a rollback: the way back is never frozen)."""
        hold = self.freezes.hold()
        if hold is None:
            return None
        newest = self.client.lindex(self.keys.waiting, -1)
        return (
            None
            if newest is None or self.client.hget(self.keys.job(newest), "source") == JobKind.ROLLBACK
            else hold
        )

    def wait_for_wake(self, timeout: float) -> None:
        """Block until a job is enqueued or the queue resumed, or `timeout` seconds pass."""
        self.client.blpop([self.keys.wake], timeout=timeout)

    # -- running (lock holders only; every write is fenced) -------------------------------------

    def take(self, lock: DeployLock, *, worker: str) -> Taken | None:
        """The next job to run under `lock`: a dead worker's job first, then the newest waiting
        one (older ones superseded). None when paused, frozen (a rollback excepted) or empty;
        GuardLost if the lock is gone."""
        reply = self.write(
            "take",
            lock.token,
            str(lock.fence),
            worker,
            self.max_attempts,
            "1" if self.freezes.hold() else "0",
        )
        if reply[0] == "lost":
            raise GuardLost(f"the deploy lock (fence {lock.fence}) was lost before a job was taken")
        if reply[0] not in ("started", "recovered"):
            return None
        job = self.get(reply[1])
        assert job is not None
        if self.continuity is not None:
            self.continuity.taken(job.id)
        return Taken(job, reply[2] if reply[0] == "recovered" else None)

    def set_phase(self, lock: DeployLock, job: Job, phase: str) -> None:
        if not self.write("phase", lock.token, str(lock.fence), job.id, phase):
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
        until: str = "",
    ) -> None:
        """Record a job's end, if this grant still owns the job, with its audit trail: the
        seconds each engine phase took (the metrics' phase histograms read them back too), the
        versions live before and after, the digest deployed. A job awaiting promotion `until`
        a time is the app's awaited job from this write on (promotion.py)."""
        assert status in (Status.SUCCEEDED, Status.FAILED, Status.AWAITING)
        field, text = ("reason", reason) if reason else ("message", message or "")
        done = self.write(
            "finish",
            lock.token,
            str(lock.fence),
            job.id,
            status.value,
            field,
            text,
            json.dumps((audit or Audit()).fields()),
            until,
        )
        if not done:
            raise GuardLost(
                f"job {job.id} is no longer ours (fence {lock.fence}): its outcome "
                f"({status.value}) was not recorded"
            )

    def requeue(self, lock: DeployLock, job: Job, why: str) -> None:
        """Put a job we stopped (SIGTERM) back at the head of the queue, or supersede it."""
        if not self.write("requeue", lock.token, str(lock.fence), job.id, why):
            raise GuardLost(f"job {job.id} is no longer ours (fence {lock.fence}): not requeued")

    def restore(self, job: Job, why: str) -> str:
        """Job `job`, running when Redis forgot the queue, back in Redis: 'running' (the next lock
        holder takes it over), 'failed' (`why`: another job runs) or 'exists' (back already)."""
        return str(self.write("restore", json.dumps(job.to_fields()), why))
