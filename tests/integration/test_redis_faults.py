"""Redis failing in ways other than going away, on a redis-server of each test's own: a failover
(the server becomes a read-only replica), a full server (OOM), a wrong password or a missing ACL
permission. The lock, the worker loop and the CLI must ride out the first two exactly like a
restart, within the lock's lease, and fail at once on the last two, naming the setting to fix.
The policy itself: tests/unit/test_retry.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.harness.fake_worker import fake_worker
from tests.harness.redis_server import RedisServer
from tests.harness.stack import free_port
from tests.harness.triggers import write_project
from tests.harness.waiting import wait_until
from watcher.errors import ConfigError, GuardLost
from watcher.queue import DeployLock, DeployQueue, Status, Worker, holder_of
from watcher.queue.connection import RedisRefused, connect, key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
APP = "faults"
PASSWORD = "s3cret-of-the-server"
WRONG = "not-the-password-9f2c"


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    """Whether one log line of the test has every part."""
    return any(all(part in m for part in parts) for m in caplog.messages)


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"


def renewer(lock: DeployLock) -> threading.Thread:
    assert lock._renewer is not None
    return lock._renewer


# -- a failover: the server turns read-only replica, then master again ------------------------


def test_a_failover_shorter_than_the_lease_is_ridden_out_and_the_renewal_goes_on(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(private_redis.url)
    lock = DeployLock(client, APP, ttl=6, purpose="deploy v2").acquire()  # renewed every 2 s
    try:
        private_redis.fail_over()
        with pytest.raises(redis.exceptions.ReadOnlyError):  # the failover is real
            client.set(key(APP, "probe"), "x")
        time.sleep(3)  # a renewal falls in it and answers READONLY
        lock.check()  # the replica still has the key: ownership proved within the lease
        assert renewer(lock).is_alive()
        private_redis.take_over()
        wait_until(lambda: client.pttl(key(APP, "lock")) > 5000, 10, "a renewal once Redis is writable again")
        assert renewer(lock).is_alive()
        lock.check()
    finally:
        lock.release()
    assert holder_of(client, APP) is None
    renewing = f"renewing the deploy lock (fence {1})"
    assert logged(caplog, renewing, "failed (ReadOnlyError", "retrying in")
    assert logged(caplog, renewing, "works again after")


def test_the_lock_check_waits_for_a_replica_that_cannot_answer_within_the_lease(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(private_redis.url)
    lock = DeployLock(client, APP, ttl=6, purpose="deploy v2").acquire()
    try:
        private_redis.fail_over(stale_reads=False)  # reads too answer MASTERDOWN
        back = threading.Timer(1.5, private_redis.take_over)
        back.start()
        started = time.monotonic()
        lock.check()
        back.join()
        assert 1.4 <= time.monotonic() - started < 5.4
    finally:
        lock.release()
    assert logged(caplog, "checking the deploy lock", "failed (MasterDownError", "retrying in")
    assert logged(caplog, "checking the deploy lock", "works again after")


@pytest.mark.parametrize("stale_reads", [True, False], ids=["stale-reads", "no-reads"])
def test_a_failover_longer_than_the_lease_loses_the_lock_as_guard_lost_only(
    private_redis: RedisServer, stale_reads: bool
) -> None:
    client = connect(private_redis.url)
    lock = DeployLock(client, APP, ttl=3, purpose="deploy v2").acquire()  # a 2.7 s lease
    try:
        private_redis.fail_over(stale_reads=stale_reads)
        if stale_reads:
            time.sleep(2.9)  # reads would still prove the key: the lease is what ends it
        started = time.monotonic()
        with pytest.raises(GuardLost, match="could not be renewed within its 3s lease"):
            lock.check()  # without reads, MASTERDOWN is retried until the lease ends
        assert time.monotonic() - started < (1 if stale_reads else 3)
        assert renewer(lock).is_alive(), "the renewal thread keeps trying through the failover"
        time.sleep(1.0)  # the key has expired by now
        private_redis.take_over()
        wait_until(lambda: not renewer(lock).is_alive(), 10, "the renewal to find the key gone")
        with pytest.raises(GuardLost, match="was lost; it is free now"):
            lock.check()
    finally:
        lock.release()


def test_an_idle_worker_rides_out_a_failover_and_then_runs_a_job(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Blocked in BLPOP when the server turns replica, the worker is told UNBLOCKED; then every
    BLPOP answers READONLY. Neither may end its loop."""
    client = connect(private_redis.url)
    queue = DeployQueue(client, APP)
    with running(fake_worker(client, APP, ttl=3, name="w1", poll=5)) as thread:
        wait_until(private_redis.blocked_clients, 10, "the worker in its BLPOP")
        private_redis.fail_over()
        time.sleep(2.5)
        assert thread.is_alive()
        private_redis.take_over()
        job = retry_enqueue(queue, "v1")
        done = wait_until(lambda: (j := queue.get(job)) and j.status.final and j, 20, "the job's end")
        assert done.status is Status.SUCCEEDED and done.worker == "w1"
    assert logged(caplog, "worker w1: reading the queue failed (UnblockedError", "retrying in")
    assert logged(caplog, "worker w1: reading the queue failed (ReadOnlyError", "retrying in")
    assert logged(caplog, "worker w1: reading the queue works again after")


def test_a_worker_started_during_a_failover_takes_the_waiting_job_once_it_is_over(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(private_redis.url)
    queue = DeployQueue(client, APP)
    job = queue.enqueue("v2", source="cli", requested_by="test").job
    private_redis.fail_over()
    with running(fake_worker(client, APP, ttl=3, name="w2")) as thread:
        time.sleep(2.5)  # it sees the job (reads work) but cannot take the lock (a write)
        assert thread.is_alive() and queue.get(job.id).status is Status.QUEUED  # type: ignore[union-attr]
        private_redis.take_over()
        done = wait_until(lambda: (j := queue.get(job.id)) and j.status.final and j, 20, "the job's end")
        assert done.status is Status.SUCCEEDED and done.worker == "w2"
    assert logged(caplog, "worker w2", "failed (ReadOnlyError", "retrying in")
    assert logged(caplog, "worker w2", "works again after")


def retry_enqueue(queue: DeployQueue, version: str) -> str:
    """Enqueue as soon as the server takes writes (REPLICAOF NO ONE returns before that)."""
    return wait_until(lambda: _try_enqueue(queue, version), 10, f"enqueueing {version}")


def _try_enqueue(queue: DeployQueue, version: str) -> str | None:
    try:
        return queue.enqueue(version, source="cli", requested_by="test").job.id
    except redis.exceptions.ReadOnlyError:
        return None


# -- a full server: maxmemory reached under noeviction -----------------------------------------


def test_a_full_redis_keeps_the_lock_and_holds_back_writes_until_memory_is_freed(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(private_redis.url)
    lock = DeployLock(client, APP, ttl=3, purpose="deploy v2").acquire()
    try:
        private_redis.fill_up()
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # the server is really full
            client.set(key(APP, "probe"), "x")
        time.sleep(4)  # longer than the lease: a renewal (PEXPIRE) needs no memory
        lock.check()
        assert renewer(lock).is_alive()

        freed = threading.Timer(1.5, private_redis.free_up)
        freed.start()
        started = time.monotonic()
        other = DeployLock(client, "other", ttl=3, purpose="deploy v1").acquire()  # INCR, SET: OOM
        freed.join()
        assert time.monotonic() - started >= 1.4
        other.release()
        lock.check()
    finally:
        lock.release()
    assert logged(caplog, "taking the deploy lock failed (OutOfMemoryError", "retrying in")
    assert logged(caplog, "taking the deploy lock works again after")


# -- refusals: a wrong password, a missing ACL permission ----------------------------------------

REFUSED = (
    r"Redis at redis://127\.0\.0\.1:\d+/0 refused the password: check REDIS_PASSWORD / "
    r"REDIS_PASSWORD_FILE or the password in \[redis\] url / REDIS_URL"
)


def test_a_wrong_password_fails_every_call_at_once_naming_the_setting(private_redis: RedisServer) -> None:
    private_redis.require_password(PASSWORD)
    client = connect(private_redis.url, password=WRONG)
    calls = {
        "a command": client.ping,
        "a pipeline": lambda: client.pipeline().llen("x").exists("y").execute(),
        "DeployLock.acquire": lambda: DeployLock(client, APP, ttl=3, purpose="deploy v1").acquire(wait=10),
        "enqueue": lambda: DeployQueue(client, APP).enqueue("v1", source="cli", requested_by="test"),
        "the worker loop": fake_worker(client, APP, ttl=3, name="w1").run,
    }
    for what, call in calls.items():
        started = time.monotonic()
        with pytest.raises(RedisRefused, match=REFUSED) as refused:
            call()
        assert time.monotonic() - started < 1, f"{what} was retried"
        assert WRONG not in str(refused.value) and PASSWORD not in str(refused.value)
        assert isinstance(refused.value, ConfigError) and refused.value.exit_code == 2

    with pytest.raises(RedisRefused, match=r"requires a password: set REDIS_PASSWORD or REDIS_PASSWORD_FILE"):
        connect(private_redis.url).ping()
    in_url = private_redis.url.replace("//", f"//:{WRONG}@")
    with pytest.raises(RedisRefused, match=r"Redis at redis://:\*\*\*@127\.0\.0\.1") as refused:
        connect(in_url).ping()
    assert WRONG not in str(refused.value)
    assert connect(private_redis.url, password=PASSWORD).ping()


def test_a_command_the_acl_denies_fails_at_once_naming_the_user(private_redis: RedisServer) -> None:
    private_redis.command("ACL", "SETUSER", "reader", "on", ">reader-pass", "~*", "+@read", "+ping")
    client = connect(private_redis.url.replace("//", "//reader:reader-pass@"))
    assert client.ping()
    started = time.monotonic()
    with pytest.raises(
        RedisRefused, match=r"denied a command to the user of \[redis\] url / REDIS_URL.*'evalsha'"
    ):
        DeployLock(client, APP, ttl=3, purpose="deploy v1").acquire(wait=10)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "argv, url_in",
    [
        (["enqueue", "v1"], "config"),
        (["worker", "--name", "w1"], "config"),
        (["deploy", "v1"], "env"),
    ],
    ids=["enqueue", "worker", "deploy-with-REDIS_URL"],
)
@pytest.mark.serial  # its time bounds need the CPU to itself: beside other tests it flakes
def test_the_cli_exits_at_once_on_a_wrong_password_naming_the_setting(
    private_redis: RedisServer, tmp_path: Path, argv: list[str], url_in: str
) -> None:
    private_redis.require_password(PASSWORD)
    redis_section = f'\n[redis]\nurl = "{private_redis.url}"\nlock_ttl = "3s"\n' if url_in == "config" else ""
    write_project(
        tmp_path, app=APP, image="127.0.0.1:5000/watcher-test/app", port=free_port(), extra=redis_section
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "WATCHER_"))}
    env.update(
        WATCHER_CONFIG=str(tmp_path / "watcher.toml"),
        PYTHONPATH=str(REPO),
        REDIS_PASSWORD=WRONG,
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )
    if url_in == "env":
        env["REDIS_URL"] = private_redis.url
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "watcher", *argv],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert out.returncode == 2, out.stderr
    assert took < 5, f"took {took:.1f}s: {out.stderr}"
    assert "refused the password: check REDIS_PASSWORD / REDIS_PASSWORD_FILE" in out.stderr, out.stderr
    assert "retrying" not in out.stderr and WRONG not in out.stderr + out.stdout
