"""How a worker's job ended, recorded: fenced like every job write, retried while Redis is away,
then told to the observer. Also the job's trail (`Audit`) and a deploy whose tag moved while it
was queued (queued again for its new digest).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

import redis

from watcher.engine.reconcile import View
from watcher.engine.run import DeployResult, Guard, Run, run_of
from watcher.engine.state import awaiting
from watcher.errors import GuardLost, Interrupted, RedisUnavailable, WatcherError
from watcher.interrupts import shielded
from watcher.queue.connection import retrying
from watcher.queue.job import Audit, Job, JobKind, Status
from watcher.queue.lock import DeployLock
from watcher.queue.queue import DeployQueue

log = logging.getLogger("watcher.worker")


class Engine(Protocol):
    """What the worker needs of `watcher.engine.deployment.Deployment`: each run's facts come
    back in its result (or attached to its exception: `run_of`)."""

    def deploy(
        self,
        version: str,
        *,
        guard: Guard,
        kind: str = ...,
        prefer_local: bool = ...,
        digest: str | None = ...,
    ) -> DeployResult: ...

    def rollback(self, *, guard: Guard, to: str | None = ..., done_if_live: bool = ...) -> DeployResult: ...

    def promote(self, *, guard: Guard, version: str | None = ...) -> DeployResult: ...

    def abort_awaited(self, *, guard: Guard) -> str: ...

    def expire_awaited(self, *, guard: Guard) -> str | None: ...

    def view(self) -> View: ...


class Observer(Protocol):
    """Told when a job starts and once its outcome is recorded (watcher/notify); returns at once
    and never raises, so it cannot delay or fail a job."""

    def job_started(self, job: Job) -> None: ...

    def job_ended(self, job: Job, status: Status, detail: str, audit: Audit) -> None: ...


class Outcomes:
    """One worker's records of its jobs' ends."""

    def __init__(self, queue: DeployQueue, worker: str, observer: Observer | None) -> None:
        self.queue = queue
        self.worker = worker
        self.observer = observer

    def end(
        self,
        lock: DeployLock,
        job: Job,
        status: Status,
        *,
        reason: str | None = None,
        message: str | None = None,
        audit: Audit | None = None,
        give_up_after: float | None = None,
        until: str = "",
    ) -> None:
        """Record the outcome, retrying while Redis is away (each attempt shielded from SIGTERM,
        the waits between them not). If the lock is gone by then, the job stays `running` and the
        next lock holder re-runs it: the engine finds the version live and says so."""

        def record() -> None:
            with shielded():
                self.queue.finish(lock, job, status, reason=reason, message=message, audit=audit, until=until)

        try:
            retrying(record, f"recording the end of job {job.id}", give_up_after=give_up_after)
        except GuardLost as exc:
            log.error("worker %s: %s; the next worker to take the lock re-checks the job", self.worker, exc)
            return
        log.info("worker %s: job %s %s: %s", self.worker, job.id, status.value, reason or message)
        if self.observer is not None:
            self.observer.job_ended(self._as_recorded(job), status, reason or message or "", audit or Audit())

    def _as_recorded(self, job: Job) -> Job:
        """The job as `finish` wrote it, with its end time: a notification then says the duration
        `history` shows. As it was given when Redis cannot say."""
        try:
            return self.queue.get(job.id) or job
        except redis.RedisError:
            return job

    def interrupted(
        self, lock: DeployLock, job: Job, engine: Engine, exc: Interrupted, phases: dict[str, float]
    ) -> str | None:
        """The engine unwound (the live colour serves): succeeded if the job's work is done by now
        (its version live; an abort's colour gone), else back to the head of the queue. Returns
        what the job did when it succeeded."""
        with shielded():
            try:
                view = engine.view()
                done = done_by(view, job)
            except WatcherError:
                view, done = None, None
            try:
                if done is None:
                    self._requeue(lock, job, exc)
                    return None
                live = view.live if view else None
                self.end(
                    lock,
                    job,
                    Status.SUCCEEDED,
                    message=f"{done}; the worker was stopped ({exc}) before the job's end was recorded",
                    audit=Audit(phases, None, live.version if live else None, live.digest if live else None),
                    give_up_after=5,
                )
                return done
            except (GuardLost, RedisUnavailable) as error:
                log.error("worker %s: job %s left for the next worker: %s", self.worker, job.id, error)
                return None

    def forgotten(self, job: Job, epoch: str, phases: dict[str, float], run: Run | None) -> bool:
        """After a lost lock: whether Redis forgot the queue since `job` started (under marker
        `epoch`). Then nobody else can own the job: it goes back in Redis, for the next lock
        holder to take over (which finds its version live if it had switched), and the loss
        records what became of it, with the receipt of what users were served (`run`'s)."""
        kept = self.queue.continuity
        if kept is None or not epoch:
            return False
        try:
            retrying(
                kept.check, f"looking for the queue marker after job {job.id} lost its lock", give_up_after=5
            )
            if kept.epoch == epoch:
                return False
            phase = next(reversed(phases), "start")
            ran = f"job {job.id} ({job.kind} {job.version}), running in phase {phase},"
            why = f"Redis lost the queue while it ran (phase {phase}) and another job started meanwhile"
            back = retrying(
                lambda: self.queue.restore(replace(job, phase=phase), why),
                f"putting job {job.id} back",
                give_up_after=5,
            )
        except RedisUnavailable as exc:
            log.error(
                "worker %s: job %s: Redis lost the queue and is away now (%s)", self.worker, job.id, exc
            )
            return True
        served = f" ({run.receipt.summary()})" if run is not None and run.receipt is not None else ""
        if back == "running":
            kept.interrupted(epoch, f"{ran} stopped touching nothing more{served} and is back in the queue")
        elif back == "failed":
            kept.interrupted(epoch, f"{ran} stopped touching nothing more{served}; recorded failed: {why}")
        return True

    def _requeue(self, lock: DeployLock, job: Job, exc: Interrupted) -> None:
        retrying(
            lambda: self.queue.requeue(lock, job, f"its worker {self.worker} was stopped ({exc})"),
            f"requeueing job {job.id}",
            give_up_after=5,
        )
        log.info("worker %s: job %s is back in the queue", self.worker, job.id)

    def follow_move(self, job: Job, moved: str | None) -> str:
        """A tag that moved (to `moved`) since the job was queued is a new request: queue its new
        digest (unless a newer request already waits), and say so in the job's outcome ("" if no move)."""
        if not moved or job.kind is not JobKind.DEPLOY:
            return ""
        said = f"; {job.version} has moved to {moved} since the job was queued"
        try:
            done = retrying(
                lambda: self.queue.enqueue(
                    job.version,
                    source=job.source,
                    digest=moved,
                    requested_by=f"job {job.id} (its tag moved)",
                    repository=job.repository,
                    keep_newer=True,
                ),
                f"queueing the moved tag of job {job.id}",
                give_up_after=5,
            )
        except WatcherError as exc:  # Redis stayed away
            log.error(
                "worker %s: job %s: the moved tag %s@%s was not queued: %s",
                self.worker,
                job.id,
                job.version,
                moved,
                exc,
            )
            return f"{said}, but it could not be queued ({exc}): deploy it again"
        log.info("worker %s: job %s: %s", self.worker, job.id, done.message)
        if done.outcome == "queued":
            return f"{said}: job {done.job.id} deploys it"
        if done.outcome == "already-queued":
            return f"{said}: job {done.job.id}, waiting, deploys it"
        return f"{said}; not queued: {done.message}"


def done_by(view: View, job: Job) -> str | None:
    """What an interrupted job did, if its work is done: a deploy, rollback or promote whose
    version is live (stopped after its record), an abort whose waiting colour is gone (stopped
    at the end of its shielded removal). None: it must run again."""
    if job.kind is JobKind.ABORT:
        pending = view.recorded.pending
        if awaiting(pending) and pending is not None and pending.version == job.version:
            return None
        return f"the colour that awaited promotion ({job.version}) is removed"
    live = view.live
    return f"{job.version} is live on {live.color}" if live and live.version == job.version else None


def audit_of(result: DeployResult, phases: dict[str, float]) -> Audit:
    """A finished engine run's trail: a no-op changed nothing; otherwise what was live before."""
    before = result.version if result.noop else (result.previous.version if result.previous else None)
    return Audit(
        phases, before, result.version, result.digest, result.receipt.to_dict() if result.receipt else None
    )


def unchanged(engine: Engine, phases: dict[str, float], failure: BaseException | None = None) -> Audit:
    """A failed run's trail: what was live before (its plan's, once it planned: an unwind may
    have left the new version serving) and after (read once from the engine's view; unknown when
    Docker cannot say), with the receipt of the run that raised `failure`."""
    with shielded():
        try:
            live = engine.view().live
        except Exception:  # Docker unreachable, or worse: the outcome is recorded all the same
            live = None
    version = live.version if live else None
    run = run_of(failure) if failure is not None else None
    receipt = run.receipt if run is not None else None
    planned = run.plan if run is not None and run.plan is not None else None
    before = version if planned is None else planned.live.version if planned.live else None
    return Audit(phases, before, version, receipt=receipt.to_dict() if receipt else None)
