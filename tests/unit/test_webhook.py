"""The webhook receiver through Flask's test client: the real dispatch (Host, App.request) over an
in-memory Redis stand-in, a registry that holds the tags a test gives it, and a sink that counts
(each App's enqueue, live and pause, replaced by `FakeSink.attach`).

What the user sees of a delivery: the answer's code for a tag the registry lacks (the same 422 on
both hooks), the 413 naming the configured limit, and a log line naming the delivery or event ids.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from tests.unit.test_github_payloads import DIGEST, distribution_envelope, github_package
from watcher.backends.registry import ImageRef, Manifest, NotFound
from watcher.config import HostCaddy, HostConfig, WebhookSettings
from watcher.engine.state import DeployState, Release
from watcher.host import App, Host, Outcome
from watcher.memory import LocalMemory
from watcher.policy import SemverPolicy, TagPolicy
from watcher.triggers.payloads import sign
from watcher.triggers.server import create_app

SECRET = "github-secret-" + "s" * 32  # each at least 32 characters, as start-up demands
TOKEN = "registry-token-" + "r" * 32
API_TOKEN = "api-token-" + "a" * 32
REGISTRY = "127.0.0.1:5000"  # what distribution_envelope's events name
IMAGE = f"{REGISTRY}/acme/app"
MiB = 1024 * 1024


class FakeRedis:
    """The few commands Memory sends; `down` makes every one fail as an unreachable server does."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def set(
        self,
        name: str,
        value: str,
        *,
        nx: bool = False,
        xx: bool = False,
        ex: int | None = None,
        keepttl: bool = False,
    ) -> bool | None:
        self._check()
        if (nx and name in self.data) or (xx and name not in self.data):
            return None
        self.data[name] = value
        return True

    def get(self, name: str) -> str | None:
        self._check()
        return self.data.get(name)

    def delete(self, name: str) -> int:
        self._check()
        return int(self.data.pop(name, None) is not None)


@dataclass
class FakeRegistry:
    """The app's registry: it has exactly the tags in `tags`."""

    tags: dict[str, str] = field(default_factory=dict)

    def manifest_digest(self, ref: ImageRef, tag: str) -> str:
        if tag not in self.tags:
            raise NotFound(f"manifest unknown: {ref}:{tag}")
        return self.tags[tag]

    def manifest(self, ref: ImageRef, digest: str) -> Manifest:
        """Each tag names one image manifest: no index lists other manifests."""
        return Manifest("application/vnd.oci.image.manifest.v1+json", digest, b"{}")

    def close(self) -> None:
        pass


@dataclass
class FakeSink:
    """The queue and the pause behind each App it is attached to, counting what they are asked."""

    jobs: list[str] = field(default_factory=list)
    repositories: list[str | None] = field(default_factory=list)

    def enqueue(
        self,
        app: str,
        version: str,
        *,
        source: str,
        by: str,
        digest: str | None,
        repository: str | None = None,
    ) -> Outcome:
        self.jobs.append(version)
        self.repositories.append(repository)
        n = len(self.jobs)
        return Outcome(app, "enqueued", f"job {n} queued: deploy {version}", version, digest, str(n))

    def live(self, app: str) -> Release | None:
        return None

    def waiting(self, app: str) -> str | None:
        return None

    def pause(self, app: str, *, by: str, reason: str, until: float | None = None) -> dict[str, Any]:
        return {"by": by, "reason": reason} | ({"until": until} if until is not None else {})

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        return None

    def state(self, app: str) -> dict[str, Any] | None:
        return None

    def attach(self, app: App) -> App:
        name = app.name
        app.enqueue = lambda version, **asked: self.enqueue(name, version, **asked)  # type: ignore[method-assign]
        app.live = lambda: self.live(name)  # type: ignore[method-assign]
        app.recorded = DeployState  # type: ignore[method-assign]  # no rollback recorded
        app.waiting = lambda: self.waiting(name)  # type: ignore[method-assign]
        app.suspension = SimpleNamespace(  # type: ignore[assignment]
            pause=lambda **asked: self.pause(name, **asked),
            resume=lambda: self.resume(name, by=""),
            paused=lambda: self.state(name),
        )
        return app


def host_config() -> HostConfig:
    """A host with no app yet (a test adds its own, with fakes)."""
    return HostConfig(
        source=Path("watcher.toml"),
        apps={},
        webhook=WebhookSettings(),
        concurrency=1,
        caddy=HostCaddy(admin="", site=":80", run_dir=Path("."), mount="/run"),
    )


def fake_host(
    store: Any,
    sink: FakeSink,
    registry: Any,
    *,
    names: tuple[str, ...] = ("demo",),
    policy: type[TagPolicy] | TagPolicy = SemverPolicy,
    notifier: Any = None,
) -> Host:
    """A Host over `store` (a Redis stand-in) whose apps enqueue into `sink`, ask `registry`."""
    host = Host(host_config(), client=store, exists_wait=0)
    host.notifier = notifier
    host.memory = LocalMemory()  # the throttle and nonces, without Redis's scripts
    for name in names:
        chosen = policy() if isinstance(policy, type) else policy
        config = SimpleNamespace(name=name, image=IMAGE, poll=SimpleNamespace(page_size=None), freezes=())
        app = App(host, config, policy=chosen, registry=registry)  # type: ignore[arg-type]
        host.apps[name] = sink.attach(app)
    return host


@dataclass
class Receiver:
    client: FlaskClient
    registry: FakeRegistry
    sink: FakeSink
    redis: FakeRedis
    host: Host


def receiver(
    max_body: int = MiB, metrics: CollectorRegistry | None = None, status_auth: bool = True
) -> Receiver:
    registry, sink, store = FakeRegistry(), FakeSink(), FakeRedis()
    settings = WebhookSettings(
        max_body=max_body, secret=SECRET, registry_token=TOKEN, api_token=API_TOKEN, status_auth=status_auth
    )
    host = fake_host(store, sink, registry)
    flask_app = create_app(
        host,
        settings,
        ready=lambda: None,
        status=lambda name: {"app": name},
        metrics=metrics or CollectorRegistry(),
    )
    return Receiver(flask_app.test_client(), registry, sink, store, host)


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    yield receiver()


def signed(client: FlaskClient, body: bytes, *, delivery: str | None = None) -> Any:
    """A `package` delivery as GitHub sends it: signed with SECRET, under a new delivery id unless
    one is given."""
    return client.post(
        "/hooks/github",
        data=body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "package",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(SECRET, body),
        },
    )


def github(hooks: Receiver, tag: str, *, delivery: str | None = None, body: bytes | None = None) -> Any:
    body = (
        body
        if body is not None
        else json.dumps(github_package(tag=tag, package_url=f"{IMAGE}:{tag}")).encode()
    )
    return signed(hooks.client, body, delivery=delivery)


def envelope(*tags: str | None, action: str = "push") -> dict[str, Any]:
    """One event per tag, each with its own id."""
    events = []
    for tag in tags:
        event = copy.deepcopy(distribution_envelope(tag=tag, action=action)["events"][0])
        event["id"] = str(uuid.uuid4())
        events.append(event)
    return {"events": events}


def notify(hooks: Receiver, payload: dict[str, Any] | None = None, *, body: bytes | None = None) -> Any:
    return hooks.client.post(
        "/hooks/registry",
        data=body if body is not None else json.dumps(payload),
        content_type="application/vnd.docker.distribution.events.v1+json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def ids(payload: dict[str, Any]) -> list[str]:
    return [event["id"] for event in payload["events"]]


# -- a tag the registry does not have: 422 on both hooks ----------------------------------------


def test_missing_tag_is_422_on_both_hooks_and_a_redelivery_is_processed(hooks: Receiver) -> None:
    """docs/http-api.md: "422 the tag is not in the registry", for GitHub and the registry alike; the ids
    are released, so the same delivery is processed once the tag shows."""
    delivery, notification = str(uuid.uuid4()), envelope("1.5.0")
    missing = [github(hooks, "1.5.0", delivery=delivery), notify(hooks, notification)]
    for response in missing:
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["outcome"] == "not-found"
        assert "does not exist in the registry" in response.get_json()["reason"]
    assert hooks.sink.jobs == []
    hooks.registry.tags["1.5.0"] = DIGEST
    assert github(hooks, "1.5.0", delivery=delivery).status_code == 202
    again = notify(hooks, notification)
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"  # the push, not the event
    assert hooks.sink.jobs == ["1.5.0"]


def test_a_notification_is_422_whenever_a_missing_tag_is_the_worst_outcome(hooks: Receiver) -> None:
    """As on /hooks/github: an ignored event beside the missing tag does not hide it (the
    registry's retry re-ignores the one and may find the other); an enqueued one does (202)."""
    mixed = envelope("1.5.0")
    mixed["events"] += envelope("1.5.0", action="pull")["events"]
    assert notify(hooks, mixed).status_code == 422
    hooks.registry.tags["1.4.0"] = DIGEST
    assert notify(hooks, envelope("1.5.0", "1.4.0")).status_code == 202


def test_a_notification_with_nothing_for_an_app_is_still_200(hooks: Receiver) -> None:
    response = notify(hooks, envelope("1.5.0", action="pull"))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"


# -- oversize bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hooks/github", "/hooks/registry", "/pause"])
def test_oversize_reply_names_the_configured_limit(hooks: Receiver, path: str) -> None:
    response = hooks.client.post(path, data=b"x" * (MiB + 1), headers={"X-GitHub-Event": "package"})
    assert response.status_code == 413
    assert response.get_json()["reason"] == (
        "the body (1048577 bytes) exceeds the 1 MiB (1048576 bytes) limit ([webhook] max_body)"
    )


@pytest.mark.parametrize("max_body, shown", [(512 * 1024, "512 KiB (524288 bytes)"), (1500, "1500 bytes")])
def test_the_limit_is_shown_as_configured(max_body: int, shown: str) -> None:
    response = receiver(max_body).client.post("/hooks/registry", data=b"x" * (max_body + 1))
    assert response.status_code == 413 and f"exceeds the {shown} limit" in response.get_json()["reason"]


def test_a_body_of_exactly_the_limit_is_read(hooks: Receiver) -> None:
    response = github(hooks, "1.5.0", body=b'{"zen": "' + b"x" * (MiB - 11) + b'"}')
    assert response.status_code == 200, response.get_json()  # read and verified: not a package event


def test_oversize_delivery_is_logged_with_its_id(hooks: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "watcher.webhook")
    delivery = str(uuid.uuid4())
    assert github(hooks, "1.5.0", delivery=delivery, body=b"x" * (MiB + 1)).status_code == 413
    assert notify(hooks, body=b"x" * (MiB + 1)).status_code == 413  # the headers name no event
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.WARNING,
        f"github delivery {delivery} (package): 413 refused: the body (1048577 bytes) "
        "exceeds the 1 MiB (1048576 bytes) limit ([webhook] max_body)",
    ) in records
    assert any(
        level == logging.WARNING and message.startswith("registry delivery -: 413 refused: the body")
        for level, message in records
    ), records


# -- registry event ids in the log ----------------------------------------------------------------


def test_registry_delivery_is_logged_with_its_event_ids(
    hooks: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "watcher.webhook")
    hooks.registry.tags["1.4.0"] = DIGEST
    pushed, missing, pulled = envelope("1.4.0"), envelope("1.5.0", "1.6.0"), envelope("1.4.0", action="pull")
    for payload in (pushed, missing, pulled):
        notify(hooks, payload)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(f"registry delivery {ids(pushed)[0]}: 202 enqueued: demo: job 1 queued")
        for m in messages
    ), messages
    assert any(m.startswith(f"registry delivery {', '.join(ids(missing))}: 422 not-found") for m in messages)
    assert any(m.startswith(f"registry delivery {ids(pulled)[0]}: ignored: action 'pull'") for m in messages)


def test_a_long_envelope_names_its_first_ten_event_ids(
    hooks: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "watcher.webhook")
    payload = envelope(*["1.5.0"] * 12)
    notify(hooks, payload)
    assert f"registry delivery {', '.join(ids(payload)[:10])} (+2 more): 422" in caplog.text


def test_event_ids_are_logged_without_control_characters(
    hooks: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "watcher.webhook")
    payload = envelope("1.5.0")
    payload["events"][0]["id"] = "abc\nFAKE registry delivery x: 202 enqueued"
    notify(hooks, payload)
    assert "registry delivery abc FAKE registry delivery x: 202 enqueued: 422 not-found" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()


def test_redis_down_is_503_and_logged_with_the_event_ids(
    hooks: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "watcher.webhook")
    hooks.redis.down = True
    payload = envelope("1.5.0")
    response = notify(hooks, payload)
    assert response.status_code == 503 and "Redis is unreachable" in response.get_json()["reason"]
    assert f"registry delivery {ids(payload)[0]}: 503 unavailable: Redis is unreachable" in caplog.text


def test_status_answers_an_object_per_app_when_several_are_configured() -> None:
    registry, sink, store = FakeRegistry(), FakeSink(), FakeRedis()
    settings = WebhookSettings(secret=SECRET, registry_token=TOKEN, api_token=API_TOKEN)
    client = create_app(
        fake_host(store, sink, registry, names=("shop", "blog")),
        settings,
        ready=lambda: None,
        status=lambda name: {"app": name},
        metrics=CollectorRegistry(),
    ).test_client()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert client.get("/status", headers=auth).get_json() == {
        "shop": {"app": "shop"},
        "blog": {"app": "blog"},
    }
    assert client.get("/status?app=blog", headers=auth).get_json() == {"app": "blog"}
    assert client.get("/status?app=nope", headers=auth).status_code == 404


def _closed_under_its_loop() -> Any:
    """A waitress server whose listening socket was closed while still in its loop's map: its
    next select() fails (EBADF), as when `Service.stop` closes it between the loop's listing
    of its sockets and its select()."""
    import waitress

    server = waitress.create_server(lambda environ, start: [], host="127.0.0.1", port=0)
    server.socket.close()
    server.trigger.close()
    return server


@pytest.mark.parametrize("stopping", [True, False])
def test_a_receiver_loop_ended_by_its_closed_sockets_logs_one_line_and_no_traceback(
    stopping: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from watcher.triggers.server import serve_until_stopped

    uncaught: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    caplog.set_level(logging.DEBUG, "watcher.serve")
    stopped = threading.Event()
    if stopping:
        stopped.set()
    thread = threading.Thread(
        target=serve_until_stopped, args=(_closed_under_its_loop(), stopped, "webhook receiver")
    )
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and uncaught == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    if stopping:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith("webhook receiver stopped answering: "), errors
    assert "Traceback" not in caplog.text
