"""The queue's script (watcher/queue/scripts/queue.lua) against the real Redis, one contract at a
time: enqueue and coalescing, cancel, take and the recovery of a dead worker's job, fenced writes,
the history's trim, and the promote and abort requests. The worker loop over it is in
test_worker.py; workers in processes, Redis restarts and the CLI in tests/integration/test_queue.py.

Each test has its own app name (tests/conftest.py), so its own keys, deleted afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from watcher.config import Retention
from watcher.engine.state import UNVERIFIED, VERIFIED, Release
from watcher.errors import GuardLost, UsageError
from watcher.freeze import FreezeSchedule, FreezeWindow, Hold
from watcher.host import App, Host
from watcher.platforms.color import Color
from watcher.policy import SemverPolicy
from watcher.queue import DeployLock, DeployQueue, Status, Suspension
from watcher.queue.connection import connect
from watcher.queue.job import Audit, JobKind
from watcher.queue.promotion import Promotions

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def queue(client: redis.Redis, app_name: str) -> DeployQueue:
    return DeployQueue(client, app_name)


@pytest.fixture
def lock(client: redis.Redis, app_name: str) -> Iterator[DeployLock]:
    with DeployLock(client, app_name, ttl=10, purpose="test worker").acquire() as held:
        yield held


def ask(queue: DeployQueue, version: str, *, source: str = "cli", **options: object):  # noqa: ANN201
    return queue.enqueue(version, source=source, requested_by="test", **options)  # type: ignore[arg-type]


def status_of(queue: DeployQueue, job_id: str) -> Status:
    job = queue.get(job_id)
    assert job is not None
    return job.status


# -- enqueue --------------------------------------------------------------------------------------


def test_a_request_supersedes_what_waits_and_wakes_a_worker(client: redis.Redis, queue: DeployQueue) -> None:
    first = ask(queue, "v1")
    second = ask(queue, "v2")
    assert (first.outcome, second.outcome) == ("queued", "queued")
    assert [job.id for job in queue.waiting()] == [second.job.id]
    superseded = queue.get(first.job.id)
    assert superseded is not None and superseded.status is Status.SUPERSEDED
    assert superseded.reason == f"superseded by job {second.job.id} (v2)"
    assert [job.id for job in queue.history()] == [first.job.id]
    assert client.lrange(queue.keys.wake, 0, -1) == [second.job.id]  # one wake-up pending, the newest


def test_the_same_version_waiting_is_a_no_op_unless_the_digests_differ(queue: DeployQueue) -> None:
    waiting = ask(queue, "v1", digest=DIGEST_A).job
    again = ask(queue, "v1")  # a digest unknown on one side matches
    assert (again.outcome, again.job.id, again.noop) == ("already-queued", waiting.id, True)
    assert ask(queue, "v1", digest=DIGEST_A).outcome == "already-queued"
    moved = ask(queue, "v1", digest=DIGEST_B, repository="acme/shop")
    assert moved.outcome == "queued" and moved.job.digest == DIGEST_B
    assert moved.job.repository == "acme/shop"
    assert status_of(queue, waiting.id) is Status.SUPERSEDED


def test_keep_newer_leaves_a_newer_waiting_request_alone(queue: DeployQueue) -> None:
    newer = ask(queue, "v3").job
    kept = ask(queue, "v2", digest=DIGEST_A, keep_newer=True)
    assert (kept.outcome, kept.job.id) == ("newer-queued", newer.id)
    assert [job.id for job in queue.waiting()] == [newer.id]
    assert ask(queue, "v4", keep_newer=True).job.id == newer.id
    queue.cancel(newer.id, by="test")
    assert ask(queue, "v2", keep_newer=True).outcome == "queued"  # nothing newer waits


def test_the_live_version_is_done_at_once_only_when_the_queue_is_idle(
    queue: DeployQueue, lock: DeployLock
) -> None:
    live = Release(Color.BLUE, "v1", digest=DIGEST_A)
    done = ask(queue, "v1", digest=DIGEST_A, live=live)
    assert done.outcome == "live" and done.job.status is Status.SUCCEEDED
    assert done.job.message == "v1 is already live on blue: nothing to do"
    assert ask(queue, "v1", digest=DIGEST_B, live=live).outcome == "queued"  # the tag moved
    taken = queue.take(lock, worker="w")
    assert taken is not None
    assert ask(queue, "v1", digest=DIGEST_A, live=live).outcome == "queued"  # something runs


def test_bad_requests_never_reach_redis(queue: DeployQueue) -> None:
    with pytest.raises(UsageError, match="unknown job source"):
        ask(queue, "v1", source="promote")
    with pytest.raises(UsageError, match="not an image digest"):
        ask(queue, "v1", digest="sha256:short")
    with pytest.raises(UsageError):
        ask(queue, "-rm")
    assert queue.waiting() == [] and queue.client.get(queue.keys.seq) is None


def test_a_rollback_request_is_a_rollback_job(queue: DeployQueue) -> None:
    job = ask(queue, "v1", source="rollback").job
    assert job.kind is JobKind.ROLLBACK and job.to_dict()["kind"] == "rollback"
    assert ask(queue, "v2").job.kind is JobKind.DEPLOY


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_ends_a_waiting_job_only(queue: DeployQueue, lock: DeployLock) -> None:
    waiting = ask(queue, "v1").job
    cancelled = queue.cancel(waiting.id, by="ann")
    assert cancelled.status is Status.CANCELLED and cancelled.reason == "cancelled by ann"
    assert queue.waiting() == [] and [job.id for job in queue.history()] == [waiting.id]
    with pytest.raises(UsageError, match="already ended"):
        queue.cancel(waiting.id, by="ann")
    with pytest.raises(UsageError, match="no job 999"):
        queue.cancel("999", by="ann")
    running = ask(queue, "v2").job
    assert queue.take(lock, worker="w") is not None
    with pytest.raises(UsageError, match="cannot be cancelled"):
        queue.cancel(running.id, by="ann")
    assert status_of(queue, running.id) is Status.RUNNING


# -- take -----------------------------------------------------------------------------------------


def test_take_starts_the_newest_waiting_job_under_the_grant(queue: DeployQueue, lock: DeployLock) -> None:
    assert queue.take(lock, worker="w") is None  # empty
    job = ask(queue, "v1").job
    taken = queue.take(lock, worker="w")
    assert taken is not None and taken.recovered is None and taken.job.id == job.id
    assert (taken.job.status, taken.job.worker, taken.job.phase) == (Status.RUNNING, "w", "starting")
    assert (taken.job.fence, taken.job.attempts) == (lock.fence, 1)
    assert taken.job.started is not None
    assert queue.waiting() == [] and [j.id for j in queue.running()] == [job.id]


def test_take_holds_back_while_paused(client: redis.Redis, queue: DeployQueue, lock: DeployLock) -> None:
    ask(queue, "v1")
    pause = Suspension(client, queue.app)
    pause.pause(by="ann")
    assert queue.take(lock, worker="w") is None and len(queue.waiting()) == 1
    pause.resume()
    assert queue.take(lock, worker="w") is not None


class Frozen(FreezeSchedule):
    """A scheduled freeze in force whenever asked."""

    def hold(self, at: float | None = None) -> Hold | None:
        return Hold(FreezeWindow("0 0 * * *", "0 1 * * *"), time.time() + 60)


def test_a_freeze_holds_deploys_but_not_rollbacks(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, freezes=Frozen())
    with DeployLock(client, app_name, ttl=10, purpose="w").acquire() as lock:
        ask(queue, "v2")
        assert queue.take(lock, worker="w") is None and len(queue.waiting()) == 1
        back = ask(queue, "v1", source="rollback").job
        taken = queue.take(lock, worker="w")
        assert taken is not None and taken.job.id == back.id


def test_take_needs_the_lock(client: redis.Redis, queue: DeployQueue, app_name: str) -> None:
    job = ask(queue, "v1").job
    lock = DeployLock(client, app_name, ttl=10, purpose="w").acquire()
    lock.release()
    lock.fence = 1  # a grant that no longer holds the key
    with pytest.raises(GuardLost, match="lost before a job was taken"):
        queue.take(lock, worker="w")
    assert status_of(queue, job.id) is Status.QUEUED


def dead_worker_left(queue: DeployQueue, version: str, worker: str, phase: str) -> str:
    """A job taken, then its worker died: in `running`, its lock gone."""
    job = ask(queue, version).job
    with DeployLock(queue.client, queue.app, ttl=10, purpose=worker).acquire() as lock:
        taken = queue.take(lock, worker=worker)
        assert taken is not None
        queue.set_phase(lock, taken.job, phase)
    return job.id


def test_a_dead_workers_job_is_recovered_under_the_new_grant(queue: DeployQueue) -> None:
    job_id = dead_worker_left(queue, "v1", "w1", "health")
    assert queue.has_work()  # in `running` while nobody holds the lock
    with DeployLock(queue.client, queue.app, ttl=10, purpose="w2").acquire() as lock:
        recovered = queue.take(lock, worker="w2")
        assert recovered is not None and recovered.job.fence == lock.fence == 2
    assert recovered.job.id == job_id and recovered.recovered == "its worker w1 stopped during health"
    assert (recovered.job.worker, recovered.job.phase, recovered.job.attempts) == ("w2", "recovering", 2)


def test_a_dead_workers_job_is_superseded_when_a_newer_request_waits(queue: DeployQueue) -> None:
    old = dead_worker_left(queue, "v1", "w1", "pull")
    newer = ask(queue, "v2").job
    with DeployLock(queue.client, queue.app, ttl=10, purpose="w2").acquire() as lock:
        taken = queue.take(lock, worker="w2")
    assert taken is not None and taken.job.id == newer.id and taken.recovered is None
    ended = queue.get(old)
    assert ended is not None and ended.status is Status.SUPERSEDED
    assert ended.reason == "its worker w1 stopped during pull and a newer request waits"


def test_a_job_taken_max_attempts_times_fails(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, max_attempts=1)
    job_id = dead_worker_left(queue, "v1", "w1", "switch")
    with DeployLock(client, app_name, ttl=10, purpose="w2").acquire() as lock:
        assert queue.take(lock, worker="w2") is None
    failed = queue.get(job_id)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.reason == "its worker w1 stopped during switch (attempt 1 of 1); not retried"
    last = queue.last_job()
    assert last is not None and last.id == job_id and queue.running() == []


# -- fenced writes --------------------------------------------------------------------------------


def test_finish_records_the_outcome_and_its_audit(queue: DeployQueue, lock: DeployLock) -> None:
    ask(queue, "v2")
    taken = queue.take(lock, worker="w")
    assert taken is not None
    queue.set_phase(lock, taken.job, "verify")
    assert status_of(queue, taken.job.id) is Status.RUNNING
    audit = Audit({"pull": 1.5, "switch": 0.1}, "v1", "v2", DIGEST_A, {"requests": 3})
    queue.finish(lock, taken.job, Status.SUCCEEDED, message="v2 is live on green", audit=audit)
    done = queue.get(taken.job.id)
    assert done is not None and done.status is Status.SUCCEEDED and done.finished is not None
    assert (done.message, done.phases, done.before, done.after) == (
        "v2 is live on green",
        audit.phases,
        "v1",
        "v2",
    )
    assert (done.digest, done.receipt, done.phase) == (DIGEST_A, {"requests": 3}, "verify")
    last = queue.last_job()
    assert last is not None and last.id == done.id
    assert queue.running() == [] and [job.id for job in queue.history()] == [done.id]


def test_writes_are_refused_once_the_lock_moved(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    """A stale grant writes nothing: not the phase, the outcome nor a requeue, whoever holds the
    lock now, and not even when the key is free again (the fence counter moved on)."""
    ask(queue, "v1")
    stale = DeployLock(client, app_name, ttl=10, purpose="stale").acquire()
    stale._stop.set()  # no renewals: what SIGSTOP does
    taken = queue.take(stale, worker="stale")
    assert taken is not None
    client.delete(queue.keys.lock)  # its lease ran out
    with DeployLock(client, app_name, ttl=10, purpose="fresh").acquire() as fresh:
        assert fresh.fence == (stale.fence or 0) + 1
        for write in (
            lambda: queue.set_phase(stale, taken.job, "switch"),
            lambda: queue.finish(stale, taken.job, Status.SUCCEEDED, message="late"),
            lambda: queue.requeue(stale, taken.job, "stopped"),
        ):
            with pytest.raises(GuardLost, match="no longer ours"):
                write()
    with pytest.raises(GuardLost):  # the key is free, but the fence counter is not the stale one's
        queue.finish(stale, taken.job, Status.FAILED, reason="late")
    job = queue.get(taken.job.id)
    assert job is not None and (job.status, job.phase, job.worker) == (Status.RUNNING, "starting", "stale")
    stale.release()


def test_a_job_of_an_earlier_grant_is_not_the_new_holders_to_write(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    job_id = dead_worker_left(queue, "v1", "w1", "pull")
    job = queue.get(job_id)
    assert job is not None
    with DeployLock(client, app_name, ttl=10, purpose="w2").acquire() as lock:
        with pytest.raises(GuardLost):  # the lock is ours, the job (fence 1) is not: take it first
            queue.finish(lock, job, Status.SUCCEEDED, message="not mine")


def test_requeue_puts_a_stopped_job_back_first_or_supersedes_it(
    client: redis.Redis, queue: DeployQueue, lock: DeployLock
) -> None:
    first = ask(queue, "v1").job
    taken = queue.take(lock, worker="w")
    assert taken is not None
    client.delete(queue.keys.wake)
    queue.requeue(lock, taken.job, "its worker w was stopped")
    back = queue.get(first.id)
    assert back is not None and (back.status, back.worker, back.fence, back.phase) == (
        Status.QUEUED,
        None,
        None,
        None,
    )
    assert [job.id for job in queue.waiting()] == [first.id] and queue.running() == []
    assert client.lrange(queue.keys.wake, 0, -1) == [first.id]
    again = queue.take(lock, worker="w")
    assert again is not None and again.job.attempts == 2
    newer = ask(queue, "v2").job
    queue.requeue(lock, again.job, "its worker w was stopped")
    gone = queue.get(first.id)
    assert gone is not None and gone.status is Status.SUPERSEDED
    assert gone.reason == "its worker w was stopped and a newer request waits"
    assert [job.id for job in queue.waiting()] == [newer.id]


# -- history --------------------------------------------------------------------------------------


def test_the_history_is_trimmed_by_count_and_its_hashes_go(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, retention=Retention(keep=3))
    ids = [ask(queue, f"v{n}").job.id for n in range(6)]  # each supersedes the one before
    assert client.lrange(queue.keys.history, 0, -1) == ids[-2::-1][:3]
    assert [client.exists(queue.keys.job(job_id)) for job_id in ids] == [0, 0, 1, 1, 1, 1]


def test_the_history_is_trimmed_by_age_but_keeps_the_newest(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, retention=Retention(keep=100, max_age=60))
    old = ask(queue, "v1").job
    ask(queue, "v2")
    client.hset(queue.keys.job(old.id), "finished", str(time.time() - 61))
    newest = ask(queue, "v3").job
    assert [job.version for job in queue.history()] == ["v2"]
    assert not client.exists(queue.keys.job(old.id))
    assert [job.id for job in queue.waiting()] == [newest.id]


def test_every_key_is_under_the_installations_prefix(client: redis.Redis, app_name: str) -> None:
    prefix = f"{app_name}-ns"
    queue = DeployQueue(client, app_name, prefix=prefix)
    try:
        ask(queue, "v1")
        with DeployLock(client, app_name, ttl=10, purpose="w", prefix=prefix).acquire() as lock:
            taken = queue.take(lock, worker="w")
            assert taken is not None
            queue.finish(lock, taken.job, Status.SUCCEEDED, message="done")
        written = set(client.scan_iter(f"{prefix}:watcher:{app_name}:*"))
        assert {queue.keys.job("1"), queue.keys.history, queue.keys.last, queue.keys.fence} <= written
        assert not list(client.scan_iter(f"watcher:{app_name}:*"))
    finally:
        for found in client.scan_iter(f"{prefix}:*"):
            client.delete(found)


# -- promote and abort requests (queue/promotion.py) ----------------------------------------------


def awaiting_job(queue: DeployQueue, lock: DeployLock) -> str:
    """A deploy recorded as awaiting promotion, marked as the app's waiting job."""
    ask(queue, "v2")
    taken = queue.take(lock, worker="w")
    assert taken is not None
    queue.finish(
        lock,
        taken.job,
        Status.AWAITING,
        message="v2 awaits promotion on green",
        until="2030-01-01T00:00:00+00:00",
    )
    return taken.job.id


def test_promote_and_abort_act_on_the_job_awaiting_promotion(queue: DeployQueue, lock: DeployLock) -> None:
    promotions = Promotions(queue)
    with pytest.raises(UsageError, match="awaits promotion: nothing to promote"):
        promotions.ask("promote", requested_by="ann")
    waiting_id = awaiting_job(queue, lock)
    waiting = promotions.awaited()
    assert waiting is not None and waiting.id == waiting_id and waiting.until == "2030-01-01T00:00:00+00:00"
    asked = promotions.ask("promote", requested_by="ann")
    assert asked.outcome == "queued" and asked.job is not None
    assert (asked.job.kind, asked.job.version, asked.job.awaits) == (JobKind.PROMOTE, "v2", waiting_id)
    assert promotions.ask("promote", requested_by="bob").outcome == "already-queued"
    abort = promotions.ask("abort", requested_by="bob")
    assert abort.job is not None and abort.job.kind is JobKind.ABORT
    assert status_of(queue, asked.job.id) is Status.SUPERSEDED
    ask(queue, "v3")  # a newer deploy: nothing left to promote
    with pytest.raises(UsageError, match="a newer deploy supersedes"):
        promotions.ask("promote", requested_by="ann")
    with pytest.raises(UsageError, match="unknown action"):
        promotions.ask("deploy", requested_by="ann")


def test_settle_ends_the_wait_once_under_the_lock(
    client: redis.Redis, queue: DeployQueue, lock: DeployLock
) -> None:
    promotions = Promotions(queue)
    waiting_id = awaiting_job(queue, lock)
    waiting = queue.get(waiting_id)
    assert waiting is not None
    stale = DeployLock(client, queue.app, ttl=10, purpose="stale")
    stale.fence, stale.token = lock.fence, "not-the-token"
    with pytest.raises(GuardLost):
        promotions.settle(stale, waiting, Status.SUCCEEDED, "promoted")
    promotions.settle(lock, waiting, Status.SUCCEEDED, "promoted by job 9")
    settled = queue.get(waiting_id)
    assert settled is not None and (settled.status, settled.message) == (
        Status.SUCCEEDED,
        "promoted by job 9",
    )
    assert promotions.awaited() is None and client.get(queue.keys.awaiting) is None
    promotions.settle(lock, waiting, Status.FAILED, "expired")  # already settled: left as it is
    assert status_of(queue, waiting_id) is Status.SUCCEEDED


def test_an_unverified_live_release_is_no_reason_to_skip_its_version(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    from tests.unit.test_webhook import IMAGE, host_config

    host = Host(host_config(), client=client)
    for name, how, outcome in ((app_name, UNVERIFIED, "enqueued"), (f"{app_name}-v", VERIFIED, "noop")):
        state = SimpleNamespace(dir=tmp_path / name)
        app = App(
            host, SimpleNamespace(name=name, image=IMAGE, freezes=(), state=state), policy=SemverPolicy()
        )  # type: ignore[arg-type]
        app.live = lambda how=how: Release(Color.GREEN, "v2", digest=DIGEST_A, how=how)  # type: ignore[method-assign]
        assert app.enqueue("v2", source="cli", by="test", digest=DIGEST_A).status == outcome, how
