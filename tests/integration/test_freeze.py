"""Freeze windows against the real Redis and the real worker loop:

- a timed pause (`pause --until`, a Redis expiry) holds a job, then lifts by itself and the
  newest waiting job runs, with nobody calling resume;
- a scheduled freeze holds a push's deploy, lets a rollback through, and the held deploy runs
  once the window ends (the stand-in engine: queue logic only);
- the issue's test with a real deploy on Docker, Compose and Caddy: a push during a freeze
  waits; the freeze ends; it deploys.

The freezes are the real Friday 16:00 to Monday 08:00 window; only the clock they are read
against is shifted, to a few seconds before Monday 08:00, so each test waits seconds, not a
weekend. No sleep asserts anything: a held job is seen held by the worker's own look at the
queue (`run_once` is False, the job still waits), and a job that ran after the end says so by
its recorded start.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from tests.harness.fake_worker import FakeEngine, running
from tests.harness.stack import Stack
from tests.harness.triggers import forget
from tests.harness.waiting import wait_until
from watcher.config import load_config, load_host
from watcher.engine.deployment import Deployment
from watcher.freeze import FreezeSchedule, FreezeWindow, window
from watcher.host import Host
from watcher.host_lock import HostLock
from watcher.queue import DeployQueue, Job, Status, Suspension, Worker, overview
from watcher.queue.connection import connect

pytestmark = pytest.mark.integration

WEEKEND = window("0 16 * * fri", "0 8 * * mon")
MONDAY_8 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC).timestamp()


def ending_in(seconds: float, windows: tuple[FreezeWindow, ...] = (WEEKEND,)) -> tuple[FreezeSchedule, float]:
    """Weekend windows read against a clock `seconds` before Monday 08:00; and the real time that is."""
    offset = MONDAY_8 - seconds - time.time()
    return FreezeSchedule(windows, clock=lambda: time.time() + offset), MONDAY_8 - offset


def fake(client: redis.Redis, app: str, freezes: FreezeSchedule = FreezeSchedule()) -> Worker:
    return Worker(
        client,
        app,
        lambda progress: FakeEngine(progress, client, app),
        lock_ttl=3,
        name="freeze-test",
        poll=0.2,
        stream=io.StringIO(),
        freezes=freezes,
    )


def ended(queue: DeployQueue, job_id: str, timeout: float = 30) -> Job:
    return wait_until(
        lambda: (job := queue.get(job_id)) and job.status.final and job, timeout, f"job {job_id} to end"
    )


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


def test_a_timed_pause_lifts_by_itself_and_the_newest_waiting_job_runs(
    client: redis.Redis, app_name: str
) -> None:
    queue = DeployQueue(client, app_name)
    until = time.time() + 2.0
    Suspension(client, app_name).pause(by="ann", reason="deploy after the demo", until=until)
    older = queue.enqueue("v1", source="webhook", requested_by="test").job
    newest = queue.enqueue("v2", source="webhook", requested_by="test").job
    worker = fake(client, app_name)
    assert not worker.run_once() and [j.id for j in queue.waiting()] == [newest.id], "the pause holds the job"
    with running(worker):
        done = ended(queue, newest.id)
    assert done.status is Status.SUCCEEDED and done.started is not None and done.started >= until, (
        done.describe()
    )
    assert queue.get(older.id).status is Status.SUPERSEDED  # type: ignore[union-attr]
    assert Suspension(client, app_name).paused() is None, "the pause is gone without a resume"


def test_a_scheduled_freeze_holds_a_deploy_lets_a_rollback_through_and_ends_by_itself(
    client: redis.Redis, app_name: str
) -> None:
    queue = DeployQueue(client, app_name)
    freezes, end = ending_in(4.0)
    worker = fake(client, app_name, freezes)
    deploy = queue.enqueue("v2", source="webhook", requested_by="test").job
    assert not worker.run_once() and [j.id for j in queue.waiting()] == [deploy.id], (
        "the freeze holds the deploy"
    )
    state = overview(DeployQueue(client, app_name, freezes=freezes), paused=None, lock=None)
    assert state["frozen"]["holds_next"] and state["frozen"]["until_ts"] == pytest.approx(MONDAY_8)
    # A rollback (it supersedes the waiting deploy, as any newer request) runs in the freeze.
    back = queue.enqueue("v1", source="rollback", requested_by="test").job
    assert worker.run_once(), "a rollback is never frozen"
    rolled = queue.get(back.id)
    assert rolled is not None and rolled.status is Status.SUCCEEDED and rolled.finished < end  # type: ignore[operator]
    deploy = queue.enqueue("v3", source="webhook", requested_by="test").job
    assert not worker.run_once(), "the freeze still holds the next deploy"
    with running(worker):
        done = ended(queue, deploy.id)
    assert done.status is Status.SUCCEEDED and done.started is not None and done.started >= end, (
        done.describe()
    )


@pytest.fixture
def frozen_stack(stack: Stack, redis_url: str) -> Iterator[Stack]:
    stack.write_config(
        health_timeout="30s",
        verify_window="1s",
        extra=f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[[freeze]]
start = "0 16 * * fri"
end = "0 8 * * mon"
reason = "weekend"
""",
    )
    try:
        yield stack
    finally:
        forget(connect(redis_url), stack.name)


def test_a_push_during_a_freeze_waits_then_deploys_when_the_freeze_ends(
    frozen_stack: Stack, redis_url: str
) -> None:
    """The issue's test, with a real deploy: the worker of the config's freeze, read 5 s before
    Monday 08:00, holds the push's job; at 08:00 it deploys it, nobody having done anything."""
    stack = frozen_stack
    first = stack.watcher("deploy", "--ignore-freeze", "v1")  # whatever day the test runs on
    assert first.returncode == 0, first.stderr
    config = load_config(stack.config, {})
    assert config.freezes == (window("0 16 * * fri", "0 8 * * mon", reason="weekend"),)
    client = connect(redis_url)
    freezes, end = ending_in(5.0, config.freezes)
    worker = Worker(
        client,
        config.name,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=load_host(stack.config, {}).redis.lock_ttl,
        name="freeze-test",
        stream=io.StringIO(),
        host_lock=HostLock(config.state.dir / "lock"),
        freezes=freezes,
    )
    pushed = (
        Host(load_host(stack.config, {}), client=client)
        .app(config.name)
        .enqueue("v2", source="webhook", by="registry notification test", digest=None)
    )
    assert pushed.created, pushed.reason
    assert not worker.run_once(), "the freeze holds the push"
    queue = DeployQueue(client, config.name)
    assert [j.id for j in queue.waiting()] == [pushed.job_id] and stack.version() == "v1"
    wait_until(worker.run_once, 60, "the held job to run once the freeze ends", poll=0.2)
    done = queue.get(pushed.job_id)
    assert done is not None and done.status is Status.SUCCEEDED, done and done.describe()
    assert done.started is not None and done.started >= end
    assert stack.version() == "v2"
