"""Workers end to end: `watcher worker` processes running queued jobs on the real Docker engine,
Compose, Caddy and registry, coordinating through a real Redis, with a strict non-retrying
client on Caddy where traffic matters. Lock TTL 4 s, so expiries happen within the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from tests.harness.waiting import wait_until
from tests.harness.stack import Stack
from tests.harness.traffic import under_load
from watcher.queue import DeployQueue, Job, Status, holder_of
from watcher.queue.connection import connect

pytestmark = pytest.mark.integration

LOCK_TTL = 4.0
T = TypeVar("T")


class Workers:
    """`watcher worker` processes of one stack, each logging to its own file."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.path(name).open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "worker", "--name", name], cwd=self.stack.root,
                                env=self.stack.env(**env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def path(self, name: str) -> Path:
        return self.stack.root / f"worker-{name}.log"

    def log(self, name: str) -> str:
        return self.path(name).read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-6000:]}" for name in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def with_redis(stack: Stack, url: str) -> Iterator[tuple[Stack, DeployQueue, Workers]]:
    """The stack configured with Redis (so `watcher deploy` takes the Redis lock too)."""
    stack.write_config(extra=f'[redis]\nurl = "{url}"\nlock_ttl = "{LOCK_TTL:g}s"\n')
    client = connect(url)
    workers = Workers(stack)
    try:
        yield stack, DeployQueue(client, stack.name), workers
    finally:
        workers.stop_all()
        for found in client.scan_iter(f"watcher:{stack.name}:*"):
            client.delete(found)


@pytest.fixture
def queued(stack: Stack, redis_url: str) -> Iterator[tuple[Stack, DeployQueue, Workers]]:
    with with_redis(stack, redis_url) as found:
        yield found


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, workers: Workers) -> T:
    return wait_until(condition, timeout, what, poll=0.1, detail=workers.logs)


def job_in_health(queue: DeployQueue, workers: Workers) -> Job:
    """Queue `slowok` (healthy after 4 s) and return once a worker's engine waits for its health."""
    job = queue.enqueue("slowok", source="cli", requested_by="test").job
    wait_for(lambda: (j := queue.get(job.id)) and j.phase == "health", 120, "job in health", workers)
    return job


def deployed(stack: Stack, version: str) -> None:
    proc = stack.watcher("deploy", version)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"


def final(queue: DeployQueue, job_id: str) -> Job | None:
    job = queue.get(job_id)
    return job if job and job.status.final else None


@pytest.mark.parametrize("phase", ["health", "verify"])
def test_kill_9_mid_deploy_hands_the_job_over_with_no_failed_request(
        queued: tuple[Stack, DeployQueue, Workers], phase: str) -> None:
    stack, queue, workers = queued
    deployed(stack, "v1")
    target = "slowok" if phase == "health" else "v2"
    victim = workers.start("victim", VERIFY_WINDOW="30s")
    with under_load(stack) as loads:
        job = queue.enqueue(target, source="cli", requested_by="test").job
        wait_for(lambda: (j := queue.get(job.id)) and j.phase == phase, 120, f"job in {phase}", workers)
        if phase == "verify":   # switched; inside the 30 s verification window
            # While the worker holds the lock, a manual deploy is refused, naming the job.
            refused = stack.watcher("deploy", "v3")
            assert refused.returncode == 3, refused.stderr
            assert "holds the deploy lock" in refused.stderr and f"job {job.id}: deploy v2" in refused.stderr
            status = stack.status()
            assert status["queue"]["running"]["id"] == job.id and status["queue"]["running"]["phase"] == "verify"
            assert "victim" in status["lock"]["purpose"]
            assert status["lock"]["fence"] == status["queue"]["running"]["fence"]
        workers.start("heir")
        left = holder_of(queue.client, stack.name)
        assert left is not None and left["expires_in"] <= LOCK_TTL
        os.killpg(victim.pid, signal.SIGKILL)   # the worker and its job's process, as `docker kill` does
        killed = time.monotonic()
        wait_for(lambda: (h := holder_of(queue.client, stack.name)) and "heir" in h["purpose"], 30,
                 "the heir to take the lock", workers)
        handed_over = time.monotonic() - killed
        done = wait_for(lambda: final(queue, job.id), 180, "the job's end", workers)
    assert loads.failed == 0, f"{loads.describe()}\n{workers.logs()}"
    assert handed_over <= left["expires_in"] + 3.0, f"hand-over took {handed_over:.1f}s"
    assert done.status is Status.SUCCEEDED and done.worker == "heir" and done.attempts == 2, done.describe()
    assert f"taking it over: its worker victim stopped during {phase}" in workers.log("heir")

    assert stack.version() == target
    assert loads.results[0].last_versions[-5:] == [target] * 5
    status = stack.status()
    assert status["live_version"] == target and status["in_sync"], status
    assert [c for c, info in status["colors"].items() if info["role"] == "live"] == [status["live_color"]]
    assert stack.route_file.read_text().strip() == status["live_color"]


def test_a_worker_stopped_past_its_ttl_never_switches_after_it_resumes(
        queued: tuple[Stack, DeployQueue, Workers]) -> None:
    """SIGSTOP past the lock's TTL: the Redis lock expires, but the stopped worker still holds the
    stack's host lock (a flock), so no other writer deploys over its half-started colour while it
    is frozen. Once resumed it finds its lease gone and touches nothing; then the fresh worker
    takes the job over and deploys it."""
    stack, queue, workers = queued
    deployed(stack, "v1")
    stale = workers.start("stale")
    job = job_in_health(queue, workers)
    time.sleep(1)
    os.killpg(stale.pid, signal.SIGSTOP)     # the worker and its job's process
    workers.start("fresh")
    wait_for(lambda: "holds the deploy lock" in workers.log("fresh"), 60, "the fresh worker to wait", workers)
    time.sleep(LOCK_TTL)
    assert queue.get(job.id).worker == "stale", "nobody deploys beside a frozen writer"  # type: ignore[union-attr]
    assert stack.version() == "v1"
    routed_at = stack.route_file.stat().st_mtime_ns

    os.killpg(stale.pid, signal.SIGCONT)
    wait_for(lambda: "its outcome is left to the lock's holder" in workers.log("stale"), 60,
             "the stale worker to give up", workers)
    log = workers.log("stale")
    assert "aborting without touching anything" in log, log
    assert "switch: traffic" not in log, log
    assert stack.route_file.stat().st_mtime_ns == routed_at, "the stale one switched"
    assert stale.poll() is None, "the stale worker carries on as a worker"

    done = wait_for(lambda: final(queue, job.id), 180, "the fresh worker to finish the job", workers)
    assert done.status is Status.SUCCEEDED and done.worker == "fresh", done.describe()
    assert stack.version() == "slowok"
    status = stack.status()
    assert status["live_version"] == "slowok" and status["in_sync"], status["warnings"]
    running: list[Any] = [c for info in status["colors"].values() for c in info["containers"]
                          if c["state"] == "running"]
    assert len(running) == 1


def test_what_is_live_comes_from_the_route_file_not_a_copy_in_redis(
        queued: tuple[Stack, DeployQueue, Workers]) -> None:
    """Defect E: the queue's no-op rule and check-tags read what serves from the route file and
    the state, so deploys made outside the queue can never leave a stale 'already live'."""
    stack, queue, _ = queued
    deployed(stack, "v1")
    deployed(stack, "v2")
    noop = stack.watcher("enqueue", "v2")
    assert noop.returncode == 0 and "v2 is already live on green: nothing to do" in noop.stderr, noop.stderr
    again = stack.watcher("enqueue", "v1")
    assert again.returncode == 0 and "queued: deploy v1" in again.stderr, again.stderr
    tags = stack.watcher("check-tags")
    assert "live: v2" in tags.stdout, tags.stdout
