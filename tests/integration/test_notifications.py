"""Notifications end to end: real deploys run by the real worker (the engine on the real Docker
engine, Compose, Caddy, Redis and registry) tell a real HTTP receiver through apprise's
`json://` URL: one message per event, with the job's id, its dashboard page, the phases and
duration of a success and the reason (and the container's last health output) of a failure.
A receiver that is down or hangs changes nothing for the deploy (its duration within 1 s of
one with a working receiver); the failure is logged and counted. Also measured: the latency
from an event to the receiver (median of 10, printed; run with -s to see it).
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.receiver import Receiver, down_url
from tests.harness.stack import Stack, free_port
from tests.harness.triggers import WatcherServer, forget
from watcher.activity import ACTIVITY
from watcher.config import AppConfig, load_config, load_host
from watcher.engine.deployment import Deployment
from watcher.notify import Notifier, notifier_for
from watcher.queue.connection import connect
from watcher.queue.job import Job, Status
from watcher.queue.queue import DeployQueue
from watcher.queue.worker import Worker

pytestmark = pytest.mark.integration

DASHBOARD = "https://deploy.example.com"
SETTINGS = {"health_timeout": "20s", "verify_window": "1s"}


@pytest.fixture(scope="module")
def stack(app_images: dict[str, str], redis_url: str) -> Iterator[Stack]:
    """One stack for the module, v1 live (deployed by the CLI: not a job, nothing notified)."""
    created = Stack.create(**SETTINGS)
    try:
        configure(created, redis_url, [])
        created.watcher("deploy", "v1", check=True)
        yield created
    finally:
        forget(connect(redis_url), created.name)
        created.destroy()


def configure(
    stack: Stack, redis_url: str, urls: list[str], timeout: str = "2s", extra: str = ""
) -> AppConfig:
    quoted = ", ".join(f'"{url}"' for url in urls)
    stack.write_config(
        **SETTINGS,
        extra=f"""
[redis]
url = "{redis_url}"
lock_ttl = "10s"

[notify]
urls = [{quoted}]
timeout = "{timeout}"

[dashboard]
url = "{DASHBOARD}"
{extra}""",
    )
    return load_config(stack.config, {})


def run_job(config: AppConfig, redis_url: str, version: str, notifier: Notifier | None) -> tuple[Job, float]:
    """Queue `version` and run it through the real worker; returns the finished job and the
    seconds the worker took (what a notifier must never lengthen)."""
    client = connect(redis_url)
    host = load_host(config.source, {})
    queue = DeployQueue(client, config.name, retention=host.history)
    job_id = queue.enqueue(version, source="cli", requested_by="notify-test").job.id
    worker = Worker(
        client,
        config.name,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=host.redis.lock_ttl,
        name="notify-test",
        stream=io.StringIO(),
        observer=notifier,
    )
    begun = time.monotonic()
    assert worker.run_once(), "the worker ran nothing"
    took = time.monotonic() - begun
    job = queue.get(job_id)
    assert job is not None and job.status.final, job
    return job, took


def counted(outcome: str) -> float:
    return (
        ACTIVITY.get_sample_value("watcher_notifications_total", {"channel": "json", "outcome": outcome})
        or 0.0
    )


def test_each_event_of_a_deploy_and_a_failed_deploy_is_one_message(stack: Stack, redis_url: str) -> None:
    with Receiver() as receiver:
        config = configure(stack, redis_url, [receiver.apprise_url("/chat")])
        notifier = notifier_for([config])
        assert notifier is not None
        job, _ = run_job(config, redis_url, "v2", notifier)
        assert job.status is Status.SUCCEEDED, job.describe()
        began, done = (r.body for r in receiver.wait_for(2))
        page = f"{DASHBOARD}/apps/{stack.name}/jobs/{job.id}"
        assert (began["title"], began["type"]) == (f"{stack.name}: deploying v2", "info")
        assert f"job {job.id} (cli by notify-test)" in began["message"] and page in began["message"]
        assert (done["title"], done["type"]) == (f"{stack.name}: v2 is live", "success")
        assert (
            "phases: pull" in done["message"]
            and ", health " in done["message"]
            and "switch" in done["message"]
        )
        assert f"duration: {job.duration:.1f}s"[:12] in done["message"] and page in done["message"]

        failed, _ = run_job(config, redis_url, "v3", notifier)  # never healthy
        assert failed.status is Status.FAILED
        notifier.close(5)
        messages = [r.body for r in receiver.wait_for(4)]
        assert len(receiver.requests) == 4, [m["title"] for m in messages]  # one per event, no more
        assert messages[2]["title"] == f"{stack.name}: deploying v3"
        bad = messages[3]
        assert (bad["title"], bad["type"]) == (f"{stack.name}: deploy of v3 failed", "failure")
        assert failed.reason and failed.reason.splitlines()[0][:60] in bad["message"]
        assert "last health check:" in failed.reason and "last health check:" in bad["message"]
        assert f"{DASHBOARD}/apps/{stack.name}/jobs/{failed.id}" in bad["message"]


@pytest.mark.serial  # its time bounds need the CPU to itself: beside other tests it flakes
def test_a_receiver_down_or_hanging_neither_delays_nor_fails_a_deploy(
    stack: Stack, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.notify")
    durations: dict[str, float] = {}
    with Receiver() as receiver:
        failed_before, timeouts_before = counted("failed"), counted("timeout")
        new, old = ("v2", "v1") if stack.version() == "v1" else ("v1", "v2")  # each case a real swap
        for case, url, version in (
            ("ok", receiver.apprise_url("/ok"), new),
            ("down", down_url(), old),
            ("hanging", receiver.apprise_url("/hang"), new),
        ):
            receiver.mode = "hang" if case == "hanging" else "ok"
            config = configure(stack, redis_url, [url])
            notifier = notifier_for([config])
            job, durations[case] = run_job(config, redis_url, version, notifier)
            assert job.status is Status.SUCCEEDED, f"{case}: {job.describe()}"
            assert stack.version() == version
            assert notifier is not None
            notifier.close(5)
        print(
            f"\ndeploy durations: receiver ok {durations['ok']:.2f}s, down {durations['down']:.2f}s, "
            f"hanging {durations['hanging']:.2f}s"
        )
        assert abs(durations["down"] - durations["ok"]) <= 1.0, durations
        assert abs(durations["hanging"] - durations["ok"]) <= 1.0, durations
        assert counted("failed") - failed_before == 2  # started and succeeded, receiver down
        assert counted("timeout") - timeouts_before >= 1  # the hanging one (the other may be cut at close)
        assert (
            "notify json: started of" in caplog.text
            and " failed: the json service did not accept" in caplog.text
        )
        assert " timeout: no answer within 2s" in caplog.text
        assert "127.0.0.1:" not in caplog.text  # the URL (where a token would be) is never logged


def test_notification_latency_median_of_ten(stack: Stack, redis_url: str) -> None:
    with Receiver() as receiver:
        notifier = notifier_for([configure(stack, redis_url, [receiver.apprise_url("/latency")])])
        assert notifier is not None
        latencies = []
        for n in range(10):
            sent = time.time()
            notifier.paused(stack.name, "latency-test", f"pause {n}")
            arrived = receiver.wait_for(n + 1)[-1]
            latencies.append(arrived.at - sent)
            assert (
                arrived.body["title"] == f"{stack.name}: deploys paused"
                and f"pause {n}" in arrived.body["message"]
            )
        notifier.close(5)
    median = statistics.median(latencies)
    print(
        f"\nnotification latency, event to receiver: median {median * 1000:.1f} ms of 10 "
        f"(min {min(latencies) * 1000:.1f}, max {max(latencies) * 1000:.1f})"
    )
    assert median < 1.0


def test_the_worker_and_pause_commands_send_them_from_their_own_processes(
    stack: Stack, redis_url: str
) -> None:
    """The CLI's wiring: a pool's child (`watcher worker --one`) sends the job's events before it
    exits; `watcher pause` and `resume` send theirs."""
    with Receiver() as receiver:
        configure(stack, redis_url, [receiver.apprise_url("/cli")])
        version = "v2" if stack.version() != "v2" else "v1"
        stack.watcher("enqueue", version, check=True)
        child = stack.watcher("worker", "--one", "--name", "notify-cli", check=True)
        assert [r.body["title"] for r in receiver.wait_for(2)] == [
            f"{stack.name}: deploying {version}",
            f"{stack.name}: {version} is live",
        ], child.stderr
        stack.watcher("pause", "--reason", "release freeze", check=True)
        stack.watcher("resume", check=True)
        paused, resumed = (r.body for r in receiver.wait_for(4)[2:])
        assert paused["title"] == f"{stack.name}: deploys paused" and "release freeze" in paused["message"]
        assert resumed["title"] == f"{stack.name}: deploys resumed"


def test_pause_and_resume_over_http_are_told_by_serve(stack: Stack, redis_url: str) -> None:
    """`watcher serve` hands /pause, /resume and the dashboard one suspension that tells."""
    token = "api-notify-test-" + "n" * 32
    with Receiver() as receiver:
        port = free_port()
        configure(
            stack,
            redis_url,
            [receiver.apprise_url("/serve")],
            extra=f'[webhook]\nlisten = "127.0.0.1:{port}"\n',
        )
        server = WatcherServer(
            stack.config, {"WATCHER_API_TOKEN": token}, port, command=("serve", "--no-poll")
        )
        server.start()
        try:
            headers = {"Authorization": f"Bearer {token}"}
            assert (
                httpx.post(
                    f"{server.url}/pause",
                    json={"reason": "incident", "by": "ops"},
                    headers=headers,
                    timeout=10,
                ).status_code
                == 200
            )
            assert (
                httpx.post(
                    f"{server.url}/resume", json={"by": "ops"}, headers=headers, timeout=10
                ).status_code
                == 200
            )
            paused, resumed = (r.body for r in receiver.wait_for(2))
        finally:
            server.stop()
        assert paused["title"] == f"{stack.name}: deploys paused" and "incident" in paused["message"]
        assert resumed["title"] == f"{stack.name}: deploys resumed" and "by ops" in resumed["message"]
