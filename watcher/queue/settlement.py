"""A worker's part in manual promotion (promotion.py): the job awaiting promotion is noted before
each run and settled, fenced, once the run ended its wait (the state file says so) - promoted,
aborted, failed or superseded - or once its wait expired with no job to run; a deploy whose run
now awaits promotion is marked as the app's awaited job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from watcher import logs
from watcher.engine.promotion import past
from watcher.engine.state import awaiting, holds_wait
from watcher.errors import GuardLost, Interrupted, RedisUnavailable, StateUnwritable, WatcherError
from watcher.interrupts import shielded
from watcher.queue.connection import REDIS_DOWN, retrying
from watcher.queue.job import ACTIONS, Job, JobKind, Status
from watcher.queue.lock import DeployLock
from watcher.queue.outcome import Engine
from watcher.queue.promotion import Promotions

log = logging.getLogger("watcher.worker")


class Settlement:
    """One worker's settling of its app's awaited job."""

    def __init__(self, promotions: Promotions, worker: str) -> None:
        self.promotions = promotions
        self.worker = worker

    def before(self, job: Job) -> Job | None:
        """The job awaiting promotion as `job` starts: the one its run may end."""
        try:
            return self.promotions.awaited()
        except REDIS_DOWN as exc:  # the next job's run settles it
            log.warning(
                "worker %s: job %s: the job awaiting promotion is not known (%s)", self.worker, job.id, exc
            )
            return None

    def after(
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
        self.settle(lock, awaited, status, text)

    def settle(self, lock: DeployLock, awaited: Job, status: Status, text: str) -> None:
        try:
            retrying(
                lambda: self.promotions.settle(lock, awaited, status, text),
                f"settling job {awaited.id}",
                give_up_after=5,
            )
        except (GuardLost, RedisUnavailable) as exc:
            log.error("worker %s: job %s was not settled (%s): %s", self.worker, awaited.id, text, exc)
            return
        except StateUnwritable as exc:  # harmless: a copy whose wait the state ended is never put back
            log.warning(
                "worker %s: job %s: this host's copy of its wait stays: %s", self.worker, awaited.id, exc
            )
        log.info("worker %s: job %s %s: %s", self.worker, awaited.id, status.value, text)

    def keep(self, job: Job) -> None:
        """`job`, just recorded as awaiting promotion: the host keeps a copy of it, for a Redis
        that loses it (continuity.py)."""
        try:
            retrying(
                lambda: self.promotions.keep(job),
                f"keeping a copy of job {job.id}, awaiting promotion",
                give_up_after=5,
            )
        except (RedisUnavailable, StateUnwritable) as exc:
            log.error(
                "worker %s: job %s awaits promotion, but this host keeps no copy: %s",
                self.worker,
                job.id,
                exc,
            )

    def expire(self, lock: DeployLock, engine: Callable[[], Engine]) -> bool:
        """No job to take: remove the colour of a job whose wait for promotion is over."""
        awaited = self.promotions.awaited()
        if awaited is None or not past(awaited.until):
            return False
        with logs.job_context(self.promotions.queue.app, awaited.id):
            built = engine()
            try:
                done = built.expire_awaited(guard=lock)
            except GuardLost as exc:
                log.error(
                    "worker %s: job %s: %s; its expiry is left to the lock's holder",
                    self.worker,
                    awaited.id,
                    exc,
                )
                return True
            except Interrupted:  # the removal is shielded: once the note is gone, the wait ended
                with shielded():
                    if not still_waits(built, awaited):
                        ended = f"the wait for promotion ended at {awaited.until}: its colour was removed"
                        self.settle(lock, awaited, Status.FAILED, f"{ended} (the worker was then stopped)")
                raise
            except WatcherError as exc:
                log.error(
                    "worker %s: job %s: its expired colour was not removed: %s", self.worker, awaited.id, exc
                )
                done = (
                    f"the wait for promotion ended at {awaited.until}, but its colour was not removed ({exc}): "
                    "the next deploy removes it (`watcher status`)"
                )
            ended = done or f"the wait for promotion ended at {awaited.until} (nothing waited in the state)"
            self.settle(lock, awaited, Status.FAILED, ended)
        return True


def still_waits(engine: Engine, awaited: Job) -> bool:
    """Whether the state still holds `awaited`'s wait (or a promote of it): unknown counts as yes."""
    try:
        pending = engine.view().recorded.pending
    except WatcherError:
        return True
    return holds_wait(pending, awaited.version, awaited.until)
