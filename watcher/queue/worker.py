"""`watcher worker`: take jobs from the queue one at a time, each under the deploy lock, and run
them through the engine until stopped.

Loop: wait for work (a BLPOP on `wake`, at most `poll` seconds, so a new job starts within
milliseconds and a dead worker's job within `poll` of its lock expiring); take the lock (another
worker or a `watcher deploy` may hold it: then wait); take the next job atomically (a dead
worker's job first); run it with the lock as the engine's guard and the job's phase updated
from the engine's progress; record the outcome (fenced); release the lock.

Outcomes: the engine's result -> succeeded (a no-op says so); WatcherError (DeployFailed,
a failed health check, a missing tag...) -> failed with its message; GuardLost -> nothing is
recorded, the lock's new holder owns the job, unless Redis forgot the queue meanwhile (its
marker changed, continuity.py): then the job goes back in Redis for the next holder to take
over. SIGTERM or SIGINT: the engine aborts the phase it is in safely (traffic stays on, or goes
back to, the live colour), the job goes back to the head of the queue (or is superseded if a
newer one waits), then the worker exits; once the job's work is done (the new version recorded
live, an abort's colour removed), the job is recorded as succeeded instead, and the job awaiting
promotion it ended is settled. A promote unwound so is taken up by the next worker: its colour
awaits promotion again (engine/promotion.py).

The outcome's record is outcome.py's (`Outcomes`); the job awaiting promotion, which a run may
end, is settled by settlement.py (`Settlement`).

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
from dataclasses import dataclass
from typing import TextIO

import redis

from watcher import logs
from watcher.config import Retention
from watcher.engine.run import DeployResult, Guard, run_of
from watcher.errors import GuardLost, Interrupted, LockBusy, WatcherError
from watcher.freeze import FreezeSchedule
from watcher.host_lock import HostLock
from watcher.interrupts import shielded
from watcher.progress import Progress
from watcher.queue.connection import REDIS_DOWN, Backoff
from watcher.queue.continuity import Continuity
from watcher.queue.job import Job, JobKind, Status
from watcher.queue.lock import DeployLock
from watcher.queue.outcome import Engine, Observer, Outcomes, audit_of, unchanged
from watcher.queue.promotion import Promotions
from watcher.queue.queue import DeployQueue, Taken
from watcher.queue.settlement import Settlement

log = logging.getLogger("watcher.worker")

#: Builds the engine for one job, reporting through the given Progress.
EngineFactory = Callable[[Progress], Engine]

#: The engine's run for each kind of job: its result, or (an abort) what it did.
PERFORM: dict[JobKind, Callable[[Engine, Job, Guard], DeployResult | str]] = {
    JobKind.DEPLOY: lambda engine, job, lock: engine.deploy(
        job.version, guard=lock, kind="deploy", digest=job.digest
    ),
    JobKind.ROLLBACK: lambda engine, job, lock: engine.rollback(
        guard=lock, to=job.version, done_if_live=True
    ),
    JobKind.PROMOTE: lambda engine, job, lock: engine.promote(guard=lock, version=job.version),
    JobKind.ABORT: lambda engine, job, lock: engine.abort_awaited(guard=lock),
}


@dataclass(frozen=True)
class Running:
    """One job in flight, with what its outcome is recorded from."""

    job: Job
    lock: DeployLock
    engine: Engine
    phases: dict[str, float]  # filled in as the engine goes
    awaited: Job | None  # the job awaiting promotion as it started: its run may end that wait


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
        continuity: Continuity | None = None,
    ) -> None:
        self.client = client
        self.app = app
        self.engine = engine
        self.lock_ttl = lock_ttl
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll = poll
        self.stream = stream if stream is not None else logs.progress_stream()
        self.prefix = prefix
        self.queue = DeployQueue(
            client, app, prefix=prefix, retention=retention, freezes=freezes, continuity=continuity
        )
        self.promotions = Promotions(self.queue)
        self.settlement = Settlement(self.promotions, self.name)
        self.outcomes = Outcomes(self.queue, self.name, observer)
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
                    return self.settlement.expire(lock, lambda: self.engine(Progress(self.stream)))
                self._run(taken, lock)
                return True
            except GuardLost as exc:  # between the grant and the take (Redis forgot it, or it expired)
                log.warning("worker %s: %s", self.name, exc)
                return False
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
        epoch = self.queue.continuity.epoch if self.queue.continuity else ""
        self._started(taken, lock)
        progress = Progress(self.stream, on_phase=lambda phase: self._phase(lock, job, phase))
        engine = self.engine(progress)
        run = Running(job, lock, engine, progress.durations, self.settlement.before(job))
        try:
            done = PERFORM[job.kind](engine, job, lock)
        except GuardLost as exc:
            if not self.outcomes.forgotten(job, epoch, run.phases, run_of(exc)):
                log.error(
                    "worker %s: job %s: %s; its outcome is left to the lock's holder", self.name, job.id, exc
                )
        except Interrupted as exc:
            done = self.outcomes.interrupted(lock, job, engine, exc, run.phases)
            if done is not None:  # e.g. a promote stopped after its record: the awaited job ends too
                with shielded():
                    self.settlement.after(lock, job, engine, run.awaited, done, ok=True)
            raise
        except WatcherError as exc:
            self._failed(run, exc)
        except Exception as exc:  # a bug must fail the job, not kill the worker
            log.exception("worker %s: job %s: unexpected error", self.name, job.id)
            reason = f"unexpected error: {exc!r}"
            self.outcomes.end(
                lock, job, Status.FAILED, reason=reason, audit=unchanged(engine, run.phases, exc)
            )
        else:
            self._succeeded(run, done)

    def _started(self, taken: Taken, lock: DeployLock) -> None:
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

    def _succeeded(self, run: Running, done: DeployResult | str) -> None:
        """Succeeded, or awaiting promotion: then it is the app's awaited job."""
        job, lock = run.job, run.lock
        if isinstance(done, str):  # an abort: it changed nothing live
            self.outcomes.end(
                lock, job, Status.SUCCEEDED, message=done, audit=unchanged(run.engine, run.phases)
            )
            self.settlement.after(lock, job, run.engine, run.awaited, done, ok=True)
            return
        self.outcomes.end(
            lock,
            job,
            Status.AWAITING if done.awaiting else Status.SUCCEEDED,
            message=f"{done.message}{self.outcomes.follow_move(job, done.moved)}",
            audit=audit_of(done, run.phases),
            until=(done.until or "") if done.awaiting else "",
        )
        self.settlement.after(lock, job, run.engine, run.awaited, done.message, ok=True)
        if done.awaiting and done.until:
            self.settlement.keep(job)

    def _failed(self, run: Running, exc: WatcherError) -> None:
        moved = failed.moved if (failed := run_of(exc)) else None
        self.outcomes.end(
            run.lock,
            run.job,
            Status.FAILED,
            reason=f"{exc}{self.outcomes.follow_move(run.job, moved)}",
            audit=unchanged(run.engine, run.phases, exc),
        )
        self.settlement.after(run.lock, run.job, run.engine, run.awaited, str(exc), ok=False)

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
