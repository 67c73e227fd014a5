"""The worker loop (watcher/queue/worker.py) against the real Redis with the stand-in engine of
tests/harness/fake_worker.py: what each engine outcome records, the lock and host lock around a
job, the promote and abort kinds, and the loop woken by a new job. Workers killed or stopped in
processes are in tests/integration/test_queue.py; real deploys in test_worker.py there.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import redis

from tests.harness.fake_worker import FakeEngine, running
from tests.harness.waiting import wait_until
from watcher.engine.run import DeployResult, Guard
from watcher.engine.state import AWAITING, DeployState, Pending
from watcher.errors import Interrupted
from watcher.platforms.color import Color
from watcher.queue import DeployLock, DeployQueue, Job, Status, Worker, force_unlock, holder_of
from watcher.queue.connection import connect
from watcher.queue.job import Audit, JobKind
from watcher.queue.promotion import Promotions


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def queue(client: redis.Redis, app_name: str) -> DeployQueue:
    return DeployQueue(client, app_name)


class Seen:
    """An observer that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def job_started(self, job: Job) -> None:
        self.events.append(("started", job.id, job.kind))

    def job_ended(self, job: Job, status: Status, detail: str, audit: Audit) -> None:
        self.events.append(("ended", job.id, status.value))


def worker_of(
    client: redis.Redis,
    app: str,
    engine: type[FakeEngine] = FakeEngine,
    *,
    poll: float = 0.1,
    **options: object,
) -> Worker:
    return Worker(
        client,
        app,
        lambda progress: engine(progress, client, app),
        lock_ttl=5,
        name="w",
        poll=poll,
        stream=io.StringIO(),
        **options,  # type: ignore[arg-type]
    )


def ask(queue: DeployQueue, version: str, source: str = "cli") -> Job:
    return queue.enqueue(version, source=source, requested_by="test").job


def ended(queue: DeployQueue, job_id: str) -> Job:
    job = queue.get(job_id)
    assert job is not None and job.status.final, job
    return job


def test_a_deploy_job_runs_to_its_end_with_its_audit(client: redis.Redis, queue: DeployQueue) -> None:
    seen = Seen()
    worker = worker_of(client, queue.app, observer=seen)
    assert not worker.run_once()  # nothing waits
    job = ask(queue, "v1")
    assert worker.run_once()
    done = ended(queue, job.id)
    assert (done.status, done.message, done.worker, done.fence) == (Status.SUCCEEDED, "v1 is live", "w", 1)
    assert (done.before, done.after) == (None, "v1")
    assert {"pull", "health", "switch", "verify"} <= set(done.phases)
    assert seen.events == [("started", job.id, "deploy"), ("ended", job.id, "succeeded")]
    assert holder_of(client, queue.app) is None and queue.running() == []
    again = ask(queue, "v1")  # the stand-in's live version: a no-op run
    assert worker.run_once()
    assert ended(queue, again.id).message == "v1 is already live"
    assert (ended(queue, again.id).before, ended(queue, again.id).after) == ("v1", "v1")


def test_a_failed_deploy_is_recorded_and_the_worker_carries_on(
    client: redis.Redis, queue: DeployQueue
) -> None:
    worker = worker_of(client, queue.app)
    failing = ask(queue, "fail1")
    assert worker.run_once()
    failed = ended(queue, failing.id)
    assert (failed.status, failed.reason) == (Status.FAILED, "fail1 never became healthy")
    job = ask(queue, "v2")
    assert worker.run_once()
    assert ended(queue, job.id).status is Status.SUCCEEDED


class Broken(FakeEngine):
    def deploy(self, version: str, **options: object) -> DeployResult:  # type: ignore[override]
        raise RuntimeError("a bug")


def test_a_bug_in_the_engine_fails_the_job_not_the_worker(client: redis.Redis, queue: DeployQueue) -> None:
    job = ask(queue, "v1")
    assert worker_of(client, queue.app, Broken).run_once()
    failed = ended(queue, job.id)
    assert (failed.status, failed.reason) == (Status.FAILED, "unexpected error: RuntimeError('a bug')")


def test_a_rollback_job_runs_the_engines_rollback(client: redis.Redis, queue: DeployQueue) -> None:
    job = ask(queue, "v0", source="rollback")
    assert job.kind is JobKind.ROLLBACK
    assert worker_of(client, queue.app).run_once()
    assert ended(queue, job.id).status is Status.SUCCEEDED
    switches = [json.loads(raw) for raw in client.lrange(f"watcher:{queue.app}:fake:switches", 0, -1)]
    assert [(switch["version"], switch["kind"]) for switch in switches] == [("v0", "rollback")]


def test_nothing_runs_while_another_holds_the_lock(client: redis.Redis, queue: DeployQueue) -> None:
    job = ask(queue, "v1")
    with DeployLock(client, queue.app, ttl=5, purpose="watcher deploy").acquire():
        assert not worker_of(client, queue.app).run_once()
    assert [waiting.id for waiting in queue.waiting()] == [job.id]


class LosesTheLock(FakeEngine):
    """Its lock is taken away (`watcher unlock --force`) as the job starts."""

    def deploy(self, version: str, *, guard: Guard, **options: object) -> DeployResult:  # type: ignore[override]
        force_unlock(self.client, self.app)
        return super().deploy(version, guard=guard)


def test_a_lost_lock_leaves_the_job_to_the_next_holder(client: redis.Redis, queue: DeployQueue) -> None:
    job = ask(queue, "v1")
    assert worker_of(client, queue.app, LosesTheLock).run_once()
    left = queue.get(job.id)
    # The fenced phase write stopped it before the pull; nothing was recorded.
    assert left is not None and (left.status, left.phase, left.finished) == (Status.RUNNING, "starting", None)
    assert client.get(f"watcher:{queue.app}:fake:live") is None
    assert worker_of(client, queue.app).run_once()
    done = ended(queue, job.id)
    assert (done.status, done.attempts, done.fence) == (Status.SUCCEEDED, 2, 2)


class Stopped(FakeEngine):
    """SIGTERM arrives during health."""

    def deploy(self, version: str, **options: object) -> DeployResult:  # type: ignore[override]
        with self.progress.phase("health"):
            raise Interrupted(15)


def test_a_stopped_job_goes_back_to_the_head_of_the_queue(client: redis.Redis, queue: DeployQueue) -> None:
    job = ask(queue, "v1")
    with pytest.raises(Interrupted):
        worker_of(client, queue.app, Stopped).run_once()
    back = queue.get(job.id)
    assert back is not None and (back.status, back.worker, back.attempts) == (Status.QUEUED, None, 1)
    assert [waiting.id for waiting in queue.waiting()] == [job.id] and queue.running() == []
    assert holder_of(client, queue.app) is None


def test_the_loop_starts_a_new_job_within_moments(client: redis.Redis, queue: DeployQueue) -> None:
    with running(worker_of(client, queue.app, poll=3.0)):  # only the wake-up starts it in time
        time.sleep(0.3)
        job = ask(queue, "v1")
        wait_until(lambda: (found := queue.get(job.id)) and found.status.final, 2, "the job's end")
    assert ended(queue, job.id).status is Status.SUCCEEDED


# -- promote and abort ----------------------------------------------------------------------------


class Waiting:
    pending = None  # the stand-in keeps no pending swap: every wait has ended


class Promoting(FakeEngine):
    """Promotes and aborts by saying so; its state holds no waiting swap afterwards."""

    def view(self):  # noqa: ANN201
        view = super().view()
        view.recorded = Waiting()  # type: ignore[attr-defined]
        return view

    def promote(self, *, guard: Guard, version: str | None = None) -> DeployResult:
        guard.check()
        return DeployResult("deploy", "v2", Color.GREEN, None, message="v2 is live on green")

    def abort_awaited(self, *, guard: Guard) -> str:
        guard.check()
        return "removed v2 from green"


def awaiting_promotion(
    client: redis.Redis, queue: DeployQueue, until: str = "2030-01-01T00:00:00+00:00"
) -> str:
    ask(queue, "v2")
    with DeployLock(client, queue.app, ttl=5, purpose="w").acquire() as lock:
        taken = queue.take(lock, worker="w")
        assert taken is not None
        queue.finish(lock, taken.job, Status.AWAITING, message="v2 awaits promotion", until=until)
    return taken.job.id


@pytest.mark.parametrize(
    ("action", "outcome", "settled", "text"),
    [
        ("promote", "v2 is live on green", Status.SUCCEEDED, "promoted by job 2 (test): v2 is live on green"),
        (
            "abort",
            "removed v2 from green",
            Status.CANCELLED,
            "aborted by job 2 (test): removed v2 from green",
        ),
    ],
)
def test_promote_and_abort_jobs_settle_the_wait(
    client: redis.Redis, queue: DeployQueue, action: str, outcome: str, settled: Status, text: str
) -> None:
    waiting = awaiting_promotion(client, queue)
    asked = Promotions(queue).ask(action, requested_by="test").job
    assert asked is not None and asked.kind == action
    assert worker_of(client, queue.app, Promoting).run_once()
    done = ended(queue, asked.id)
    assert (done.status, done.message) == (Status.SUCCEEDED, outcome)
    wait = ended(queue, waiting)
    assert (wait.status, wait.message if settled is Status.SUCCEEDED else wait.reason) == (settled, text)
    assert Promotions(queue).awaited() is None


class StoppedAtTheEnd(Promoting):
    """SIGTERM arrives during the abort's shielded removal: raised once it is done."""

    def abort_awaited(self, *, guard: Guard) -> str:
        raise Interrupted(15)


class StoppedBeforeTheRecord(FakeEngine):
    """SIGTERM in the promote's verification: unwound, the colour waits again (the state's note)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.note = Pending("deploy", "v2", Color.GREEN, AWAITING, until="2030-01-01T00:00:00+00:00")

    def view(self):  # noqa: ANN201
        view = super().view()
        view.recorded = DeployState(pending=self.note)  # type: ignore[attr-defined]
        return view

    def promote(self, *, guard: Guard, version: str | None = None) -> DeployResult:
        raise Interrupted(15)


def test_an_abort_stopped_once_its_colour_is_gone_succeeded_and_ends_the_wait(
    client: redis.Redis, queue: DeployQueue
) -> None:
    waiting = awaiting_promotion(client, queue)
    asked = Promotions(queue).ask("abort", requested_by="test").job
    assert asked is not None
    with pytest.raises(Interrupted):
        worker_of(client, queue.app, StoppedAtTheEnd).run_once()
    done = ended(queue, asked.id)
    assert done.status is Status.SUCCEEDED and "is removed" in (done.message or ""), done.describe()
    assert ended(queue, waiting).status is Status.CANCELLED and queue.waiting() == []


def test_a_promote_stopped_before_its_record_waits_again_and_the_wait_goes_on(
    client: redis.Redis, queue: DeployQueue
) -> None:
    waiting = awaiting_promotion(client, queue)
    asked = Promotions(queue).ask("promote", requested_by="test").job
    assert asked is not None
    with pytest.raises(Interrupted):
        worker_of(client, queue.app, StoppedBeforeTheRecord).run_once()
    assert [job.id for job in queue.waiting()] == [asked.id]
    assert Promotions(queue).awaited() is not None and queue.get(waiting).status is Status.AWAITING  # type: ignore[union-attr]


class ExpiryStopped(Promoting):
    """SIGTERM arrives during the expiry's shielded removal: raised once it is done."""

    def expire_awaited(self, *, guard: Guard) -> str | None:
        raise Interrupted(15)


def test_an_expiry_stopped_once_its_colour_is_gone_ends_the_wait(
    client: redis.Redis, queue: DeployQueue
) -> None:
    waiting = awaiting_promotion(client, queue, until="2020-01-01T00:00:00+00:00")
    with pytest.raises(Interrupted):
        worker_of(client, queue.app, ExpiryStopped).run_once()
    wait = ended(queue, waiting)
    assert wait.status is Status.FAILED and "its colour was removed" in (wait.reason or ""), wait.describe()
