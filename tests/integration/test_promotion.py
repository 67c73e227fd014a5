"""Manual promotion on the real Docker engine, Compose, Caddy and Redis, with the real worker
(in this process, one job per `run_once`) and the real `watcher` CLI:

a deploy with `[promote] mode = "manual"` stops with the new colour healthy and previewable
while the old one serves; `watcher promote` switches under a non-retrying load with 0 failed;
`watcher abort` removes the waiting colour, and so does the timeout with nobody calling; a
newer push supersedes the waiting deploy; a waiting colour that turned unhealthy is refused,
nothing switched. One stack serves every case, in sequence, to keep the wall time low.
"""

from __future__ import annotations

import io

import httpx
import pytest
import redis

from tests.harness.stack import Stack
from tests.harness.traffic import under_load
from tests.harness.triggers import forget
from tests.harness.waiting import wait_until
from watcher.config import AppConfig, load_config, load_host
from watcher.config.smoke import PREVIEW_HEADER
from watcher.engine.deployment import Deployment
from watcher.engine.verification import COLOR_HEADER
from watcher.errors import UsageError
from watcher.host import Host
from watcher.host_lock import HostLock
from watcher.queue import DeployLock, DeployQueue, Job, Status, Worker
from watcher.queue.connection import connect
from watcher.queue.promotion import Promotions

pytestmark = pytest.mark.integration


def manual(stack: Stack, redis_url: str, timeout: str = "1h") -> tuple[AppConfig, Worker]:
    stack.write_config(
        health_timeout="30s",
        verify_window="1s",
        extra=f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[promote]
mode = "manual"
timeout = "{timeout}"
""",
    )
    config = load_config(stack.config, {})
    worker = Worker(
        connect(redis_url),
        config.name,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=load_host(stack.config, {}).redis.lock_ttl,
        name="promotion-test",
        stream=io.StringIO(),
        host_lock=HostLock(config.state.dir / "lock"),
    )
    return config, worker


def pushed(client: redis.Redis, config: AppConfig, version: str) -> str:
    done = (
        Host(load_host(config.source, {}), client=client)
        .app(config.name)
        .enqueue(version, source="webhook", by="promotion test", digest=None)
    )
    assert done.created, done.reason
    return done.job_id


def ran(worker: Worker, queue: DeployQueue, job_id: str) -> Job:
    assert worker.run_once(), "the worker ran nothing"
    job = queue.get(job_id)
    assert job is not None
    return job


def test_manual_promotion_waits_promotes_aborts_expires_and_is_superseded(
    stack: Stack, redis_url: str
) -> None:
    client = connect(redis_url)
    try:
        first = stack.watcher("deploy", "v1")
        assert first.returncode == 0, first.stderr
        config, worker = manual(stack, redis_url)
        queue = DeployQueue(client, config.name)

        nothing = stack.watcher("promote")
        assert nothing.returncode != 0 and "nothing awaits promotion" in nothing.stderr, nothing.stderr

        # The deploy waits: green healthy and previewable, blue serves.
        v2 = ran(worker, queue, pushed(client, config, "v2"))
        assert v2.status is Status.AWAITING, v2.describe()
        assert "awaiting promotion" in (v2.message or "") and "watcher promote" in (v2.message or "")
        assert stack.live_route() == "blue" and stack.version() == "v1"
        status = stack.status()
        assert status["colors"]["green"]["health"] == "healthy"
        assert (status["awaiting"]["version"], status["awaiting"]["color"]) == ("v2", "green")
        assert status["colors"]["green"]["role"] == "awaiting promotion"
        secret = config.preview_file.read_text().split()[1]
        preview = httpx.get(f"{stack.url}/version", headers={PREVIEW_HEADER: secret}, timeout=5)
        assert (preview.text.strip(), preview.headers.get(COLOR_HEADER)) == ("v2", "green")

        # Promote under load: 0 failed, v2 live, the waiting job succeeded.
        asked = stack.watcher("promote", "--no-wait")
        assert asked.returncode == 0, asked.stderr
        with under_load(stack) as loads:
            promote = ran(worker, queue, asked.stdout.strip())
        assert promote.status is Status.SUCCEEDED, promote.describe()
        assert loads.failed == 0, loads.describe()
        assert loads.sent > 0
        assert stack.version() == "v2" and stack.live_route() == "green"
        assert queue.get(v2.id).status is Status.SUCCEEDED  # type: ignore[union-attr]
        assert not config.preview_file.exists()
        promoted = stack.status()
        assert promoted["awaiting"] is None and promoted["live_how"] == "promoted", promoted

        # Abort: the waiting colour goes, the live one is untouched.
        green = stack.container_ids(f"{stack.name}-green")
        back = ran(worker, queue, pushed(client, config, "v1"))
        assert back.status is Status.AWAITING and stack.version() == "v2", back.describe()
        abort = stack.watcher("abort", "--no-wait")
        assert abort.returncode == 0, abort.stderr
        done = ran(worker, queue, abort.stdout.strip())
        assert done.status is Status.SUCCEEDED, done.describe()
        assert queue.get(back.id).status is Status.CANCELLED  # type: ignore[union-attr]
        assert stack.status()["colors"]["blue"]["role"] == "absent"
        assert stack.container_ids(f"{stack.name}-green") == green and stack.version() == "v2"
        again = stack.watcher("abort")
        assert again.returncode != 0 and "nothing to abort" in again.stderr, again.stderr

        # A newer push supersedes the waiting deploy.
        old = ran(worker, queue, pushed(client, config, "v1"))
        assert old.status is Status.AWAITING, old.describe()
        newer = ran(worker, queue, pushed(client, config, "abrupt1"))
        assert newer.status is Status.AWAITING, newer.describe()
        superseded = queue.get(old.id)
        assert superseded is not None and superseded.status is Status.SUPERSEDED
        assert superseded.reason == f"superseded by job {newer.id} (deploy abrupt1)"
        assert stack.status()["colors"]["blue"]["version"] == "abrupt1" and stack.version() == "v2"

        # A waiting colour that turned unhealthy is refused: nothing switched, it still waits.
        stack.break_health("blue")
        stack.wait_health("blue", "unhealthy")
        refused = ran(worker, queue, stack.watcher("promote", "--no-wait").stdout.strip())
        assert refused.status is Status.FAILED, refused.describe()
        assert "was not promoted and nothing was switched" in (refused.reason or ""), refused.describe()
        assert stack.version() == "v2" and queue.get(newer.id).status is Status.AWAITING  # type: ignore[union-attr]

        # The timeout removes the waiting colour with nobody calling.
        assert (
            ran(worker, queue, stack.watcher("abort", "--no-wait").stdout.strip()).status is Status.SUCCEEDED
        )
        config, worker = manual(stack, redis_url, timeout="3s")
        short = ran(worker, queue, pushed(client, config, "v1"))
        assert short.status is Status.AWAITING, short.describe()
        wait_until(worker.run_once, 30, "the worker to remove the expired wait", poll=0.2)
        expired = queue.get(short.id)
        assert expired is not None and expired.status is Status.FAILED, expired.describe()
        assert "expired" in (expired.reason or "")
        assert stack.status()["colors"]["blue"]["role"] == "absent" and stack.version() == "v2"
    finally:
        forget(client, stack.name)


def waiting_job(client: redis.Redis, app: str) -> tuple[DeployQueue, Promotions, DeployLock, Job]:
    """A deploy job of v2 recorded as awaiting promotion, as a worker records it; the lock held."""
    queue = DeployQueue(client, app)
    job = queue.enqueue("v2", source="cli", requested_by="test").job
    lock = DeployLock(client, app, ttl=10, purpose="test")
    assert lock.try_acquire()
    taken = queue.take(lock, worker="test")
    assert taken is not None and taken.job.id == job.id
    queue.finish(
        lock,
        job,
        Status.AWAITING,
        message="v2 is healthy on green, awaiting promotion",
        until="2026-12-03T13:00:00+00:00",
    )
    promotions = Promotions(queue)
    return queue, promotions, lock, job


def test_promote_and_abort_requests_in_the_queue(redis_url: str, app_name: str) -> None:
    client = connect(redis_url)
    queue = DeployQueue(client, app_name)
    with pytest.raises(UsageError, match="awaits promotion: nothing to promote"):
        Promotions(queue).ask("promote", requested_by="ann")
    queue, promotions, lock, job = waiting_job(client, app_name)
    try:
        assert promotions.awaited() == queue.get(job.id)
        first = promotions.ask("promote", requested_by="ann")
        assert first.outcome == "queued" and first.job is not None
        assert (first.job.kind, first.job.version, first.job.awaits) == ("promote", "v2", job.id)
        assert promotions.ask("promote", requested_by="bob").outcome == "already-queued"
        abort = promotions.ask("abort", requested_by="bob")
        assert abort.outcome == "queued" and abort.job is not None
        assert queue.get(first.job.id).status is Status.SUPERSEDED  # type: ignore[union-attr]
        newer = queue.enqueue("v3", source="webhook", requested_by="push").job
        assert queue.get(abort.job.id).status is Status.SUPERSEDED  # type: ignore[union-attr]
        with pytest.raises(
            UsageError, match=f"job {newer.id} \\(deploy v3\\) waits: a newer deploy supersedes"
        ):
            promotions.ask("promote", requested_by="ann")
        promotions.settle(lock, job, Status.SUPERSEDED, f"superseded by job {newer.id} (deploy v3)")
        settled = queue.get(job.id)
        assert settled is not None and settled.status is Status.SUPERSEDED and settled.finished is not None
        assert promotions.awaited() is None
    finally:
        lock.release()
