"""The deploy lock's script (watcher/queue/scripts/lock.lua) against the real Redis: grant and
fence counter, check, renewal, release, the holder's note and force-unlock; and how the scripts
are registered with a client. Lease arithmetic under Redis outages is in
tests/integration/test_queue.py and test_redis_faults.py.
"""

from __future__ import annotations

import re
import time
from unittest import mock

import pytest
import redis

from tests.harness.redis_server import RedisServer
from watcher.errors import GuardLost, LockBusy
from watcher.queue import DeployLock, DeployQueue, Status, describe_holder, force_unlock, holder_of
from watcher.queue.connection import connect
from watcher.queue.scripts import SOURCES, script


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


def lock_of(client: redis.Redis, app: str, *, ttl: float = 10, purpose: str = "test") -> DeployLock:
    return DeployLock(client, app, ttl=ttl, purpose=purpose)


def test_each_grant_gets_a_larger_fence_and_excludes_every_other(client: redis.Redis, app_name: str) -> None:
    fences = []
    for purpose in ("first", "second"):
        with lock_of(client, app_name, purpose=purpose).acquire() as lock:
            assert not lock_of(client, app_name).try_acquire()
            fences.append(lock.fence)
            holder = holder_of(client, app_name)
            assert holder is not None and "token" not in holder
            assert (holder["purpose"], holder["fence"]) == (purpose, lock.fence)
            assert 9 < holder["expires_in"] <= 10
    assert fences == [1, 2] and client.get(lock.keys.fence) == "2"
    assert holder_of(client, app_name) is None


def test_a_busy_lock_names_its_holder(client: redis.Redis, app_name: str) -> None:
    with lock_of(client, app_name, purpose="deploy v2").acquire():
        with pytest.raises(
            LockBusy, match=r"deploy v2 \(pid \d+ on .*, fence 1, since .*\) holds the deploy lock"
        ):
            lock_of(client, app_name).acquire(wait=0.3)


def test_check_proves_the_grant_and_nothing_else(client: redis.Redis, app_name: str) -> None:
    lock = lock_of(client, app_name)
    with pytest.raises(GuardLost, match="not held"):
        lock.check()
    lock.acquire()
    lock.check()
    removed = force_unlock(client, app_name)
    assert removed is not None and removed["fence"] == 1 and "token" not in removed
    with pytest.raises(GuardLost, match="was lost; it is free now"):
        lock.check()
    assert force_unlock(client, app_name) is None
    lock.release()


def test_a_grant_whose_key_came_back_is_still_fenced_out(client: redis.Redis, app_name: str) -> None:
    """The fence counter, not only the key, decides: a holder value restored after another grant
    (a failover that lost a write, an operator's SET) proves nothing."""
    stale = lock_of(client, app_name).acquire()
    value = client.get(stale.keys.lock)
    stale._stop.set()  # no renewals
    force_unlock(client, app_name)
    with lock_of(client, app_name, purpose="fresh").acquire() as fresh:
        assert fresh.fence == 2
        client.set(stale.keys.lock, value or "", px=10_000)  # the old holder back in the key
        with pytest.raises(GuardLost, match="was lost"):
            stale.check()
        with pytest.raises(GuardLost):
            fresh.check()  # the key is not fresh's either now
    stale.release()
    assert client.get(stale.keys.lock) == value  # not stale's to delete: its fence moved on
    client.delete(stale.keys.lock)


def test_renewal_extends_only_the_grants_own_key(client: redis.Redis, app_name: str) -> None:
    with lock_of(client, app_name, ttl=2).acquire() as lock:
        client.pexpire(lock.keys.lock, 500)
        assert lock._renew()
        assert 1500 < client.pttl(lock.keys.lock) <= 2000
        token, lock.token = lock.token, "someone else"
        assert not lock._renew() and client.pttl(lock.keys.lock) <= 2000
        lock.token = token


def test_the_renewal_thread_keeps_a_short_lock(client: redis.Redis, app_name: str) -> None:
    with lock_of(client, app_name, ttl=0.6).acquire() as lock:
        time.sleep(1.5)
        lock.check()


def test_release_gives_back_only_its_own_grant_and_wakes_a_worker(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name)
    lock = lock_of(client, app_name).acquire()
    queue.enqueue("v1", source="cli", requested_by="test")
    client.delete(queue.keys.wake)
    lock.release()
    assert holder_of(client, app_name) is None
    assert client.lrange(queue.keys.wake, 0, -1) == ["released"]
    lock.release()  # twice: nothing happens
    old = lock_of(client, app_name).acquire()
    force_unlock(client, app_name)
    with lock_of(client, app_name, purpose="new").acquire():
        old.release()
        holder = holder_of(client, app_name)
        assert holder is not None and holder["purpose"] == "new"


def test_release_wakes_nobody_when_nothing_waits(client: redis.Redis, app_name: str) -> None:
    lock = lock_of(client, app_name).acquire()
    lock.release()
    assert client.llen(DeployQueue(client, app_name).keys.wake) == 0


def test_the_holder_names_its_job_and_keeps_its_ttl(client: redis.Redis, app_name: str) -> None:
    with lock_of(client, app_name, purpose="worker w").acquire() as lock:
        client.pexpire(lock.keys.lock, 5000)
        lock.note_job("7", "job 7: deploy v2 (worker w)")
        holder = holder_of(client, app_name)
        assert holder is not None and (holder["job"], holder["purpose"]) == (
            "7",
            "job 7: deploy v2 (worker w)",
        )
        assert holder["fence"] == lock.fence and holder["expires_in"] <= 5
        assert describe_holder(holder).startswith("job 7: deploy v2 (worker w) (pid ")
        token, lock.token = lock.token, "someone else"
        lock.note_job("8", "job 8")
        assert holder_of(client, app_name)["job"] == "7"  # type: ignore[index]
        lock.token = token


def test_holder_of_reads_an_unreadable_value_without_failing(client: redis.Redis, app_name: str) -> None:
    client.set(DeployQueue(client, app_name).keys.lock, "not json")
    assert holder_of(client, app_name) == {"purpose": "unreadable lock value", "raw": "not json"}


# -- the scripts and their registration -----------------------------------------------------------


def owns_function(source: str) -> str:
    found = re.search(r"^local function owns\(.*?^end$", source, re.M | re.S)
    assert found, "no owns() in the script"
    return found.group(0)


def test_the_fence_check_is_the_same_in_both_scripts() -> None:
    """The one step lock.lua and queue.lua share is written in each (a script cannot call another):
    the two copies must not drift apart."""
    assert owns_function(SOURCES["lock"]) == owns_function(SOURCES["queue"])


def test_each_script_is_registered_once_per_client(
    client: redis.Redis, redis_url: str, app_name: str
) -> None:
    other = connect(redis_url)
    with mock.patch.object(client, "register_script", wraps=client.register_script) as registered:
        queue = DeployQueue(client, app_name)
        for version in ("v1", "v2"):
            queue.enqueue(version, source="cli", requested_by="test")
            with lock_of(client, app_name).acquire() as lock:
                taken = queue.take(lock, worker="w")
                assert taken is not None
                queue.finish(lock, taken.job, Status.SUCCEEDED, message="done")
        assert sorted(call.args[0] for call in registered.call_args_list) == [
            SOURCES["lock"],
            SOURCES["queue"],
        ]
    assert script(client, "queue") is script(client, "queue")
    assert script(other, "queue") is not script(client, "queue")
    assert script(other, "queue").sha == script(client, "queue").sha


def test_the_scripts_survive_a_script_flush_and_a_restart(private_redis: RedisServer) -> None:
    """Redis forgets its scripts on SCRIPT FLUSH and on a restart (they are not persisted): the
    next call reloads them (redis-py's Script answers NOSCRIPT), with nothing lost."""
    client = connect(private_redis.url)
    queue = DeployQueue(client, "shop")
    shas = [script(client, name).sha for name in ("lock", "queue")]
    queue.enqueue("v1", source="cli", requested_by="test")
    assert client.script_exists(*shas) == [False, True]
    client.script_flush()
    with lock_of(client, "shop").acquire() as lock:
        taken = queue.take(lock, worker="w")
        assert taken is not None
        assert client.script_exists(*shas) == [True, True]
        private_redis.restart()
        queue.finish(lock, taken.job, Status.SUCCEEDED, message="done")
        lock.check()
    last = queue.last_job()
    assert last is not None and last.status is Status.SUCCEEDED
    assert [script(client, name).sha for name in ("lock", "queue")] == shas
