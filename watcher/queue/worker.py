"""`watcher worker`: take jobs from the queue one at a time, each under the deploy lock, and run
them through the engine until stopped.

Loop: wait for work (a BLPOP on `wake`, at most `poll` seconds, so a new job starts within
milliseconds and a dead worker's job within `poll` of its lock expiring); take the lock (another
worker or a `watcher deploy` may hold it: then wait); take the next job atomically (a dead
worker's job first); run it with the lock as the engine's guard and the job's phase updated
from the engine's progress; record the outcome (fenced); release the lock.

Outcomes: the engine's result -> succeeded (a no-op says so); WatcherError (DeployFailed,
a failed health check, a missing tag...) -> failed with its message; GuardLost -> nothing is
recorded, the lock's new holder owns the job. SIGTERM or SIGINT: the engine aborts the phase it
is in safely (traffic stays on, or goes back to, the live colour), the job goes back to the head
of the queue (or is superseded if a newer one waits), then the worker exits; once the new
version is recorded live, the job is recorded as succeeded instead.

Redis trouble: every call is retried with backoff and logged (connection.py); a deploy in flight
goes on while the lock can be proved or its lease lasts (lock.py), so it completes or aborts
to the live colour, never half-switched.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol, TextIO

import redis

from watcher import logs
from watcher.config import Retention
from watcher.engine.promotion import past
from watcher.engine.reconcile import View
from watcher.engine.run import DeployResult, Guard, run_of
from watcher.engine.state import awaiting
from watcher.errors import GuardLost, Interrupted, LockBusy, RedisUnavailable, WatcherError
from watcher.freeze import FreezeSchedule
from watcher.host_lock import HostLock
from watcher.interrupts import shielded
from watcher.progress import Progress
from watcher.queue.connection import REDIS_DOWN, Backoff, retrying
from watcher.queue.job import ACTIONS, Audit, Job, JobKind, Status
from watcher.queue.lock import DeployLock
from watcher.queue.promotion import Promotions
from watcher.queue.queue import DeployQueue, Taken

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

    def rollback(self, *, guard: Guard, to: str | None = ...) -> DeployResult: ...

    def promote(self, *, guard: Guard) -> DeployResult: ...

    def abort_awaited(self, *, guard: Guard) -> str: ...

    def expire_awaited(self, *, guard: Guard) -> str | None: ...

    def view(self) -> View: ...


#: Builds the engine for one job, reporting through the given Progress.
EngineFactory = Callable[[Progress], Engine]


class Observer(Protocol):
    """Told when a job starts and once its outcome is recorded (watcher/notify); returns at once
    and never raises, so it cannot delay or fail a job."""

    def job_started(self, job: Job) -> None: ...

    def job_ended(self, job: Job, status: Status, detail: str, audit: Audit) -> None: ...


class Worker:
    def __init__(
        self,
        client: redis.Redis,
        app: str,
        engine: EngineFactory,
        *,
        lock_ttl: float,
        name: str | None = None,
        poll: float = 0.5,
        stream: TextIO | None = None,
        host_lock: HostLock | None = None,
        prefix: str = "",
        retention: Retention = Retention(),
        observer: Observer | None = None,
        freezes: FreezeSchedule = FreezeSchedule(),
    ) -> None:
        self.client = client
        self.app = app
        self.engine = engine
        self.lock_ttl = lock_ttl
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll = poll
        self.stream = stream if stream is not None else logs.progress_stream()
        self.prefix = prefix
        self.queue = DeployQueue(client, app, prefix=prefix, retention=retention, freezes=freezes)
        self.promotions = Promotions(self.queue)
        self.host_lock = host_lock
        self.observer = observer
        self._host_busy = False
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop after the job in flight (for in-process use; the CLI stops on SIGTERM)."""
        self._stop.set()

    def run(self) -> None:
        """Until stopped: SIGTERM/SIGINT (Interrupted) or `stop()`."""
        log.info("worker %s: started for app %s (lock TTL %gs)", self.name, self.app, self.lock_ttl)
        backoff = Backoff(f"worker {self.name}: reading the queue")
        try:
            while not self._stop.is_set():
                try:
                    if self.queue.has_work():
                        backoff.succeeded()
                        if not self._take_and_run():
                            # A job runs elsewhere, or `watcher deploy` holds a lock: its release wakes us.
                            self.queue.wait_for_wake(self.poll)
                    else:
                        backoff.succeeded()
                        self.queue.wait_for_wake(self.poll)
                except REDIS_DOWN as exc:
                    self._stop.wait(backoff.failed(exc))
        except Interrupted as exc:
            log.info("worker %s: stopping (%s)", self.name, exc)
            return
        log.info("worker %s: stopped", self.name)

    def run_once(self) -> bool:
        """The next job, if there is one and the locks are free (a pool's child, pool.py)."""
        return self.queue.has_work() and self._take_and_run()

    def _take_and_run(self) -> bool:
        """False when nothing ran: another holder had the deploy lock or the host lock."""
        lock = DeployLock(
            self.client, self.app, ttl=self.lock_ttl, purpose=f"worker {self.name}", prefix=self.prefix
        )
        if not lock.try_acquire():
            return False
        try:
            if not self._take_host_lock():
                return False
            try:
                with shielded():
                    taken = self.queue.take(lock, worker=self.name)
                if taken is None:
                    return self._expire(lock)
                self._run(taken, lock)
                return True
            finally:
                if self.host_lock is not None:
                    self.host_lock.release()
        finally:
            with shielded():
                lock.release()

    def _take_host_lock(self) -> bool:
        """The stack's host lock, on top of the Redis lock: a `watcher deploy` on the host whose
        config has no Redis takes only this one, and must never deploy beside a job."""
        if self.host_lock is None:
            return True
        try:
            self.host_lock.acquire(f"worker {self.name}")
        except LockBusy as busy:
            if not self._host_busy:  # once per wait, not once per poll
                log.info("worker %s: %s; the job waits", self.name, busy)
            self._host_busy = True
            self._stop.wait(self.poll)
            return False
        self._host_busy = False
        return True

    def _run(self, taken: Taken, lock: DeployLock) -> None:
        with logs.job_context(self.app, taken.job.id):
            self._run_job(taken, lock)

    def _run_job(self, taken: Taken, lock: DeployLock) -> None:
        job = taken.job
        lock.note_job(job.id, f"job {job.id}: {job.kind} {job.version} (worker {self.name})")
        log.info(
            "worker %s: job %s started: %s %s (%s by %s), fence %s, attempt %s%s",
            self.name,
            job.id,
            job.kind,
            job.version,
            job.source,
            job.requested_by,
            lock.fence,
            job.attempts,
            f"; taking it over: {taken.recovered}" if taken.recovered else "",
        )
        if self.observer is not None:
            self.observer.job_started(job)
        progress = Progress(self.stream, on_phase=lambda phase: self._phase(lock, job, phase))
        engine = self.engine(progress)
        phases = progress.durations  # filled in as the engine goes; recorded with the outcome
        try:
            awaited = self.promotions.awaited()
        except REDIS_DOWN as exc:  # the next job's run settles it
            log.warning(
                "worker %s: job %s: the job awaiting promotion is not known (%s)", self.name, job.id, exc
            )
            awaited = None
        try:
            if job.kind is JobKind.ROLLBACK:
                result = engine.rollback(guard=lock, to=job.version)
            elif job.kind is JobKind.PROMOTE:
                result = engine.promote(guard=lock)
            elif job.kind is JobKind.ABORT:
                done = engine.abort_awaited(guard=lock)
                self._end(lock, job, Status.SUCCEEDED, message=done, audit=unchanged(engine, phases))
                self._settle(lock, job, engine, awaited, done, ok=True)
                return
            else:
                result = engine.deploy(job.version, guard=lock, kind="deploy", digest=job.digest)
        except GuardLost as exc:
            log.error(
                "worker %s: job %s: %s; its outcome is left to the lock's holder", self.name, job.id, exc
            )
            return
        except Interrupted as exc:
            self._interrupted(lock, job, engine, exc, phases)
            raise
        except WatcherError as exc:
            self._end(
                lock,
                job,
                Status.FAILED,
                reason=f"{exc}{self._follow_move(job, run.moved if (run := run_of(exc)) else None)}",
                audit=unchanged(engine, phases, exc),
            )
            self._settle(lock, job, engine, awaited, str(exc), ok=False)
            return
        except Exception as exc:  # a bug must fail the job, not kill the worker
            log.exception("worker %s: job %s: unexpected error", self.name, job.id)
            self._end(
                lock,
                job,
                Status.FAILED,
                reason=f"unexpected error: {exc!r}",
                audit=unchanged(engine, phases, exc),
            )
            return
        status = Status.AWAITING if result.awaiting else Status.SUCCEEDED
        self._end(
            lock,
            job,
            status,
            message=f"{result.message}{self._follow_move(job, result.moved)}",
            audit=audit_of(result, phases),
        )
        self._settle(lock, job, engine, awaited, result.message, ok=True)
        if result.awaiting and result.until:
            try:
                retrying(
                    lambda: self.promotions.mark(lock, job, result.until or ""),
                    f"marking job {job.id} as awaiting promotion",
                    give_up_after=5,
                )
            except (GuardLost, RedisUnavailable) as exc:  # `watcher promote` then runs it directly
                log.error("worker %s: job %s is not marked as awaiting promotion: %s", self.name, job.id, exc)

    def _settle(
        self, lock: DeployLock, job: Job, engine: Engine, awaited: Job | None, detail: str, *, ok: bool
    ) -> None:
        """End the job that awaited promotion when `job`'s run ended its wait (the state file says
        so): promoted, aborted, expired, or superseded by a newer deploy."""
        if awaited is None or awaited.id == job.id:
            return
        try:
            pending = engine.view().recorded.pending
        except WatcherError:
            return  # Docker cannot say: the next job settles it
        if (
            pending is not None
            and awaiting(pending)
            and (pending.version, pending.until) == (awaited.version, awaited.until)
        ):
            return  # it still waits (a promote refused, a deploy that stopped before it started)
        if job.kind is JobKind.PROMOTE and ok:
            status, text = Status.SUCCEEDED, f"promoted by job {job.id} ({job.requested_by}): {detail}"
        elif job.kind is JobKind.ABORT and ok:
            status, text = Status.CANCELLED, f"aborted by job {job.id} ({job.requested_by}): {detail}"
        elif job.kind in ACTIONS:
            status, text = Status.FAILED, f"job {job.id} ({job.kind}): {detail}"
        else:
            status, text = Status.SUPERSEDED, f"superseded by job {job.id} ({job.kind} {job.version})"
        self._settle_as(lock, awaited, status, text)

    def _settle_as(self, lock: DeployLock, awaited: Job, status: Status, text: str) -> None:
        try:
            retrying(
                lambda: self.promotions.settle(lock, awaited, status, text),
                f"settling job {awaited.id}",
                give_up_after=5,
            )
        except (GuardLost, RedisUnavailable) as exc:
            log.error("worker %s: job %s was not settled (%s): %s", self.name, awaited.id, text, exc)
            return
        log.info("worker %s: job %s %s: %s", self.name, awaited.id, status.value, text)

    def _expire(self, lock: DeployLock) -> bool:
        """No job to take: remove the colour of a job whose wait for promotion is over."""
        awaited = self.promotions.awaited()
        if awaited is None or not past(awaited.until):
            return False
        with logs.job_context(self.app, awaited.id):
            engine = self.engine(Progress(self.stream))
            try:
                done = engine.expire_awaited(guard=lock)
            except GuardLost as exc:
                log.error(
                    "worker %s: job %s: %s; its expiry is left to the lock's holder",
                    self.name,
                    awaited.id,
                    exc,
                )
                return True
            except WatcherError as exc:
                log.error(
                    "worker %s: job %s: its expired colour was not removed: %s", self.name, awaited.id, exc
                )
                done = (
                    f"the wait for promotion ended at {awaited.until}, but its colour was not removed ({exc}): "
                    "the next deploy removes it (`watcher status`)"
                )
            self._settle_as(
                lock,
                awaited,
                Status.FAILED,
                done or f"the wait for promotion ended at {awaited.until} (nothing waited in the state)",
            )
        return True

    def _follow_move(self, job: Job, moved: str | None) -> str:
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
                self.name,
                job.id,
                job.version,
                moved,
                exc,
            )
            return f"{said}, but it could not be queued ({exc}): deploy it again"
        log.info("worker %s: job %s: %s", self.name, job.id, done.message)
        if done.outcome == "queued":
            return f"{said}: job {done.job.id} deploys it"
        if done.outcome == "already-queued":
            return f"{said}: job {done.job.id}, waiting, deploys it"
        return f"{said}; not queued: {done.message}"

    def _phase(self, lock: DeployLock, job: Job, phase: str) -> None:
        """Fenced phase update: a lost lock stops the engine here (GuardLost); an unreachable
        Redis does not (the phase is for humans; the guard decides about the switch)."""
        logs.enter_phase(phase)
        try:
            self.queue.set_phase(lock, job, phase)
        except REDIS_DOWN as exc:
            log.warning(
                "worker %s: job %s: phase %r not recorded (Redis unreachable: %s); carrying on",
                self.name,
                job.id,
                phase,
                exc,
            )

    def _end(
        self,
        lock: DeployLock,
        job: Job,
        status: Status,
        *,
        reason: str | None = None,
        message: str | None = None,
        audit: Audit | None = None,
        give_up_after: float | None = None,
    ) -> None:
        """Record the outcome, retrying while Redis is away (each attempt shielded from SIGTERM,
        the waits between them not). If the lock is gone by then, the job stays `running` and the
        next lock holder re-runs it: the engine finds the version live and says so."""

        def record() -> None:
            with shielded():
                self.queue.finish(lock, job, status, reason=reason, message=message, audit=audit)

        try:
            retrying(record, f"recording the end of job {job.id}", give_up_after=give_up_after)
        except GuardLost as exc:
            log.error("worker %s: %s; the next worker to take the lock re-checks the job", self.name, exc)
            return
        log.info("worker %s: job %s %s: %s", self.name, job.id, status.value, reason or message)
        if self.observer is not None:
            self.observer.job_ended(job, status, reason or message or "", audit or Audit())

    def _interrupted(
        self, lock: DeployLock, job: Job, engine: Engine, exc: Interrupted, phases: dict[str, float]
    ) -> None:
        """The engine unwound (the live colour serves): succeeded if the job's version is live
        by now, else back to the head of the queue."""
        with shielded():
            try:
                view = engine.view()
                live = view.live if view.live and view.live.version == job.version else None
            except WatcherError:
                live = None
            try:
                if live is not None:
                    self._end(
                        lock,
                        job,
                        Status.SUCCEEDED,
                        message=f"{job.version} is live on {live.color}; the worker was stopped ({exc}) "
                        "before the old colour was stopped",
                        audit=Audit(phases, None, job.version, live.digest),
                        give_up_after=5,
                    )
                else:
                    retrying(
                        lambda: self.queue.requeue(lock, job, f"its worker {self.name} was stopped ({exc})"),
                        f"requeueing job {job.id}",
                        give_up_after=5,
                    )
                    log.info("worker %s: job %s is back in the queue", self.name, job.id)
            except (GuardLost, RedisUnavailable) as error:
                log.error("worker %s: job %s left for the next worker: %s", self.name, job.id, error)


def audit_of(result: DeployResult, phases: dict[str, float]) -> Audit:
    """A finished engine run's trail: a no-op changed nothing; otherwise what was live before."""
    before = result.version if result.noop else (result.previous.version if result.previous else None)
    return Audit(
        phases, before, result.version, result.digest, result.receipt.to_dict() if result.receipt else None
    )


def unchanged(engine: Engine, phases: dict[str, float], failure: BaseException | None = None) -> Audit:
    """A failed run's trail: the engine unwound to what was live, so it is both before and after
    (read once from the engine's view; unknown when Docker cannot say), with the receipt of the
    run that raised `failure`."""
    with shielded():
        try:
            live = engine.view().live
        except Exception:  # Docker unreachable, or worse: the outcome is recorded all the same
            live = None
    version = live.version if live else None
    run = run_of(failure) if failure is not None else None
    receipt = run.receipt if run is not None else None
    return Audit(phases, version, version, receipt=receipt.to_dict() if receipt else None)
