"""Notifications without a network: the events a job's outcome becomes, the per-URL filters,
the config that sets them up, and the outbox with fake channels that hang, fail or are slow:
a put never blocks, the queue is bounded, what is dropped or fails is counted, close() is
bounded."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from tests.unit.test_config import MINIMAL, make_project
from watcher.activity import ACTIVITY
from watcher.config import NotifyRoute, load_config
from watcher.errors import ConfigError
from watcher.notify.apprise_channel import AppriseChannel
from watcher.notify.event import Event, ended, started
from watcher.notify.notifier import Notifier, notifier_for
from watcher.notify.outbox import Outbox
from watcher.queue.job import Audit, Job, Status


def job(**fields: object) -> Job:
    values: dict = {
        "id": "17",
        "app": "shop",
        "version": "v2",
        "source": "webhook",
        "requested_by": "ann",
        "created": time.time() - 30,
        "started": time.time() - 12,
    }
    values.update(fields)
    return Job(**values)


def count(channel: str, outcome: str) -> float:
    return (
        ACTIVITY.get_sample_value("watcher_notifications_total", {"channel": channel, "outcome": outcome})
        or 0.0
    )


# -- events ------------------------------------------------------------------------------------


def test_a_succeeded_job_tells_its_phases_duration_id_and_dashboard_page() -> None:
    event = ended(
        job(),
        Status.SUCCEEDED,
        "v2 is live on green (was v1 on blue)",
        Audit({"pull": 1.25, "health": 4.0}, "v1", "v2"),
        "https://deploy.example.com",
    )
    assert (event.kind, event.title) == ("succeeded", "shop: v2 is live")
    assert 11 < event.duration < 14
    assert event.link == "https://deploy.example.com/apps/shop/jobs/17"
    body = event.body()
    assert "phases: pull 1.2s, health 4.0s" in body and "job 17 (webhook by ann)" in body
    assert body.endswith("https://deploy.example.com/apps/shop/jobs/17")


def test_a_failed_health_check_carries_the_containers_last_health_output() -> None:
    reason = (
        "shop-green: web is unhealthy after 20s (last health check: curl: (7) Failed to connect); "
        "v1 is still live on blue"
    )
    event = ended(
        job(), Status.FAILED, reason, Audit({"pull": 1, "start": 2, "health": 20}, "v1", "v1"), None
    )
    assert event.kind == "failed"
    assert event.health == "curl: (7) Failed to connect"
    assert event.link is None and "last health check: curl" in event.body()


def test_a_failure_after_the_switch_that_put_the_old_version_back_is_rolled_back() -> None:
    audit = Audit({"start": 2, "health": 3, "switch": 0.1, "verify": 5}, "v1", "v1")
    assert ended(job(), Status.FAILED, "did not answer v2", audit, None).kind == "rolled_back"
    left_serving = Audit(audit.phases, "v1", "v2")  # the old colour was gone: the new one kept traffic
    assert ended(job(), Status.FAILED, "left serving", left_serving, None).kind == "failed"
    assert (
        ended(job(source="rollback"), Status.SUCCEEDED, "v1 is live", Audit(), None).kind == "rollback_done"
    )
    assert started(job(), None).title == "shop: deploying v2"


# -- routes and config -------------------------------------------------------------------------


class Recorder:
    def __init__(
        self, name: str = "fake", events: frozenset[str] | None = None, delay: float = 0.0, fail: bool = False
    ) -> None:
        self.name, self.events, self.delay, self.fail = name, events, delay, fail
        self.sent: list[Event] = []
        self.release = threading.Event()

    def wants(self, event: Event) -> bool:
        return self.events is None or event.kind in self.events

    def send(self, event: Event, timeout: float) -> None:
        if self.delay:
            self.release.wait(self.delay)
        if self.fail:
            raise RuntimeError("the service answered 500")
        self.sent.append(event)


def test_each_url_gets_only_the_events_it_names_and_only_its_apps() -> None:
    every, failures, other = Recorder(), Recorder(events=frozenset({"failed", "rolled_back"})), Recorder()
    outbox = Outbox(timeout=1)
    notifier = Notifier({"shop": [every, failures], "blog": [other]}, outbox, {"shop": None})
    notifier.job_started(job())
    notifier.job_ended(job(), Status.FAILED, "boom", Audit())
    notifier.job_ended(job(), Status.SUPERSEDED, "newer", Audit())  # not an outcome anyone is told
    notifier.paused("shop", "ann", "release freeze")
    notifier.redis_lost("shop", "Redis lost the queue of shop (...)")
    outbox.close(5)
    assert [e.kind for e in every.sent] == ["started", "failed", "paused", "redis_lost"]
    assert every.sent[-1].title == "shop: Redis lost the deploy queue" and every.sent[-1].body().startswith(
        "Redis lost"
    )
    assert [e.kind for e in failures.sent] == ["failed"]
    assert other.sent == []


def test_config_routes_are_the_hosts_the_environments_and_the_apps(tmp_path: Path) -> None:
    toml = (
        MINIMAL
        + """
[notify]
urls = ["json://127.0.0.1:9/host"]
timeout = "2s"
[[notify.routes]]
url = "json://127.0.0.1:9/failures"
events = ["failed", "rolled_back"]
[dashboard]
url = "https://deploy.example.com/"
"""
    )
    secret = tmp_path / "urls"
    secret.write_text("# ops chat\njson://127.0.0.1:9/env-a\njson://127.0.0.1:9/env-b\n")
    config = load_config(make_project(tmp_path, toml), {"WATCHER_NOTIFY_URLS_FILE": str(secret)})
    routes = config.notify.routes
    assert [r.events for r in routes] == [None, frozenset({"failed", "rolled_back"}), None, None]
    assert config.notify.timeout == 2.0 and config.dashboard_url == "https://deploy.example.com"
    assert "127.0.0.1" not in repr(config.notify)  # a URL holds a token: never in a repr
    notifier = notifier_for([config])
    assert notifier is not None and [c.name for c in notifier.channels["shop"]] == ["json"] * 4
    notifier.close(1)


def test_a_url_apprise_cannot_use_is_refused_by_key_and_scheme_never_shown(tmp_path: Path) -> None:
    toml = MINIMAL + '[notify]\nurls = ["json://127.0.0.1:9/ok", "nosuch://hunter2@example"]\n'
    with pytest.raises(ConfigError) as refused:
        load_config(make_project(tmp_path, toml), {})
    assert "notify.urls[1]" in str(refused.value) and "'nosuch'" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    bad_event = MINIMAL + '[[notify.routes]]\nurl = "json://127.0.0.1:9/x"\nevents = ["exploded"]\n'
    with pytest.raises(ConfigError, match="notify.routes.0.events"):
        load_config(make_project(tmp_path, bad_event), {})


def test_the_github_token_is_never_read_from_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GITHUB_TOKEN"):
        load_config(make_project(tmp_path, MINIMAL + '[github]\ntoken = "ghp_x"\n'), {})
    config = load_config(
        make_project(tmp_path, MINIMAL + '[github]\napi_url = "http://127.0.0.1:1"\n'),
        {"GITHUB_TOKEN": "ghp_secret"},
    )
    assert config.github.token == "ghp_secret" and "ghp_secret" not in repr(config)
    assert (config.github.environment, config.github.environment_url) == (
        "shop",
        "http://127.0.0.1:8080/version",
    )
    assert notifier_for([config]) is not None  # a token: GitHub is a channel (when a job names a repository)


def test_no_url_and_no_token_is_no_notifier(tmp_path: Path) -> None:
    assert notifier_for([load_config(make_project(tmp_path), {})]) is None


def test_apprise_channel_names_itself_by_scheme() -> None:
    channel = AppriseChannel(NotifyRoute("json://127.0.0.1:9/token-in-path", frozenset({"failed"})))
    assert channel.name == "json"
    assert channel.wants(Event("failed", "shop")) and not channel.wants(Event("started", "shop"))


# -- the outbox --------------------------------------------------------------------------------


def test_a_put_never_waits_for_a_hanging_channel_and_a_full_queue_drops_and_counts() -> None:
    hanging = Recorder("hang-test", delay=30)
    outbox = Outbox(size=3, timeout=0.5)
    before = count("hang-test", "dropped")
    started_at = time.monotonic()
    accepted = [outbox.put(hanging, Event("started", "shop", job_id=str(n))) for n in range(10)]
    assert time.monotonic() - started_at < 0.1
    # one is being sent (hanging), three wait, the other six are dropped
    assert accepted.count(False) >= 6 and count("hang-test", "dropped") - before == accepted.count(False)
    begun = time.monotonic()
    outbox.close(1.0)
    assert time.monotonic() - begun < 1.5  # bounded: the rest is dropped at the deadline
    hanging.release.set()


def test_a_send_past_the_timeout_counts_as_timeout_and_the_next_one_goes() -> None:
    slow, quick = Recorder("slow-test", delay=5), Recorder("quick-test")
    before = count("slow-test", "timeout")
    outbox = Outbox(timeout=0.3)
    outbox.put(slow, Event("started", "shop"))
    outbox.put(quick, Event("started", "shop"))
    outbox.close(3)
    assert count("slow-test", "timeout") - before == 1
    assert len(quick.sent) == 1
    slow.release.set()


def test_a_failing_channel_is_logged_by_name_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = count("fail-test", "failed")
    outbox = Outbox(timeout=1)
    outbox.put(Recorder("fail-test", fail=True), Event("failed", "shop", job_id="9"))
    outbox.close(3)
    assert count("fail-test", "failed") - before == 1
    assert "notify fail-test: failed of shop (job 9) failed: the service answered 500" in caplog.text


def test_after_close_a_put_is_dropped_at_once() -> None:
    outbox = Outbox(timeout=1)
    outbox.close(1)
    before = count("late-test", "dropped")
    assert outbox.put(Recorder("late-test"), Event("started", "shop")) is False
    assert count("late-test", "dropped") - before == 1


def test_the_counter_is_on_the_receivers_metrics() -> None:
    from prometheus_client import generate_latest

    from watcher.metrics import registry_for

    Outbox._count(Recorder("scrape-test"), Event("started", "shop"), "sent", "")
    text = generate_latest(registry_for([])).decode()
    assert 'watcher_notifications_total{channel="scrape-test",outcome="sent"} 1.0' in text


def test_every_kind_the_config_accepts_has_a_title() -> None:
    from typing import get_args

    from watcher.config.schema import NotifyEvent
    from watcher.notify.event import _TITLES

    assert set(_TITLES) == set(get_args(NotifyEvent))


def test_apprise_never_logs_a_url_it_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("apprise").setLevel(logging.NOTSET)  # as in a process that only loads its config
    toml = MINIMAL + '[notify]\nurls = ["slack://hunter2"]\n'
    with pytest.raises(ConfigError, match="'slack'"):
        load_config(make_project(tmp_path, toml), {})
    assert "hunter2" not in caplog.text


def test_a_bug_in_a_channel_is_logged_never_raised_into_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recorder):
        def wants(self, event: Event) -> bool:
            raise KeyError("bug")

    outbox = Outbox(timeout=1)
    Notifier({"shop": [Broken()]}, outbox, {}).job_ended(job(), Status.SUCCEEDED, "v2 is live", Audit())
    outbox.close(1)
    assert "notify: an event could not be built or queued" in caplog.text
