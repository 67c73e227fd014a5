"""A Redis that forgets the queue (watcher/queue/continuity.py, scripts/epoch.lua) against the real
Redis: the loss of one app's keys, as FLUSHALL or a Redis restarted without persistence leaves
them, is noticed once whoever looks first, job ids never restart, the pause and the waiting job
come back from the host, so does the job awaiting promotion while the host's state holds its wait,
and a job that ran goes back for the next worker. The whole worker
under a real FLUSHALL, a restart without persistence and load is tests/faults/test_redis_forgets.py.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.harness.fake_worker import FakeEngine
from watcher.engine.run import DeployResult, Guard
from watcher.engine.state import AWAITING, PROMOTE, DeployState, Pending, StateStore
from watcher.engine.status import format_summary
from watcher.errors import UsageError
from watcher.host_lock import HostLock
from watcher.platforms.color import Color
from watcher.queue import DeployLock, DeployQueue, Job, Status, Suspension, Worker, format_overview, overview
from watcher.queue.connection import connect
from watcher.queue.continuity import IDS_BLOCK, Continuity, Loss
from watcher.queue.promotion import Promotions


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


class Told:
    """The losses a Continuity reported."""

    def __init__(self) -> None:
        self.losses: list[Loss] = []

    def __call__(self, loss: Loss) -> None:
        self.losses.append(loss)


def kept(
    client: redis.Redis, app: str, state: Path, who: str = "test", told: Told | None = None
) -> Continuity:
    return Continuity(client, app, state, who=who, on_loss=told)


def queue_of(continuity: Continuity) -> DeployQueue:
    return DeployQueue(continuity.client, continuity.app, continuity=continuity)


def forget(client: redis.Redis, app: str) -> None:
    """What FLUSHALL does to one app's keys (the shared Redis is never flushed)."""
    for found in client.scan_iter(f"watcher:{app}:*"):
        client.delete(found)


def host_file(state: Path) -> dict:
    return json.loads((state / "redis.json").read_text())


def test_a_first_look_sets_the_marker_and_is_no_loss(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    told = Told()
    first = kept(client, app_name, tmp_path, told=told)
    assert first.check() is None and told.losses == []
    assert client.get(f"watcher:{app_name}:epoch") == first.epoch == host_file(tmp_path)["epoch"]
    assert first.check() is None  # the same marker: one GET, nothing else


def test_job_ids_are_reserved_on_the_host_and_go_on_above_them_after_a_loss(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    told = Told()
    queue = queue_of(kept(client, app_name, tmp_path, told=told))
    first = queue.enqueue("v1", source="cli", requested_by="test").job
    assert first.id == "1" and host_file(tmp_path)["ids"] == IDS_BLOCK
    forget(client, app_name)
    second = queue.enqueue("v2", source="cli", requested_by="test").job
    assert int(second.id) == IDS_BLOCK + 1, "an id a lost Redis may have handed out is never reused"
    assert [loss.ids_above for loss in told.losses] == [IDS_BLOCK]
    assert host_file(tmp_path)["ids"] == 2 * IDS_BLOCK


def test_another_process_s_first_look_leaves_the_id_counter_alone(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    """A process started while the host's block of ids is in use (`status`, a pool's child that
    runs one job) finds Redis holding the marker: the counter is truthful, the next id follows
    on (ids skip a block only after a loss)."""
    queue = queue_of(kept(client, app_name, tmp_path, "webhook"))
    assert queue.enqueue("v1", source="cli", requested_by="test").job.id == "1"
    child = kept(client, app_name, tmp_path, "child")
    assert child.check() is None and child.ids == IDS_BLOCK
    assert client.get(f"watcher:{app_name}:seq") == "1"
    assert queue_of(child).enqueue("v2", source="cli", requested_by="test").job.id == "2"


def test_a_loss_is_noticed_once_whichever_process_looks_first(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    worker_told, cli_told = Told(), Told()
    worker = kept(client, app_name, tmp_path, "worker", worker_told)
    cli = kept(client, app_name, tmp_path, "cli", cli_told)
    assert worker.epoch == cli.epoch
    forget(client, app_name)
    loss = cli.check()
    assert loss is not None and loss.noticed_by == "cli" and cli_told.losses == [loss]
    assert worker.check() is None and worker_told.losses == [], "the other process adopts the new marker"
    assert worker.epoch == cli.epoch != loss.epoch
    count, last = worker.last_loss()
    assert count == 1 and last == loss
    assert "Redis lost the queue of" in loss.describe(app_name)


def test_the_pause_and_the_waiting_job_come_back_from_the_host(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    pause = Suspension(client, app_name, continuity=continuity)
    pause.pause(by="ann", reason="release freeze")
    waiting = queue.enqueue("v2", source="webhook", requested_by="github").job
    forget(client, app_name)
    assert pause.paused() is None and queue.waiting() == []
    loss = continuity.check()
    assert loss is not None and loss.pause and loss.job == waiting.id
    back = pause.paused()
    assert back is not None and (back["by"], back["reason"]) == ("ann", "release freeze")
    assert [(job.id, job.version, job.source, job.status) for job in queue.waiting()] == [
        (waiting.id, "v2", "webhook", Status.QUEUED)
    ]
    assert "the pause was put back" in loss.describe(app_name)
    assert f"waiting job {waiting.id} was put back" in loss.describe(app_name)


def test_what_ended_is_not_put_back(client: redis.Redis, app_name: str, tmp_path: Path) -> None:
    """A lifted or lapsed pause, a cancelled job and a taken one stay gone."""
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    pause = Suspension(client, app_name, continuity=continuity)
    pause.pause(by="ann", until=time.time() + 0.3)
    cancelled = queue.enqueue("v1", source="cli", requested_by="test").job
    queue.cancel(cancelled.id, by="test")
    time.sleep(0.4)
    forget(client, app_name)
    loss = continuity.check()
    assert loss is not None and not loss.pause and loss.job is None
    taken = queue.enqueue("v2", source="cli", requested_by="test").job
    with DeployLock(client, app_name, ttl=10, purpose="test").acquire() as lock:
        assert queue.take(lock, worker="w") is not None
    forget(client, app_name)
    loss = continuity.check()
    assert loss is not None and loss.job is None and queue.get(taken.id) is None
    pause.pause(by="ann")
    pause.resume()
    forget(client, app_name)
    assert not continuity.check().pause  # type: ignore[union-attr]


UNTIL = "2030-01-01T00:00:00+00:00"
WAITING = Pending("deploy", "v2", Color.GREEN, AWAITING, until=UNTIL)


def awaiting_promotion(continuity: Continuity, note: Pending = WAITING) -> Job:
    """A deploy of v2 awaiting promotion as a worker leaves it: the engine's note in state.json,
    the job recorded as the app's awaited one, and the host's copy of it."""
    StateStore(continuity.path.parent, None).save(DeployState(pending=note))
    queue = queue_of(continuity)
    queue.enqueue("v2", source="cli", requested_by="test")
    with DeployLock(continuity.client, continuity.app, ttl=10, purpose="test").acquire() as lock:
        taken = queue.take(lock, worker="w")
        assert taken is not None
        queue.finish(lock, taken.job, Status.AWAITING, message="v2 awaits promotion", until=note.until)
    Promotions(queue).keep(taken.job)
    job = queue.get(taken.job.id)
    assert job is not None
    return job


@pytest.mark.parametrize(
    "note", [WAITING, replace(WAITING, kind=PROMOTE, phase="verify")], ids=["waiting", "promote-running"]
)
def test_the_job_awaiting_promotion_comes_back_while_the_state_holds_its_wait(
    client: redis.Redis, app_name: str, tmp_path: Path, note: Pending
) -> None:
    """A promote in flight holds the wait too: unwound, its colour waits again."""
    continuity = kept(client, app_name, tmp_path)
    promotions = Promotions(queue_of(continuity))
    waiting = awaiting_promotion(continuity, note)
    assert host_file(tmp_path)["awaited"] == waiting.to_fields()
    forget(client, app_name)
    back = promotions.awaited()  # `watcher promote`'s look notices the loss first
    assert back is not None and back.to_fields() == waiting.to_fields()
    asked = promotions.ask("promote", requested_by="ann").job
    assert asked is not None and asked.awaits == waiting.id and int(asked.id) > IDS_BLOCK
    _, loss = continuity.last_loss()
    assert loss is not None and loss.awaited == waiting.id and loss.job is None and loss.not_awaited is None
    assert f"job {waiting.id} awaiting promotion was put back from this host" in loss.describe(app_name)


@pytest.mark.parametrize(
    ("state", "said", "copy_stays"),
    [
        ("{}", "holds its wait no more: not put back, nothing awaits promotion", False),
        (json.dumps({"pending": {**WAITING.to_dict(), "version": "v3"}}), "holds its wait no more", False),
        ("not json", "awaiting promotion was not put back: state file", True),
    ],
    ids=["ended", "another-wait", "unreadable"],
)
def test_a_job_whose_wait_the_state_does_not_hold_stays_gone(
    client: redis.Redis, app_name: str, tmp_path: Path, state: str, said: str, copy_stays: bool
) -> None:
    """The engine's state is the truth about the waiting colour: promoted, aborted or replaced on
    this host meanwhile, nothing awaits promotion; unreadable, nobody can say."""
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    waiting = awaiting_promotion(continuity)
    (tmp_path / "state.json").write_text(state)
    forget(client, app_name)
    loss = continuity.check()
    assert loss is not None and loss.awaited is None and queue.get(waiting.id) is None
    assert loss.not_awaited and said in loss.not_awaited and said in loss.describe(app_name)
    with pytest.raises(UsageError, match="awaits promotion: nothing to promote"):
        Promotions(queue).ask("promote", requested_by="ann")
    assert (host_file(tmp_path)["awaited"] is not None) is copy_stays


def test_a_job_awaiting_promotion_in_redis_is_not_replaced(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    continuity = kept(client, app_name, tmp_path)
    waiting = awaiting_promotion(continuity)
    forget(client, app_name)
    client.set(f"watcher:{app_name}:awaiting", "7")
    loss = continuity.check()
    assert loss is not None and loss.awaited is None and queue_of(continuity).get(waiting.id) is None
    assert client.get(f"watcher:{app_name}:awaiting") == "7"


class Expiring(FakeEngine):
    def expire_awaited(self, *, guard: Guard) -> str:
        guard.check()
        return "removed v2 from green"


def test_a_wait_put_back_still_expires_and_its_settling_drops_the_copy(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    continuity = kept(client, app_name, tmp_path)
    waiting = awaiting_promotion(continuity, replace(WAITING, until="2020-01-01T00:00:00+00:00"))
    forget(client, app_name)
    worker = Worker(
        client,
        app_name,
        lambda progress: Expiring(progress, client, app_name),
        lock_ttl=5,
        name="w",
        stream=io.StringIO(),
        continuity=continuity,
    )
    assert worker.run_once()  # its look puts the wait back, whose expiry is due
    expired = queue_of(continuity).get(waiting.id)
    assert expired is not None and (expired.status, expired.reason) == (
        Status.FAILED,
        "removed v2 from green",
    )
    assert host_file(tmp_path)["awaited"] is None


def test_status_says_it_for_a_day(client: redis.Redis, app_name: str, tmp_path: Path) -> None:
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    continuity.check()
    assert overview(queue, None, None)["redis_lost"] is None
    forget(client, app_name)
    continuity.check()
    data = overview(queue, None, None)
    assert data["redis_lost"]["losses"] == 1 and data["redis_lost"]["ids_above"] == 0
    assert "warning: Redis lost the queue of" in format_overview(data)


class ForgottenInHealth(FakeEngine):
    """Redis forgets the app's queue while the new colour is in its health wait."""

    def deploy(self, version: str, *, guard: Guard, **options: object) -> DeployResult:  # type: ignore[override]
        if self.client.get(f"watcher:{self.app}:forgot") is None:
            with self.progress.phase("health"):
                forget(self.client, self.app)
                self.client.set(f"watcher:{self.app}:forgot", "1")
                guard.check()
        return super().deploy(version, guard=guard, **options)  # type: ignore[arg-type]


def test_a_job_running_when_redis_forgets_goes_back_and_is_taken_over(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    told = Told()
    continuity = kept(client, app_name, tmp_path, "w", told)
    queue = queue_of(continuity)
    worker = Worker(
        client,
        app_name,
        lambda progress: ForgottenInHealth(progress, client, app_name),
        lock_ttl=5,
        name="w",
        poll=0.1,
        stream=io.StringIO(),
        continuity=continuity,
    )
    job = queue.enqueue("v2", source="cli", requested_by="test").job
    assert worker.run_once()  # lost its lock to the loss: the job goes back
    back = queue.get(job.id)
    assert back is not None and back.status is Status.RUNNING and back.phase == "health"
    assert [j.id for j in queue.running()] == [job.id]
    assert len(told.losses) == 1
    _, loss = continuity.last_loss()
    assert loss is not None and loss.interrupted == [
        f"job {job.id} (deploy v2), running in phase health, stopped touching nothing more and is back in the queue"
    ]
    assert worker.run_once()  # the next lock holder takes it over
    done = queue.get(job.id)
    assert done is not None and done.status is Status.SUCCEEDED and done.attempts == 2, done
    assert [j.id for j in queue.history()] == [job.id]


def test_a_job_that_cannot_go_back_is_recorded_failed(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    queue.enqueue("v2", source="cli", requested_by="test")
    with DeployLock(client, app_name, ttl=10, purpose="test").acquire() as lock:
        taken = queue.take(lock, worker="w")
    assert taken is not None
    job = taken.job
    forget(client, app_name)
    continuity.check()
    with DeployLock(client, app_name, ttl=10, purpose="another worker").acquire():
        assert queue.restore(job, "another job started") == "failed"
        assert queue.restore(job, "again") == "exists"
    failed = queue.get(job.id)
    assert failed is not None and (failed.status, failed.reason) == (Status.FAILED, "another job started")


def test_another_marker_in_redis_is_a_loss_with_nothing_put_back(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    """A Redis holding a marker this host never saw (another Redis, or data another host wrote):
    what this host knew is gone, but what Redis holds is not overwritten."""
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    continuity.check()
    Suspension(client, app_name, continuity=continuity).pause(by="ann")
    client.set(f"watcher:{app_name}:epoch", "someone-else")
    loss = continuity.check()
    assert loss is not None and loss.other and not loss.pause
    assert "another watcher's marker" in loss.describe(app_name)
    assert continuity.epoch == "someone-else" and queue.waiting() == []


def test_the_several_apps_summary_says_it_too(client: redis.Redis, app_name: str, tmp_path: Path) -> None:
    continuity = kept(client, app_name, tmp_path)
    queue = queue_of(continuity)
    continuity.check()
    forget(client, app_name)
    continuity.check()
    row = {"app": app_name, "live_color": None, "live_version": None, "live_since": None}
    text = format_summary([{**row, "live_health": "absent", "warnings": [], **overview(queue, None, None)}])
    assert f"warning: Redis lost the queue of {app_name}" in text


def test_a_lock_lost_between_its_grant_and_the_take_runs_nothing_and_frees_the_host_lock(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    continuity = kept(client, app_name, tmp_path)
    host_lock = HostLock(tmp_path / "lock")
    worker = Worker(
        client,
        app_name,
        lambda progress: FakeEngine(progress, client, app_name),
        lock_ttl=5,
        name="w",
        stream=io.StringIO(),
        host_lock=host_lock,
        continuity=continuity,
    )
    queue_of(continuity).enqueue("v1", source="cli", requested_by="test")
    taking = worker.queue.take

    def flushed_first(lock: DeployLock, *, worker: str) -> object:
        forget(client, app_name)
        return taking(lock, worker=worker)

    worker.queue.take = flushed_first  # type: ignore[method-assign]
    assert not worker.run_once()
    assert host_lock.holder() is None
    worker.queue.take = taking  # type: ignore[method-assign]
    assert worker.run_once()  # the waiting job came back from the host, and runs
    assert [job.status for job in worker.queue.history()] == [Status.SUCCEEDED]
