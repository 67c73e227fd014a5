"""The deploy queue, lock and worker loop against a real Redis, without Docker: the engine is a
stand-in (tests/harness/fake_worker.py) so these check queue logic only: coalescing, no-ops,
cancel, pause, history, recovery of a dead worker's job, fencing, Redis restarts, and the CLI
commands over them. Deploys themselves are tested end to end in test_worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.harness import images, waiting
from tests.harness.fake_worker import fake_worker, running
from tests.harness.redis_server import RedisServer
from tests.harness.stack import APP_REPO
from watcher.config import Retention
from watcher.engine.state import Release
from watcher.errors import GuardLost, LockBusy, UsageError
from watcher.platforms.color import Color
from watcher.queue import DeployLock, DeployQueue, Status, Suspension, holder_of
from watcher.queue.connection import connect, key

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def queue(client: redis.Redis, app_name: str) -> DeployQueue:
    return DeployQueue(client, app_name)


def ask(
    queue: DeployQueue,
    version: str,
    digest: str | None = None,
    source: str = "cli",  # noqa: ANN201
    live: Release | None = None,
):
    return queue.enqueue(version, source=source, requested_by="test", digest=digest, live=live)


def wait_until(condition, timeout: float = 20, what: str = "condition"):  # noqa: ANN001, ANN201
    return waiting.wait_until(condition, timeout, what)


def spawn_fake_worker(
    url: str, app: str, name: str, log: Path, *, ttl: float = 3.0, phase_seconds: float = 0.0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.harness.fake_worker",
            url,
            app,
            "--ttl",
            str(ttl),
            "--name",
            name,
            "--phase-seconds",
            str(phase_seconds),
        ],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def switches(client: redis.Redis, app: str) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in client.lrange(key(app, "fake", "switches"), 0, -1)]


# -- enqueue: coalescing and no-ops -------------------------------------------------------


def test_newest_request_supersedes_what_waits_and_a_repeat_is_a_no_op(queue: DeployQueue) -> None:
    first = ask(queue, "v2")
    assert first.outcome == "queued" and first.job.status is Status.QUEUED
    second = ask(queue, "v3")
    assert second.outcome == "queued"
    superseded = queue.get(first.job.id)
    assert superseded is not None and superseded.status is Status.SUPERSEDED
    assert superseded.reason == f"superseded by job {second.job.id} (v3)"
    assert superseded.finished is not None

    again = ask(queue, "v3")
    assert again.noop and again.outcome == "already-queued" and again.job.id == second.job.id
    assert "already queued as job" in again.message
    assert [j.id for j in queue.waiting()] == [second.job.id]
    assert [j.id for j in queue.history()] == [first.job.id]


def test_same_tag_with_a_new_digest_is_a_new_request(queue: DeployQueue) -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    first = ask(queue, "v2", a, source="webhook")
    assert ask(queue, "v2", a, source="webhook").job.id == first.job.id
    assert ask(queue, "v2").job.id == first.job.id, "an unknown digest matches the waiting job"
    moved = ask(queue, "v2", b, source="webhook")
    assert moved.outcome == "queued" and moved.job.digest == b
    assert queue.get(first.job.id).status is Status.SUPERSEDED  # type: ignore[union-attr]


def test_the_live_version_is_a_no_op_only_when_nothing_waits_or_runs(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    """What is live comes from the caller (the engine's route file and state), not from Redis."""
    digest = "sha256:" + "c" * 64
    live = Release(Color.BLUE, "v1", digest=digest)
    noop = ask(queue, "v1", digest, live=live)
    assert noop.outcome == "live" and noop.job.status is Status.SUCCEEDED
    assert noop.job.message == "v1 is already live on blue: nothing to do"
    assert queue.history()[0].id == noop.job.id and not queue.waiting()
    assert ask(queue, "v1", "sha256:" + "d" * 64, live=live).outcome == "queued", "a moved tag is deployed"

    # Something waits: asking for the live version is the newest request, so it wins.
    queue.cancel(queue.waiting()[0].id, by="test")
    waiting = ask(queue, "v2")
    back = ask(queue, "v1", live=live)
    assert back.outcome == "queued"
    assert queue.get(waiting.job.id).status is Status.SUPERSEDED  # type: ignore[union-attr]


def test_bad_requests_are_refused(queue: DeployQueue) -> None:
    with pytest.raises(UsageError, match="invalid tag"):
        ask(queue, "1.0;rm")
    with pytest.raises(UsageError, match="unknown job source"):
        ask(queue, "v1", source="cron")
    with pytest.raises(UsageError, match="not an image digest"):
        ask(queue, "v1", "sha256:xyz")
    assert not queue.waiting()


def test_cancel_a_waiting_job_only(client: redis.Redis, queue: DeployQueue, app_name: str) -> None:
    job = ask(queue, "v2").job
    cancelled = queue.cancel(job.id, by="ann")
    assert cancelled.status is Status.CANCELLED and cancelled.reason == "cancelled by ann"
    assert not queue.waiting()
    with pytest.raises(UsageError, match="already ended"):
        queue.cancel(job.id, by="ann")
    with pytest.raises(UsageError, match="no job 99999"):
        queue.cancel("99999", by="ann")

    job = ask(queue, "v3").job
    with DeployLock(client, app_name, ttl=5, purpose="test") as lock:
        lock.acquire()
        assert queue.take(lock, worker="w") is not None
        with pytest.raises(UsageError, match="is running"):
            queue.cancel(job.id, by="ann")


def test_history_is_newest_first_and_trimmed(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, retention=Retention(keep=5))
    ids = [ask(queue, f"v{i}").job.id for i in range(9)]
    # v0..v7 were superseded in order; only the newest 5 are kept, their hashes too.
    assert [j.id for j in queue.history(10)] == ids[7:2:-1]
    assert queue.get(ids[0]) is None
    assert [j.version for j in queue.history(2)] == ["v7", "v6"]


# -- the lock ----------------------------------------------------------------------------


def test_lock_is_exclusive_fenced_and_names_its_holder(client: redis.Redis, app_name: str) -> None:
    first = DeployLock(client, app_name, ttl=5, purpose="deploy v2").acquire()
    first_fence = first.fence
    try:
        holder = holder_of(client, app_name)
        assert holder is not None and "token" not in holder
        assert (holder["purpose"], holder["pid"], holder["fence"]) == ("deploy v2", os.getpid(), first.fence)
        assert 0 < holder["expires_in"] <= 5
        with pytest.raises(LockBusy, match=r"deploy v2 \(pid \d+ on .*fence \d+.*\) holds the deploy lock"):
            DeployLock(client, app_name, ttl=5, purpose="cleanup").acquire(wait=0.3)
        first.check()
    finally:
        first.release()
    assert holder_of(client, app_name) is None
    with pytest.raises(GuardLost, match="not held"):
        first.check()
    second = DeployLock(client, app_name, ttl=5, purpose="cleanup").acquire()
    assert second.fence is not None and first_fence is not None and second.fence > first_fence
    second_fence = second.fence
    threading.Timer(0.5, second.release).start()
    third = DeployLock(client, app_name, ttl=5, purpose="reset").acquire(wait=10)  # --wait-lock
    assert third.fence is not None and third.fence > second_fence
    third.release()


def test_renewal_keeps_the_lock_well_past_its_ttl(client: redis.Redis, app_name: str) -> None:
    with DeployLock(client, app_name, ttl=1, purpose="long deploy") as lock:
        lock.acquire()
        for _ in range(8):
            time.sleep(0.4)
            lock.check()
        assert holder_of(client, app_name)["fence"] == lock.fence  # type: ignore[index]


def test_a_stale_holder_is_fenced_out_of_every_write(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    """A holder that stalls past its TTL (here: its renewals stop) can write nothing once another
    took the lock: not the switch (check), not the job's phase or outcome."""
    job = ask(queue, "v2").job
    stale = DeployLock(client, app_name, ttl=1, purpose="worker a").acquire()
    taken = queue.take(stale, worker="a")
    assert taken is not None and taken.job.id == job.id
    stale._stop.set()  # what SIGSTOP does to the renewal thread
    time.sleep(1.3)
    fresh = DeployLock(client, app_name, ttl=5, purpose="worker b").acquire()
    try:
        with pytest.raises(GuardLost):
            stale.check()
        with pytest.raises(GuardLost):
            queue.set_phase(stale, taken.job, "switch")
        with pytest.raises(GuardLost):
            queue.finish(stale, taken.job, Status.SUCCEEDED, message="v2 is live")
        # The new holder recovers the job the stale one had: same job, its own fence.
        recovered = queue.take(fresh, worker="b")
        assert recovered is not None and recovered.job.id == job.id
        assert recovered.job.fence == fresh.fence and recovered.job.attempts == 2
        assert recovered.recovered == "its worker a stopped during starting"
        queue.finish(fresh, recovered.job, Status.SUCCEEDED, message="v2 is live")
        assert queue.get(job.id).status is Status.SUCCEEDED  # type: ignore[union-attr]
        with pytest.raises(GuardLost):
            queue.finish(stale, taken.job, Status.FAILED, reason="late")
        assert queue.get(job.id).status is Status.SUCCEEDED  # type: ignore[union-attr]
    finally:
        fresh.release()
        stale.release()


def test_unlock_force_takes_the_lock_from_its_holder(client: redis.Redis, app_name: str) -> None:
    from watcher.queue import force_unlock

    lock = DeployLock(client, app_name, ttl=30, purpose="deploy v9").acquire()
    removed = force_unlock(client, app_name)
    assert removed is not None and removed["purpose"] == "deploy v9"
    with pytest.raises(GuardLost, match="was lost; it is free now"):
        lock.check()
    lock.release()


def test_a_job_whose_workers_keep_dying_fails_cleanly(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    job = ask(queue, "v2").job
    for attempt in (1, 2):
        lock = DeployLock(client, app_name, ttl=5, purpose="w").acquire()
        taken = queue.take(lock, worker=f"w{attempt}")
        assert taken is not None and taken.job.attempts == attempt
        queue.set_phase(lock, taken.job, "health")
        lock.release()  # the worker "dies": the job stays in `running` without a lock
    lock = DeployLock(client, app_name, ttl=5, purpose="w").acquire()
    assert queue.take(lock, worker="w3") is None
    lock.release()
    failed = queue.get(job.id)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.reason == "its worker w2 stopped during health (attempt 2 of 2); not retried"
    assert queue.last_job().id == job.id and not queue.running()  # type: ignore[union-attr]


# -- workers -------------------------------------------------------------------------------


def test_pause_holds_new_jobs_across_a_worker_restart_and_resume_runs_the_newest(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    pause = Suspension(client, app_name)
    with running(fake_worker(client, app_name, ttl=3, name="w1", phase_seconds=0.5)):
        first = ask(queue, "v1").job
        wait_until(lambda: queue.get(first.id).status is Status.RUNNING, what="v1 running")  # type: ignore[union-attr]
        pause.pause(by="ann", reason="release freeze")
        # The job in flight finishes; nothing new starts.
        wait_until(lambda: queue.get(first.id).status is Status.SUCCEEDED, what="v1 done")  # type: ignore[union-attr]
        ask(queue, "v2")
        time.sleep(1.5)
        assert [j.version for j in queue.waiting()] == ["v2"]
    # A new worker (a restart) still sees the pause, and requests keep coalescing.
    with running(fake_worker(client, app_name, ttl=3, name="w2", phase_seconds=0.1)):
        newest = ask(queue, "v3").job
        time.sleep(1.5)
        assert [j.id for j in queue.waiting()] == [newest.id]
        paused = pause.paused()
        assert paused is not None and (paused["by"], paused["reason"]) == ("ann", "release freeze")
        assert pause.resume() is not None
        done = wait_until(lambda: (j := queue.get(newest.id)) and j.status.final and j, what="v3 done")
        assert done.status is Status.SUCCEEDED and done.worker == "w2"
    assert [s["version"] for s in switches(client, app_name)] == ["v1", "v3"]
    assert pause.paused() is None


def test_a_rollback_job_runs_the_engines_rollback(
    client: redis.Redis, queue: DeployQueue, app_name: str
) -> None:
    with running(fake_worker(client, app_name, ttl=3, name="w1")):
        job = ask(queue, "v1", source="rollback").job
        assert job.kind == "rollback"
        done = wait_until(lambda: (j := queue.get(job.id)) and j.status.final and j, what="the rollback")
    assert done.status is Status.SUCCEEDED
    assert [(s["version"], s["kind"]) for s in switches(client, app_name)] == [("v1", "rollback")]


@pytest.mark.serial  # its time bounds need the CPU to itself: beside other tests it flakes
def test_a_killed_workers_job_is_taken_over_once_its_lock_expires(
    client: redis.Redis, queue: DeployQueue, redis_url: str, app_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    victim = spawn_fake_worker(redis_url, app_name, "victim", log, ttl=2, phase_seconds=2)
    heir = None
    try:
        job = ask(queue, "v2").job
        wait_until(lambda: queue.get(job.id).phase == "health", what="health phase")  # type: ignore[union-attr]
        heir = spawn_fake_worker(redis_url, app_name, "heir", log, ttl=2, phase_seconds=0.2)
        victim.kill()
        killed = time.monotonic()
        victim.wait()
        holder = wait_until(
            lambda: (h := holder_of(client, app_name)) and "heir" in h["purpose"] and h,
            timeout=10,
            what="the heir taking the lock",
        )
        handed_over = time.monotonic() - killed
        assert handed_over < 2 + 1.5, f"lock handed over after {handed_over:.1f}s (TTL 2s)"
        done = wait_until(lambda: (j := queue.get(job.id)) and j.status.final and j, what="the job's end")
        assert done.status is Status.SUCCEEDED and done.worker == "heir" and done.attempts == 2
        assert done.fence == holder["fence"]
        assert [s["version"] for s in switches(client, app_name)] == ["v2"], "switched once, by the heir"
    finally:
        for proc in (victim, heir):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "taking it over: its worker victim stopped during health" in log.read_text()


def test_sigterm_aborts_the_job_in_flight_and_requeues_it(
    client: redis.Redis, queue: DeployQueue, redis_url: str, app_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    proc = spawn_fake_worker(redis_url, app_name, "w1", log, ttl=3, phase_seconds=3)
    try:
        job = ask(queue, "v2").job
        wait_until(lambda: queue.get(job.id).phase == "health", what="health phase")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    back = queue.get(job.id)
    assert back is not None and back.status is Status.QUEUED and back.worker is None
    assert [j.id for j in queue.waiting()] == [job.id]
    assert holder_of(client, app_name) is None, "the lock was released"
    assert not switches(client, app_name)
    assert "is back in the queue" in log.read_text()


def test_workers_carry_on_after_a_redis_restart_and_nothing_waiting_is_lost(
    private_redis: RedisServer, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(private_redis.url)
    queue = DeployQueue(client, app_name)
    Suspension(client, app_name).pause(by="ops", reason="redis maintenance")
    with running(fake_worker(client, app_name, ttl=3, name="w1", phase_seconds=0.1)):
        ask(queue, "v1")
        last = ask(queue, "v2", "sha256:" + "e" * 64, source="webhook").job
        time.sleep(1.2)  # longer than the AOF's fsync interval; the restart is a clean one anyway
        private_redis.restart(down_for=2.0)  # the worker polls the dead Redis meanwhile
        waiting = queue.waiting()
        assert [(j.id, j.version, j.digest, j.source) for j in waiting] == [
            (last.id, "v2", last.digest, "webhook")
        ]
        assert Suspension(client, app_name).paused()["reason"] == "redis maintenance"  # type: ignore[index]
        Suspension(client, app_name).resume()
        done = wait_until(lambda: (j := queue.get(last.id)) and j.status.final and j, what="v2 done")
        assert done.status is Status.SUCCEEDED and done.worker == "w1"
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed" in m and "retrying in" in m for m in messages), messages
    assert any("works again after" in m for m in messages), messages


def test_lock_check_rides_out_a_redis_blip_but_not_an_outage(
    private_redis: RedisServer, app_name: str
) -> None:
    client = connect(private_redis.url)
    lock = DeployLock(client, app_name, ttl=4, purpose="deploy v2").acquire()
    try:
        private_redis.stop()
        blip = threading.Timer(1.0, private_redis.start)
        blip.start()
        lock.check()  # waits for Redis within the lease, then proves ownership
        blip.join()

        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(GuardLost, match="could not be renewed within its 4s lease"):
            lock.check()
        assert time.monotonic() - started < 4
    finally:
        private_redis.start()
        lock.release()


# -- the CLI over the queue ----------------------------------------------------------------

CONFIG = """\
[app]
name = "{app}"
image = "{image}"

[services.web]
port = 8080

[verify]
url = "http://127.0.0.1:9/version"

[redis]
url = "{url}"
lock_ttl = "3s"
"""


def test_cli_enqueue_queue_history_cancel_pause_resume_unlock(
    client: redis.Redis,
    queue: DeployQueue,
    redis_url: str,
    app_name: str,
    app_images: dict[str, str],
    tmp_path: Path,
) -> None:
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (tmp_path / name).write_text("")
    (tmp_path / "watcher.toml").write_text(CONFIG.format(app=app_name, url=redis_url, image=APP_REPO))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WATCHER_LOCK_TTL")}
    env.update(
        WATCHER_CONFIG=str(tmp_path / "watcher.toml"),
        PYTHONPATH=str(REPO),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )

    def watcher(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watcher", *args],
            cwd=tmp_path,
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
        )

    out = watcher("pause", "--reason", "freeze")
    assert out.returncode == 0 and "paused by" in out.stdout
    first = watcher("enqueue", "v1")
    assert first.returncode == 0 and first.stdout.strip().isdigit(), first.stderr
    second = watcher("enqueue", "v2")
    assert f"job {second.stdout.strip()} queued: deploy v2" in second.stderr
    listed = watcher("queue")
    assert "deploy v2@sha256:" in listed.stdout and "(cli by" in listed.stdout and "queued" in listed.stdout
    assert "freeze" in listed.stdout
    waiting = json.loads(watcher("queue", "--json").stdout)["waiting"]
    assert [j["version"] for j in waiting] == ["v2"]
    assert waiting[0]["digest"].startswith("sha256:"), "the job is pinned to the digest the registry gave"
    cancelled = watcher("cancel", second.stdout.strip())
    assert cancelled.returncode == 0 and "cancelled by" in cancelled.stdout
    history = json.loads(watcher("history", "-n", "5", "--json").stdout)["jobs"]
    assert [(j["version"], j["status"]) for j in history] == [("v2", "cancelled"), ("v1", "superseded")]
    assert watcher("cancel", "424242").returncode == 2

    # --wait follows the job through a worker to its end and exits with its result.
    with running(fake_worker(client, app_name, ttl=3, name="cli-w", phase_seconds=0.6)):
        assert "resumed" in watcher("resume").stdout
        waited = watcher("enqueue", "v3", "--wait")
        assert waited.returncode == 0, waited.stderr
        assert "succeeded" in waited.stdout and "running on cli-w, phase health" in waited.stderr
        tag = f"fail{uuid.uuid4().hex[:8]}"  # new to the registry, whatever earlier runs pushed
        missing = watcher("enqueue", tag)  # refused at once, as `deploy` would be, not in a worker
        assert missing.returncode == 2 and f"{tag} does not exist in the registry" in missing.stderr
        assert not DeployQueue(client, app_name).waiting()
        images.push(images.build_app_image(f"{APP_REPO}:{tag}", tag))
        failed = watcher("enqueue", tag, "--wait")
        assert failed.returncode == 1 and f"{tag} never became healthy" in failed.stdout

    lock = DeployLock(client, app_name, ttl=30, purpose="deploy v4").acquire()
    refused = watcher("unlock")
    assert refused.returncode == 2 and "deploy v4" in refused.stderr and "--force" in refused.stderr
    forced = watcher("unlock", "--force")
    assert forced.returncode == 0 and "warning: removed the deploy lock of deploy v4" in forced.stderr
    assert holder_of(client, app_name) is None
    lock.release()
    assert "free" in watcher("unlock").stdout


def test_queue_commands_need_redis(tmp_path: Path) -> None:
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (tmp_path / name).write_text("")
    config = CONFIG.format(app="shop", url="x", image=APP_REPO).split("[redis]")[0]
    (tmp_path / "watcher.toml").write_text(config)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "watcher", "-c", str(tmp_path / "watcher.toml"), "queue"],
        env={**env, "PYTHONPATH": str(REPO)},
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "the queue needs Redis" in proc.stderr
