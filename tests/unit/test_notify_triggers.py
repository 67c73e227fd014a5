"""The triggers' hooks into the notifier, through the webhook receiver's real Flask app with
fakes behind it: a refused push an operator must see, pause and resume (App.pause and
App.resume, which the hooks and the dashboard both call), and the repository a GitHub delivery
names, kept on its job."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from tests.unit.test_github_payloads import DIGEST, github_package
from tests.unit.test_webhook import (
    API_TOKEN,
    IMAGE,
    SECRET,
    TOKEN,
    FakeRedis,
    FakeRegistry,
    FakeSink,
    fake_host,
    signed,
)
from watcher.config import WebhookSettings
from watcher.engine.state import Release
from watcher.platforms.color import Color
from watcher.policy import SemverPolicy
from watcher.triggers.server import create_app


@dataclass
class Told:
    """The notifier's face the triggers use, recording what it is told."""

    events: list[tuple[str, ...]] = field(default_factory=list)

    def refused(self, app: str, tag: str, reason: str) -> None:
        self.events.append(("refused", app, tag, reason))

    def paused(self, app: str, by: str, reason: str = "") -> None:
        self.events.append(("paused", app, by, reason))

    def resumed(self, app: str, by: str) -> None:
        self.events.append(("resumed", app, by))


class LiveSink(FakeSink):
    def live(self, app: str) -> Release | None:
        return Release(Color.BLUE, "1.2.0")

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        return {"by": "ann"}


def hooks(registry: FakeRegistry) -> tuple[Any, Told, LiveSink]:
    told, sink = Told(), LiveSink()
    host = fake_host(FakeRedis(), sink, registry, policy=SemverPolicy(">=1,<2"), notifier=told)
    settings = WebhookSettings(secret=SECRET, registry_token=TOKEN, api_token=API_TOKEN)
    flask_app = create_app(
        host,
        settings,
        ready=lambda: None,
        status=lambda name: {},
        metrics=CollectorRegistry(),
    )
    return flask_app.test_client(), told, sink


def push(client: Any, tag: str) -> Any:
    body = json.dumps(github_package(tag=tag, package_url=f"{IMAGE}:{tag}", owner="acme", name="app"))
    return signed(client, body.encode())


def test_a_missing_tag_and_a_newer_tag_the_policy_refuses_are_told_an_older_one_is_not() -> None:
    client, told, _ = hooks(FakeRegistry())
    assert push(client, "1.3.0").status_code == 422  # not in the registry
    assert push(client, "2.0.0").status_code == 200  # newer than live, outside >=1,<2
    assert push(client, "0.9.0").status_code == 200  # refused too, but older than live: no news
    assert [(e[0], e[2]) for e in told.events] == [("refused", "1.3.0"), ("refused", "2.0.0")]
    assert "does not exist in the registry" in told.events[0][3] and "range >=1,<2" in told.events[1][3]


def test_a_github_deliverys_repository_is_kept_on_its_job() -> None:
    client, _, sink = hooks(FakeRegistry({"1.3.0": DIGEST}))
    answer = push(client, "1.3.0")
    assert answer.status_code == 202, answer.get_json()
    assert sink.repositories == ["acme/app"]  # enqueued with the job, in the same script


def test_pause_and_resume_over_http_are_told() -> None:
    client, told, _ = hooks(FakeRegistry())
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    assert client.post("/pause", json={"reason": "freeze", "by": "ann"}, headers=headers).status_code == 200
    assert client.post("/resume", json={"by": "bob"}, headers=headers).status_code == 200
    assert told.events == [("paused", "demo", "ann", "freeze"), ("resumed", "demo", "bob")]


def test_a_timed_pause_over_http_says_when_it_ends_and_junk_is_refused() -> None:
    client, told, _ = hooks(FakeRegistry())
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    answer = client.post(
        "/pause", json={"by": "ann", "until": "2099-01-01T08:00+01:00", "reason": "freeze"}, headers=headers
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["reason"] == "demo paused until 2099-01-01 07:00 UTC by ann: freeze"
    assert told.events == [("paused", "demo", "ann", "until 2099-01-01 07:00 UTC: freeze")]
    for junk, problem in (("yesterday", "expected a span like 30m or 2h"), ("2000-01-01", "is in the past")):
        refused = client.post("/pause", json={"until": junk}, headers=headers)
        assert refused.status_code == 400 and problem in refused.get_json()["reason"], refused.get_json()
    assert len(told.events) == 1
