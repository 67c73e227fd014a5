"""GET /metrics of a real `watcher serve` scraped before and after a real deploy and a failed
one run by a `watcher worker` in another process, on the real Docker engine, Compose, Caddy,
Redis and registry: the counters and histograms move exactly as the worker's jobs did (the
receiver never ran them: it reads what the worker wrote to Redis), and what is live is read
from the route file.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import waiting
from tests.harness.metrics import Samples, named, parse, value
from tests.harness.stack import Stack, free_port
from tests.harness.triggers import WatcherServer, forget
from watcher.queue.connection import connect

pytestmark = pytest.mark.integration

API_TOKEN = "api-" + secrets.token_hex(16)


@dataclass
class Host:
    server: WatcherServer  # `watcher serve`: the receiver, and /metrics
    worker_log: Path  # `watcher worker`, another process

    def log(self) -> str:
        return f"serve:\n{self.server.log()[-3000:]}\nworker:\n{self.worker_log.read_text()[-5000:]}"


@pytest.fixture
def host(stack: Stack, redis_url: str) -> Iterator[Host]:
    port = free_port()
    stack.write_config(
        health_timeout="20s",
        verify_window="1s",
        extra=f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[webhook]
listen = "127.0.0.1:{port}"
""",
    )
    stack.watcher("deploy", "v1", check=True)  # not a job: the baseline the jobs start from
    server = WatcherServer(
        stack.config, {"WATCHER_API_TOKEN": API_TOKEN}, port, command=("serve", "--no-poll")
    )
    worker_log = stack.root / "worker.log"
    with worker_log.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "watcher", "worker", "--name", "metrics-w"],
            cwd=stack.root,
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Host(server.start(), worker_log)
    finally:
        worker.terminate()
        worker.wait(60)
        server.stop()
        forget(connect(redis_url), stack.name)


def scrape(server: WatcherServer) -> Samples:
    answer = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_deploy_and_a_failed_deploy_move_the_counters_and_histograms(stack: Stack, host: Host) -> None:
    app, server = stack.name, host.server
    deploy = {"app": app, "kind": "deploy"}
    start = scrape(server)
    assert value(start, "watcher_redis_up") == 1
    assert value(start, "watcher_deploys_total", outcome="succeeded", **deploy) == 0
    [live] = named(start, "watcher_live_info")
    assert (live["app"], live["version"]) == (app, "v1") and live["digest"].startswith("sha256:")
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401  # guarded as /status is

    done = stack.watcher("enqueue", "v2", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr + host.log()
    succeeded = scrape(server)
    assert moved(start, succeeded, "watcher_deploys_total", outcome="succeeded", **deploy) == 1
    assert (
        moved(start, succeeded, "watcher_deploy_duration_seconds_count", outcome="succeeded", **deploy) == 1
    )
    took = moved(start, succeeded, "watcher_deploy_duration_seconds_sum", outcome="succeeded", **deploy)
    assert 1 < took < 300
    for phase in ("pull", "start", "health", "switch", "verify", "drain"):
        assert (
            moved(start, succeeded, "watcher_deploy_phase_duration_seconds_count", app=app, phase=phase) == 1
        ), phase
    phases = sum(
        moved(start, succeeded, "watcher_deploy_phase_duration_seconds_sum", app=app, phase=labels["phase"])
        for labels in named(succeeded, "watcher_deploy_phase_duration_seconds_sum")
    )
    assert phases <= took + 1  # the phases happen within the job
    assert value(succeeded, "watcher_last_success_timestamp_seconds", app=app) > 0
    [live] = named(succeeded, "watcher_live_info")
    assert live["version"] == "v2"

    failed_job = stack.watcher("enqueue", "v3", "--wait")  # v3 never becomes healthy
    assert failed_job.returncode == 1, failed_job.stdout + failed_job.stderr + host.log()
    failed = scrape(server)
    assert moved(succeeded, failed, "watcher_deploys_total", outcome="failed", **deploy) == 1
    assert moved(succeeded, failed, "watcher_deploys_total", outcome="succeeded", **deploy) == 0
    assert moved(succeeded, failed, "watcher_deploy_duration_seconds_count", outcome="failed", **deploy) == 1
    health = moved(succeeded, failed, "watcher_deploy_phase_duration_seconds_sum", app=app, phase="health")
    assert (
        0
        < health
        <= moved(succeeded, failed, "watcher_deploy_duration_seconds_sum", outcome="failed", **deploy)
    )
    assert (
        moved(succeeded, failed, "watcher_deploy_phase_duration_seconds_count", app=app, phase="health") == 1
    )
    assert (
        moved(succeeded, failed, "watcher_deploy_phase_duration_seconds_count", app=app, phase="switch") == 0
    )
    assert value(failed, "watcher_last_success_timestamp_seconds", app=app) == value(
        succeeded, "watcher_last_success_timestamp_seconds", app=app
    )
    [live] = named(failed, "watcher_live_info")
    assert live["version"] == "v2"

    def released() -> Samples | None:
        """The worker releases the lock a moment after it records the outcome `--wait` returns on."""
        now = scrape(server)
        return None if value(now, "watcher_lock_held", app=app) else now

    idle = waiting.wait_until(released, 10, "the worker to release the lock", poll=0.1, detail=host.log)
    for gauge in ("watcher_queue_length", "watcher_job_running", "watcher_paused"):
        assert value(idle, gauge, app=app) == 0, gauge
