"""GitHub deployment statuses end to end: real deploys run by the real worker (real Docker,
Compose, Caddy, Redis and registry), each requested through the triggers' real path with the
repository a GitHub webhook names, reported to a local server that implements GitHub's
documented deployments API (tests/harness/github_contract.py: a contract test of that API).

Asserted: the calls in order with their payloads over two deploys (the first deployment goes
inactive when the second succeeds: auto_inactive) and a failed deploy (`failure`); GitHub
answering 500 or hanging neither fails nor delays a deploy (within 1 s of one with GitHub up).
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.github_contract import API_VERSION, GithubContract
from tests.harness.stack import Stack
from tests.harness.triggers import forget
from watcher.activity import ACTIVITY
from watcher.config import AppConfig, load_config, load_host
from watcher.engine.deployment import Deployment
from watcher.host import QUICK_REGISTRY, Host
from watcher.notify import Notifier, notifier_for
from watcher.queue.connection import connect
from watcher.queue.job import Job, Status
from watcher.queue.queue import DeployQueue
from watcher.queue.worker import Worker

pytestmark = pytest.mark.integration

TOKEN = "ghp_" + secrets.token_hex(12)
REPOSITORY = "acme/shop"
DASHBOARD = "https://deploy.example.com"
SETTINGS = {"health_timeout": "20s", "verify_window": "1s"}


@pytest.fixture(scope="module")
def github() -> Iterator[GithubContract]:
    with GithubContract(TOKEN) as contract:
        yield contract


@pytest.fixture(scope="module")
def stack(app_images: dict[str, str], redis_url: str, github: GithubContract) -> Iterator[Stack]:
    created = Stack.create(**SETTINGS)
    try:
        configure(created, redis_url, github.url)
        created.watcher("deploy", "v1", check=True)  # the baseline: not a job, nothing reported
        yield created
    finally:
        forget(connect(redis_url), created.name)
        created.destroy()


def configure(stack: Stack, redis_url: str, api_url: str) -> AppConfig:
    stack.write_config(
        **SETTINGS,
        extra=f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[notify]
timeout = "2s"

[github]
api_url = "{api_url}"

[dashboard]
url = "{DASHBOARD}"
""",
    )
    return load_config(stack.config, {"GITHUB_TOKEN": TOKEN})


def run_job(config: AppConfig, redis_url: str, version: str, notifier: Notifier | None) -> tuple[Job, float]:
    """`version` requested as a GitHub webhook's push is (the repository on the job), then run
    by the real worker; returns the finished job and the worker's seconds."""
    client = connect(redis_url)
    host = Host(
        load_host(config.source, {"GITHUB_TOKEN": TOKEN}), client=client, registry_options=QUICK_REGISTRY
    )
    app = host.app(config.name)
    digest = app.registry.manifest_digest(app.ref, version)
    app.release_push(version, digest)  # a new push of a tag deployed before in this module
    outcome = app.enqueue_once(
        version, digest, source="webhook", by="github delivery test", repository=REPOSITORY
    )
    assert outcome.status == "enqueued" and outcome.job_id, outcome
    queue = DeployQueue(client, config.name, retention=host.retention)
    assert queue.get(outcome.job_id).repository == REPOSITORY  # type: ignore[union-attr]
    worker = Worker(
        client,
        config.name,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=host.lock_ttl,
        name="github-test",
        stream=io.StringIO(),
        observer=notifier,
    )
    begun = time.monotonic()
    assert worker.run_once(), "the worker ran nothing"
    took = time.monotonic() - begun
    job = queue.get(outcome.job_id)
    assert job is not None and job.status.final, job
    return job, took


def statuses(github: GithubContract, deployment: int) -> list[str]:
    answer = httpx.get(
        f"{github.url}/repos/{REPOSITORY}/deployments/{deployment}/statuses",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        },
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return [status["state"] for status in reversed(answer.json())]  # oldest first


def test_two_deploys_and_a_failed_one_become_deployments_and_statuses(
    stack: Stack, redis_url: str, github: GithubContract
) -> None:
    github.reset()
    github.mode = "ok"
    config = configure(stack, redis_url, github.url)
    notifier = notifier_for([config])
    first, _ = run_job(config, redis_url, "v2", notifier)
    second, _ = run_job(config, redis_url, "v1", notifier)
    failed, _ = run_job(config, redis_url, "v3", notifier)
    assert (first.status, second.status, failed.status) == (Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED)
    assert notifier is not None
    notifier.close(10)
    posts = github.wait_posts(9)
    for call in github.calls:  # every call as GitHub documents it: token, version, media type
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["X-GitHub-Api-Version"] == API_VERSION
        assert call.headers["Accept"] == "application/vnd.github+json"
    created = f"/repos/{REPOSITORY}/deployments"
    ids = [d.data["id"] for d in github.deployments.values()]
    assert [c.path for c in posts] == [
        created,
        f"{created}/{ids[0]}/statuses",
        f"{created}/{ids[0]}/statuses",
        created,
        f"{created}/{ids[1]}/statuses",
        f"{created}/{ids[1]}/statuses",
        created,
        f"{created}/{ids[2]}/statuses",
        f"{created}/{ids[2]}/statuses",
    ]
    for call, job in zip(posts[0::3], (first, second, failed)):
        assert call.body == {
            "ref": job.version,
            "environment": stack.name,
            "auto_merge": False,
            "required_contexts": [],
            "transient_environment": False,
            "description": f"watcher job {job.id}: {job.version}",
            "payload": {"job": job.id},
        }
    for start, end, job, state in (
        (posts[1], posts[2], first, "success"),
        (posts[4], posts[5], second, "success"),
        (posts[7], posts[8], failed, "failure"),
    ):
        page = f"{DASHBOARD}/apps/{stack.name}/jobs/{job.id}"
        assert start.body["state"] == "in_progress" and start.body["log_url"] == page
        assert end.body["state"] == state and end.body["log_url"] == page
        assert end.body["environment_url"] == f"{stack.url}/version" and end.body["environment"] == stack.name
        assert end.body.get("auto_inactive") is (True if state == "success" else None)
    assert failed.reason and posts[8].body["description"] == failed.reason[:140]
    # the first deployment went inactive when the second succeeded; the failed one replaced nothing
    assert statuses(github, ids[0]) == ["in_progress", "success", "inactive"]
    assert statuses(github, ids[1]) == ["in_progress", "success"]
    assert statuses(github, ids[2]) == ["in_progress", "failure"]


@pytest.mark.serial  # its time bounds need the CPU to itself: beside other tests it flakes
def test_github_failing_or_hanging_neither_fails_nor_delays_a_deploy(
    stack: Stack, redis_url: str, github: GithubContract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.notify")

    def count(outcome: str) -> float:
        return (
            ACTIVITY.get_sample_value(
                "watcher_notifications_total", {"channel": "github", "outcome": outcome}
            )
            or 0
        )

    failed_before, timeouts_before = count("failed"), count("timeout")
    durations: dict[str, float] = {}
    new, old = ("v2", "v1") if stack.version() == "v1" else ("v1", "v2")  # each case a real swap
    for mode, version in (("ok", new), ("fail", old), ("hang", new)):
        github.mode = mode
        config = configure(stack, redis_url, github.url)
        notifier = notifier_for([config])
        job, durations[mode] = run_job(config, redis_url, version, notifier)
        assert job.status is Status.SUCCEEDED, f"GitHub {mode}: {job.describe()}"
        assert stack.version() == version
        assert notifier is not None
        notifier.close(5)
    github.mode = "ok"
    print(
        f"\ndeploy durations: GitHub ok {durations['ok']:.2f}s, 500 {durations['fail']:.2f}s, "
        f"hanging {durations['hang']:.2f}s"
    )
    assert abs(durations["fail"] - durations["ok"]) <= 1.0, durations
    assert abs(durations["hang"] - durations["ok"]) <= 1.0, durations
    assert count("failed") - failed_before >= 2  # 500 on create; then no deployment for the outcome
    assert count("timeout") - timeouts_before >= 1
    assert "notify github: started of" in caplog.text and "500 Server Error" in caplog.text
    assert "timeout: no answer within 2s" in caplog.text
    assert TOKEN not in caplog.text
