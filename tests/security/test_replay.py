"""Replayed pushes (issue 21, item 4): GitHub does not sign `X-GitHub-Delivery`, so a captured
signed event can be sent again under a new delivery id. After an operator rolled 2.13.1 back to
2.13.0, such a replay was answered 202 and queued 2.13.1 again.

Through Flask's test client over the real dispatch, the real Redis queue and the real registry
(127.0.0.1:5000, scripts/services.sh): the replay is refused as long as the tag still names what
was rolled back from, on both hooks and by the poller; a replay of an event whose tag has moved
since is a stale event; a new digest of the tag, or an operator, deploys it; a registry that cannot
be reached fails the delivery closed (503, so GitHub's redelivery can try again).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from tests.conftest import require
from tests.harness.registry import push_images, push_index
from tests.harness.stack import REGISTRY, free_port
from tests.harness.triggers import write_project
from tests.unit.test_github_payloads import distribution_envelope, github_package
from tests.unit.test_webhook import SECRET, TOKEN, signed
from watcher.config import WebhookSettings, load_host
from watcher.engine.state import DeployState, Release, StateStore
from watcher.host import QUICK_REGISTRY, App, Host
from watcher.platforms.color import Color
from watcher.queue.queue import DeployQueue
from watcher.triggers.poller import Poller, poll_client
from watcher.triggers.server import create_app

BASE = f"http://{REGISTRY}"


@pytest.fixture(scope="module")
def registry_up() -> None:
    try:
        httpx.get(f"{BASE}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        require("this test", [f"registry at {REGISTRY} ({exc}; run scripts/services.sh start)"])


@dataclass
class Rolled:
    """An app an operator rolled back from 2.13.1 to 2.13.0, and its receiver."""

    app: App
    client: FlaskClient
    repository: str
    digests: dict[str, str]

    @property
    def image(self) -> str:
        return str(self.app.ref)

    def jobs(self) -> list[tuple[str, str | None]]:
        return [
            (job.version, job.digest) for job in DeployQueue(self.app.host.client, self.app.name).waiting()
        ]


def rolled_back(tmp_path: Path, app_name: str, client: redis.Redis, registry: str = REGISTRY) -> Rolled:
    """2.13.0 and 2.13.1 in the registry; 2.13.1 went live, then an operator rolled back: the
    record is the engine's own (`DeployState.going_live`, as a rollback run writes it)."""
    repository = f"watcher-test/replay-{uuid.uuid4().hex[:10]}"
    digests = push_images(BASE, repository, ["2.13.0", "2.13.1"])
    project = write_project(tmp_path / "project", app=app_name, image=f"{registry}/{repository}", port=9)
    host_config = load_host(project, {})
    config = host_config.app(None)
    older = Release(Color.BLUE, "2.13.0", digest=digests["2.13.0"])
    newer = Release(Color.GREEN, "2.13.1", digest=digests["2.13.1"])
    store = StateStore(config.state.dir, config.state.deployment_color_file)
    recorded = DeployState(live=newer, previous=older)
    store.save(DeployState(older, newer, rolled_back=recorded.going_live(older, rolled_back_from=newer)))
    config.caddy.route_file.parent.mkdir(parents=True, exist_ok=True)
    config.caddy.route_file.write_text("blue")  # the route file says what is live: 2.13.0
    host = Host(host_config, client=client, registry_options=QUICK_REGISTRY, exists_wait=0)
    settings = WebhookSettings(secret=SECRET, registry_token=TOKEN, api_token="api-" + uuid.uuid4().hex)
    flask_app = create_app(
        host, settings, ready=lambda: None, status=lambda name: {}, metrics=CollectorRegistry()
    )
    return Rolled(host.apps[app_name], flask_app.test_client(), repository, digests)


@pytest.fixture
def rolled(registry_up: None, tmp_path: Path, app_name: str, redis_url: str) -> Iterator[Rolled]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield rolled_back(tmp_path, app_name, client)
    client.close()


def github(rolled: Rolled, tag: str, digest: str) -> Any:
    """A signed `published` event, under a delivery id never seen before (what a replay sends)."""
    payload = github_package(
        tag=tag, package_url=f"{rolled.image}:{tag}", owner="watcher-test", name="x", digest=digest
    )
    return signed(rolled.client, json.dumps(payload).encode())


def notify(rolled: Rolled, tag: str, digest: str) -> Any:
    """A registry notification of the push, with an event id never seen before."""
    envelope = distribution_envelope(tag=tag)
    event = envelope["events"][0]
    event["id"] = str(uuid.uuid4())
    event["target"].update(repository=rolled.repository, digest=digest)
    return rolled.client.post(
        "/hooks/registry",
        json=envelope,
        content_type="application/vnd.docker.distribution.events.v1+json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def test_a_replayed_event_for_what_an_operator_rolled_back_from_queues_nothing(rolled: Rolled) -> None:
    """The attack: the signed event of 2.13.1, sent again with a new delivery id after the rollback."""
    for answer in (
        github(rolled, "2.13.1", rolled.digests["2.13.1"]),
        notify(rolled, "2.13.1", rolled.digests["2.13.1"]),
    ):
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body["outcome"] == "rolled-back" and body.get("job_id") is None, body
        assert "was rolled back from" in body["reason"] and "watcher deploy 2.13.1" in body["reason"]
    assert rolled.jobs() == []


def test_the_poller_does_not_undo_the_rollback_either(rolled: Rolled) -> None:
    """Whoever made the last request (here nobody): the candidate 2.13.1 is what was rolled back from."""
    client = poll_client(rolled.app)
    poller = Poller(rolled.app.host, {rolled.app.name: client})
    try:
        for dry_run in (True, False):
            result = poller.poll(rolled.app, dry_run=dry_run)
            assert (result.status, result.tag) == ("rolled-back", "2.13.1"), result
    finally:
        poller.shutdown()
    assert rolled.jobs() == []


def test_a_replay_of_an_event_whose_tag_moved_is_stale_and_a_new_digest_deploys(rolled: Rolled) -> None:
    """2.13.1 pushed again (a new digest): the old event replayed is stale, the new one is queued."""
    old = rolled.digests["2.13.1"]
    new = push_index(BASE, rolled.repository, "2.13.1", [rolled.digests["2.13.0"]])  # rebuilt
    for answer in (github(rolled, "2.13.1", old), notify(rolled, "2.13.1", old)):
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body["outcome"] == "stale" and body.get("job_id") is None, body
        assert "stale event" in body["reason"] and new[:19] in body["reason"], body
    assert rolled.jobs() == []
    answer = github(rolled, "2.13.1", new)
    assert answer.status_code == 202, answer.get_json()
    assert rolled.jobs() == [("2.13.1", new)]


def test_an_event_naming_a_platform_manifest_of_the_tags_index_is_not_stale(rolled: Rolled) -> None:
    """One multi-arch push: GHCR sends an event per platform manifest beside the index's; each is
    the push as it is now, and all of them make the one job of the index's digest."""
    index = push_index(BASE, rolled.repository, "2.14.0", [rolled.digests["2.13.0"]])
    answer = github(rolled, "2.14.0", rolled.digests["2.13.0"])
    assert answer.status_code == 202, answer.get_json()
    assert rolled.jobs() == [("2.14.0", index)]


def test_an_operator_may_deploy_what_was_rolled_back_from(rolled: Rolled) -> None:
    asked = rolled.app.request("2.13.1", source="cli", by="ann")
    assert asked.status == "enqueued", asked
    assert rolled.jobs() == [("2.13.1", rolled.digests["2.13.1"])]


def test_a_registry_that_cannot_be_reached_fails_the_delivery_closed(
    registry_up: None, tmp_path: Path, app_name: str, redis_url: str
) -> None:
    """The app's registry does not answer (a closed port): 503 within GitHub's 10 s, nothing
    queued, the delivery id released so that GitHub's redelivery is processed."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        rolled = rolled_back(tmp_path, app_name, client, registry=f"127.0.0.1:{free_port()}")
        began = time.monotonic()
        answer = github(rolled, "2.13.1", rolled.digests["2.13.1"])
        assert time.monotonic() - began < 10  # GitHub gives up after 10 s
        assert answer.status_code == 503, answer.get_json()
        assert answer.get_json()["outcome"] == "unavailable"
        assert "cannot check" in answer.get_json()["reason"]
        assert rolled.jobs() == []
    finally:
        client.close()
