"""The audit trail against a real Redis: what a job records (who asked, digest, phases, the
versions before and after), retention by count and by age, `watcher history` (one app or all,
`--since`, `--json`), `watcher show JOB`, and JSON log lines naming app, job and phase.

The engine is the queue tests' stand-in (tests/harness/fake_worker.py): these check the records,
not deploys, which test_worker.py and test_metrics.py run end to end.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.harness.fake_worker import fake_worker
from tests.harness.waiting import wait_until
from watcher import logs
from watcher.config import Retention
from watcher.queue import DeployLock, DeployQueue, Status
from watcher.queue.connection import connect
from watcher.queue.job import Audit

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def other_app(redis_url: str):  # noqa: ANN201
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for found in client.scan_iter(f"watcher:{name}:*"):
        client.delete(found)


def run_jobs(queue: DeployQueue, count: int, *, first: int = 0) -> list[str]:
    """Enqueue, take and finish `count` jobs one after another, as a worker does, with phases."""
    lock = DeployLock(queue.client, queue.app, ttl=30, purpose="history test")
    ids = []
    for n in range(first, first + count):
        queue.enqueue(f"v{n}", source="webhook", requested_by=f"github delivery d-{n} (ann)", digest=DIGEST)
        assert lock.try_acquire()
        try:
            taken = queue.take(lock, worker="w")
            assert taken is not None
            queue.finish(
                lock,
                taken.job,
                Status.SUCCEEDED,
                message=f"v{n} is live on green",
                audit=Audit({"pull": 0.5, "health": 2.25, "switch": 0.01}, f"v{n - 1}", f"v{n}"),
            )
            ids.append(taken.job.id)
        finally:
            lock.release()
    return ids


def test_a_job_records_who_asked_the_digest_phases_and_versions(client: redis.Redis, app_name: str) -> None:
    """Through the real worker loop: the before/after versions come from the engine's result,
    and a failed job records the live version as both (nothing changed)."""
    queue = DeployQueue(client, app_name)
    worker = fake_worker(client, app_name, ttl=3, name="audit-w", poll=0.1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for version in ("v1", "v2", "fail-v3"):
            job = queue.enqueue(version, source="cli", requested_by="ann@box", digest=DIGEST).job
            wait_until(lambda: (queue.get(job.id) or job).status.final, 20, f"job {job.id} to end")
    finally:
        worker.stop()
        thread.join(10)
    failed, second, first = queue.history(3)
    assert (first.before, first.after) == (None, "v1")
    assert (second.before, second.after, second.status) == ("v1", "v2", Status.SUCCEEDED)
    assert (failed.before, failed.after, failed.status) == ("v2", "v2", Status.FAILED)
    assert "never became healthy" in (failed.reason or "")
    assert second.digest == DIGEST and second.requested_by == "ann@box" and second.source == "cli"
    assert list(second.phases) == ["pull", "health", "switch", "verify"]
    assert list(failed.phases) == ["pull", "health"]


def test_retention_keeps_1000_jobs_and_show_prints_an_old_ones_phases(
    client: redis.Redis, app_name: str, tmp_path: Path
) -> None:
    queue = DeployQueue(client, app_name)
    ids = run_jobs(queue, 1100)
    held = client.lrange(f"watcher:{app_name}:history", 0, -1)
    assert len(held) == 1000 and held[0] == ids[-1] and held[-1] == ids[100]
    assert queue.get(ids[99]) is None and queue.get(ids[100]) is not None  # trimmed hashes go too
    assert sum(1 for _ in client.scan_iter(f"watcher:{app_name}:job:*", count=1000)) == 1000

    out = cli(tmp_path, client, app_name, "show", ids[100])
    assert out.returncode == 0, out.stderr
    for expected in (
        f"job          {ids[100]} ({app_name})",
        "webhook: github delivery d-100 (ann)",
        DIGEST,
        "live before  v99",
        "live after   v100",
        "health             2.25s",
        "total              2.76s",
    ):
        assert expected in out.stdout, out.stdout
    gone = cli(tmp_path, client, app_name, "show", ids[0])
    assert gone.returncode == 2 and f"no job {ids[0]}" in gone.stderr


def test_retention_by_age_drops_jobs_older_than_max_age(client: redis.Redis, app_name: str) -> None:
    queue = DeployQueue(client, app_name, retention=Retention(keep=1000, max_age=3600))
    old = run_jobs(queue, 3)
    for job_id in old[:2]:  # as if they had ended two hours ago
        client.hset(f"watcher:{app_name}:job:{job_id}", "finished", repr(time.time() - 7200))
    assert [j.id for j in queue.history(10)] == [old[2]]  # not shown before the trim...
    new = run_jobs(queue, 1, first=3)
    assert [j.id for j in queue.history(10)] == [new[0], old[2]]
    assert queue.get(old[0]) is None and queue.get(old[1]) is None  # ...and gone at the next end


def test_history_of_every_app_since_a_time_and_as_json(
    client: redis.Redis, app_name: str, other_app: str, tmp_path: Path
) -> None:
    first = run_jobs(DeployQueue(client, app_name), 2)
    client.hset(f"watcher:{app_name}:job:{first[0]}", "finished", repr(time.time() - 3 * 86400))
    run_jobs(DeployQueue(client, other_app), 1)

    everything = cli(tmp_path, client, app_name, "history", apps=(app_name, other_app))
    lines = everything.stdout.splitlines()
    assert everything.returncode == 0 and len(lines) == 3, everything.stderr
    assert lines[0].startswith(f"{other_app}: ") and lines[2].startswith(f"{app_name}: {first[0]} deploy v0")

    recent = json.loads(
        cli(
            tmp_path, client, app_name, "history", "--since", "1d", "--json", apps=(app_name, other_app)
        ).stdout
    )["jobs"]
    assert [(j["app"], j["version"]) for j in recent] == [(other_app, "v0"), (app_name, "v1")]
    assert recent[1]["before"] == "v0" and recent[1]["after"] == "v1" and recent[1]["digest"] == DIGEST
    assert recent[1]["phases"] == {"pull": 0.5, "health": 2.25, "switch": 0.01}
    assert recent[1]["requested_by"] == "github delivery d-1 (ann)"

    one = cli(
        tmp_path,
        client,
        app_name,
        "history",
        "--app",
        app_name,
        "--since",
        "2026-01-01",
        "--json",
        apps=(app_name, other_app),
    )
    assert [j["id"] for j in json.loads(one.stdout)["jobs"]] == first[::-1]
    bad = cli(tmp_path, client, app_name, "history", "--since", "last tuesday", apps=(app_name, other_app))
    assert bad.returncode == 2 and "--since: expected a span like 6h or 7d" in bad.stderr
    both = cli(tmp_path, client, app_name, "show", "1", apps=(app_name, other_app))
    assert both.returncode == 2 and "say which with --app" in both.stderr


def test_every_json_output_carries_the_schema(client: redis.Redis, app_name: str, tmp_path: Path) -> None:
    """The queue's commands with --json, each one JSON object whose `schema` is first; the rest
    print through the same function (tests/unit/test_cli.py checks that no other prints JSON)."""
    ids = run_jobs(DeployQueue(client, app_name), 1)
    printed = {}
    for args in (
        ("apps",),
        ("queue",),
        ("history",),
        ("show", ids[0]),
        ("pause", "--reason", "json"),
        ("pause", "--all"),
        ("resume",),
        ("resume", "--all"),
        ("cancel", "424242"),  # no --json: refused by argparse
    ):
        done = cli(tmp_path, client, app_name, *args, "--json")
        if args[0] == "cancel":
            assert done.returncode == 2 and "unrecognized arguments: --json" in done.stderr
            continue
        assert done.returncode == 0, (args, done.stderr)
        printed[args] = json.loads(done.stdout)
        assert next(iter(printed[args])) == "schema" and printed[args]["schema"] == 1, args
    assert [app["name"] for app in printed[("apps",)]["apps"]] == [app_name]
    assert [job["id"] for job in printed[("history",)]["jobs"]] == ids
    assert printed[("pause", "--reason", "json")]["paused"][app_name]["reason"] == "json"
    assert printed[("pause", "--all")]["paused"][app_name]["reason"] == ""  # the second pause's
    assert printed[("resume",)]["resumed"][app_name]["by"]
    assert printed[("resume", "--all")]["resumed"] == {app_name: None}  # was not paused


def test_json_logs_name_the_app_job_and_phase(
    client: redis.Redis, app_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    saved = logging.getLogger().handlers[:], os.environ.get(logs.ENV)
    logs.configure("json", daemon=True)
    try:
        queue = DeployQueue(client, app_name)
        worker = fake_worker(client, app_name, ttl=3, name="json-w", poll=0.1)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        job = queue.enqueue("v1", source="cli", requested_by="ann@box").job
        wait_until(lambda: (queue.get(job.id) or job).status.final, 20, "the job to end")
        worker.stop()
        thread.join(10)
    finally:
        logging.getLogger().handlers[:] = saved[0]
        os.environ.pop(logs.ENV, None) if saved[1] is None else os.environ.__setitem__(logs.ENV, saved[1])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    about_job = [e for e in entries if e["job"] == job.id]
    assert about_job and all(e["app"] == app_name for e in about_job)
    assert {"pull", "health", "switch", "verify"} <= {e["phase"] for e in about_job}
    assert any("pull done" in e["message"] for e in about_job)  # the engine's progress lines too
    assert {"time", "level", "logger", "message"} <= set(entries[0])


def cli(
    tmp_path: Path, client: redis.Redis, app: str, *args: str, apps: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`watcher ARGS` with a config of `apps` (default: `app` alone) on the test Redis."""
    url = client.connection_pool.connection_kwargs
    redis_url = f"redis://{url.get('host', '127.0.0.1')}:{url.get('port', 6379)}/{url.get('db', 0)}"
    for name in ("compose.yml", "compose.blue.yml", "compose.green.yml"):
        (tmp_path / name).write_text("")
    sections = "".join(
        f"""
[apps.{name}]
image = "127.0.0.1:5000/watcher-test/{name}"
services.web.port = 8080
verify.url = "http://127.0.0.1:9/version"
caddy.path = "/{name}"
"""
        for name in (apps or (app,))
    )
    (tmp_path / "watcher.toml").write_text(f'[redis]\nurl = "{redis_url}"\n' + sections)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", logs.ENV)}
    env.update(
        WATCHER_CONFIG=str(tmp_path / "watcher.toml"),
        PYTHONPATH=str(REPO),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
