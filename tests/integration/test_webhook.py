"""The webhook receiver over real HTTP: `watcher serve` in a subprocess (waitress), a real
docker-registry holding the tags, the real Redis queue receiving the jobs.

GitHub-format deliveries (published, updated, registry_package, ping, untagged, legacy docker,
trailing ':' in package_url), good and bad signatures (GitHub's documented test vector, whose
secret is too short to configure, is checked in tests/unit/test_github_payloads.py), oversize
and malformed bodies, one multi-arch push's burst of events making one job, a replayed delivery
making none, a tag the registry does not have never enqueued; Distribution notifications;
pause/resume/status/health; fail-closed start-up without secrets; Redis down.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.harness.registry import (
    LocalRegistry,
    Proxy,
    push_images,
    push_index,
    require_tool,
    running_registry,
)
from tests.harness.stack import free_port
from tests.harness.triggers import WatcherServer, forget, github_delivery, jobs_created, write_project
from tests.unit.test_github_payloads import PLATFORM, distribution_envelope, github_package
from watcher import signing
from watcher.queue.queue import DeployQueue
from watcher.queue.suspension import Suspension
from watcher.triggers.payloads import sign

pytestmark = pytest.mark.integration

SECRET = "hook-" + secrets.token_hex(16)  # GitHub's test vector is too short to serve: test_github_payloads
SIGNED = sign(SECRET, b"Hello, World!")  # as GitHub's documented vector, with a secret long enough
REGISTRY_TOKEN = "notify-" + secrets.token_hex(16)
API_TOKEN = "api-" + secrets.token_hex(16)
MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, dict[str, str]]]:
    binary = require_tool("docker-registry")
    with running_registry(binary, tmp_path_factory.mktemp("registry")) as reg:
        digests = push_images(reg.url, "acme/app", ["1.0.0", "1.1.0", "1.2.0", "1.4.0", "2.0.0-rc.1"])
        digests["1.3.0"] = push_index(reg.url, "acme/app", "1.3.0", [digests["1.0.0"], digests["1.1.0"]])
        yield reg, digests


@pytest.fixture(scope="module")
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def _serve(tmp: Path, image: str, redis_url: str, env: dict[str, str]) -> WatcherServer:
    app = f"wh{uuid.uuid4().hex[:8]}"
    port = free_port()
    config = write_project(tmp, app=app, image=image, port=port, extra=f'[redis]\nurl = "{redis_url}"\n')
    server = WatcherServer(config, env, port)
    server.app = app  # type: ignore[attr-defined]
    return server.start()


@pytest.fixture(scope="module")
def server(registry, redis_url: str, client: redis.Redis, tmp_path_factory) -> Iterator[WatcherServer]:
    reg, _ = registry
    tmp = tmp_path_factory.mktemp("serve")
    token_file = tmp / "registry-token"
    token_file.write_text(REGISTRY_TOKEN + "\n")
    srv = _serve(
        tmp / "project",
        f"{reg.host}/acme/app",
        redis_url,
        {
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_REGISTRY_TOKEN_FILE": str(token_file),
            "WATCHER_API_TOKEN": API_TOKEN,
        },
    )
    try:
        yield srv
    finally:
        srv.stop()
        forget(client, srv.app)  # type: ignore[attr-defined]


@pytest.fixture
def app(server: WatcherServer, client: redis.Redis) -> str:
    """The served app's name, its queue emptied before the test."""
    forget(client, server.app, server.config.parent)  # type: ignore[attr-defined]
    return server.app  # type: ignore[attr-defined]


def push_event(
    registry,
    tag: str | None,
    *,
    event: str = "package",
    action: str = "published",
    digest: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    reg, digests = registry
    return github_package(
        action,
        tag,
        event=event,
        owner="Acme",
        name="App",
        package_url=f"{reg.host}/acme/app:{tag or ''}",
        digest=digest or digests.get(tag or "", PLATFORM),
        **kw,
    )


def to_be_pushed(reg: LocalRegistry, tag: str) -> str:
    """The digest `push_images` will give `tag` in acme/app, what the event of that push names:
    the same bytes pushed to another repository first."""
    return push_images(reg.url, "acme/elsewhere", [tag])[tag]


# -- signatures ---------------------------------------------------------------------------------


def test_a_signed_body_is_read_and_one_digit_off_is_refused(server: WatcherServer, app: str) -> None:
    """The signature is accepted (the body then fails as JSON, 400); one digit off is 401."""
    accepted = github_delivery(server.url, "package", None, None, body=b"Hello, World!", signature=SIGNED)
    assert accepted.status_code == 400 and "not valid JSON" in accepted.json()["reason"]
    off = SIGNED[:-1] + ("8" if SIGNED[-1] != "8" else "9")
    refused = github_delivery(server.url, "package", None, None, body=b"Hello, World!", signature=off)
    assert refused.status_code == 401


def test_bad_signatures_are_401_and_enqueue_nothing(
    server: WatcherServer, app: str, registry, client
) -> None:
    payload = push_event(registry, "1.2.0")
    body = json.dumps(payload).encode()
    for signature in (
        None,
        sign("wrong secret", body),
        sign(SECRET, body + b" "),
        "sha1=" + "0" * 40,
        "garbage",
    ):
        response = github_delivery(server.url, "package", payload, None, body=body, signature=signature)
        assert response.status_code == 401, (signature, response.text)
        assert "X-Hub-Signature-256" in response.json()["reason"]
    assert jobs_created(client, app) == 0


def test_ping(server: WatcherServer, app: str) -> None:
    response = github_delivery(server.url, "ping", {"zen": "Design for failure.", "hook_id": 42}, SECRET)
    assert response.status_code == 200 and response.json()["outcome"] == "pong"


# -- pushes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, action",
    [
        ("package", "published"),
        ("package", "updated"),
        ("registry_package", "published"),
        ("registry_package", "updated"),
    ],
)
def test_push_enqueues_one_job(
    server: WatcherServer, app: str, registry, client, event: str, action: str
) -> None:
    _, digests = registry
    delivery = str(uuid.uuid4())
    response = github_delivery(
        server.url,
        event,
        push_event(registry, "1.2.0", event=event, action=action),
        SECRET,
        delivery=delivery,
    )
    assert response.status_code == 202, response.text
    assert response.elapsed.total_seconds() < 5, "well inside GitHub's 10 s"
    body = response.json()
    job = DeployQueue(client, app).get(body["job_id"])
    assert job is not None and (job.version, job.digest, job.source) == ("1.2.0", digests["1.2.0"], "webhook")
    assert job.requested_by == f"github delivery {delivery} (octocat)"
    assert jobs_created(client, app) == 1


def test_form_encoded_delivery(server: WatcherServer, app: str, registry, client) -> None:
    """A hook set up with content type application/x-www-form-urlencoded: payload=<json>."""
    import urllib.parse

    body = urllib.parse.urlencode({"payload": json.dumps(push_event(registry, "1.2.0"))}).encode()
    response = httpx.post(
        f"{server.url}/hooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "package",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(SECRET, body),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 202, response.text
    assert jobs_created(client, app) == 1


def test_legacy_docker_package(server: WatcherServer, app: str, registry, client) -> None:
    reg, digests = registry
    payload = github_package("published", None, ecosystem="docker", package_url=f"{reg.host}/acme/app:1.1.0")
    payload["package"]["package_version"]["container_metadata"] = None
    payload["package"]["package_version"]["docker_metadata"] = [{"tags": ["1.1.0"]}]
    response = github_delivery(server.url, "package", payload, SECRET)
    assert response.status_code == 202, response.text
    assert DeployQueue(client, app).get(response.json()["job_id"]).digest == digests["1.1.0"]


def test_untagged_version_with_trailing_colon_is_ignored(
    server: WatcherServer, app: str, registry, client
) -> None:
    payload = push_event(registry, None, digest=PLATFORM)
    assert payload["package"]["package_version"]["package_url"].endswith("/acme/app:")
    response = github_delivery(server.url, "package", payload, SECRET)
    assert response.status_code == 200 and "untagged" in response.json()["reason"]
    assert jobs_created(client, app) == 0


def test_multi_arch_burst_makes_one_job(server: WatcherServer, app: str, registry, client) -> None:
    """Three events for one push of a two-platform image, at once: each names the tag with a
    different digest (two platform manifests and the index); the registry resolves them all to
    the index, so one job is queued and the others answer duplicate."""
    _, digests = registry
    events = [
        push_event(registry, "1.3.0", digest=d)
        for d in (digests["1.0.0"], digests["1.1.0"], digests["1.3.0"])
    ]
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda p: github_delivery(server.url, "package", p, SECRET), events))
    assert sorted(r.status_code for r in responses) == [200, 200, 202], [r.text for r in responses]
    assert {r.json()["outcome"] for r in responses if r.status_code == 200} == {"duplicate"}
    assert jobs_created(client, app) == 1
    job = DeployQueue(client, app).waiting()[0]
    assert (job.version, job.digest) == ("1.3.0", digests["1.3.0"])


def test_replayed_delivery_makes_no_new_job(server: WatcherServer, app: str, registry, client) -> None:
    delivery = str(uuid.uuid4())
    payload = push_event(registry, "1.2.0")
    first = github_delivery(server.url, "package", payload, SECRET, delivery=delivery)
    again = github_delivery(server.url, "package", payload, SECRET, delivery=delivery)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["outcome"] == "duplicate"
    # A new delivery of the same push (same image, tag, digest) is recognized too.
    other = github_delivery(server.url, "package", payload, SECRET)
    assert other.status_code == 200 and other.json()["outcome"] == "duplicate"
    assert first.json()["job_id"] in other.json()["reason"]
    assert jobs_created(client, app) == 1


def test_tag_absent_from_registry_is_not_enqueued_until_it_exists(
    server: WatcherServer, app: str, registry, client
) -> None:
    reg, _ = registry
    delivery = str(uuid.uuid4())
    payload = push_event(registry, "1.5.0", digest=to_be_pushed(reg, "1.5.0"))
    missing = github_delivery(server.url, "package", payload, SECRET, delivery=delivery)
    assert missing.status_code == 422 and "does not exist in the registry" in missing.json()["reason"]
    assert jobs_created(client, app) == 0
    # Once the tag is really there, a redelivery of the same delivery is processed.
    digest = push_images(reg.url, "acme/app", ["1.5.0"])["1.5.0"]
    redelivered = github_delivery(server.url, "package", payload, SECRET, delivery=delivery)
    assert redelivered.status_code == 202, redelivered.text
    assert DeployQueue(client, app).get(redelivered.json()["job_id"]).digest == digest


def test_policy_refusals_and_no_downgrade(server: WatcherServer, app: str, registry, client) -> None:
    prerelease = github_delivery(server.url, "package", push_event(registry, "2.0.0-rc.1"), SECRET)
    assert prerelease.status_code == 200 and "pre-release" in prerelease.json()["reason"]
    assert github_delivery(server.url, "package", push_event(registry, "1.4.0"), SECRET).status_code == 202
    late = github_delivery(server.url, "package", push_event(registry, "1.2.0"), SECRET)
    assert late.status_code == 200 and "older than 1.4.0, which is already queued" in late.json()["reason"]
    assert [j.version for j in DeployQueue(client, app).waiting()] == ["1.4.0"]


# -- bad input ----------------------------------------------------------------------------------


LIMIT_SAID = "exceeds the 1 MiB (1048576 bytes) limit ([webhook] max_body)"


@pytest.mark.parametrize(
    "size, chunked",
    [(3 * MAX_BODY // 2, False), (3 * MAX_BODY, False), (3 * MAX_BODY, True), (MAX_BODY + 1, True)],
    ids=["1.5MiB", "3MiB", "3MiB-chunked", "1MiB+1-chunked"],
)
def test_every_oversize_body_gets_the_one_json_413_and_is_logged(
    server: WatcherServer, app: str, size: int, chunked: bool
) -> None:
    """Under and over waitress's own cap alike: the app's JSON 413 naming `max_body`, logged
    with the delivery id (waitress once answered bodies over 2 MiB itself, in plain text)."""
    delivery = str(uuid.uuid4())
    body = b'{"zen": "' + b"x" * (size - 11) + b'"}'
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    response = httpx.post(f"{server.url}/hooks/github", content=content, headers=headers, timeout=15)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json", response.text
    assert response.json()["outcome"] == "refused" and LIMIT_SAID in response.json()["reason"], response.text
    assert f"github delivery {delivery} (ping): 413 refused: the body" in server.log()


def test_a_body_at_the_limit_is_read(server: WatcherServer, app: str) -> None:
    exact = b'{"zen": "' + b"x" * (MAX_BODY - 11) + b'"}'
    assert len(exact) == MAX_BODY
    assert github_delivery(server.url, "ping", None, SECRET, body=exact).status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b"", b"null"])
def test_malformed_json_is_400(server: WatcherServer, app: str, body: bytes) -> None:
    assert github_delivery(server.url, "package", None, SECRET, body=body).status_code == 400


def test_unknown_event_and_unknown_image_are_200_ignored(
    server: WatcherServer, app: str, registry, client
) -> None:
    issues = github_delivery(server.url, "issues", {"action": "opened"}, SECRET)
    assert issues.status_code == 200 and "not handled" in issues.json()["reason"]
    other = github_package("published", "1.2.0", owner="someone", name="else")  # ghcr.io/someone/else
    unknown = github_delivery(server.url, "package", other, SECRET)
    assert (
        unknown.status_code == 200
        and "no configured app deploys ghcr.io/someone/else" in unknown.json()["reason"]
    )
    npm = github_package("published", "1.2.0", ecosystem="npm")
    assert github_delivery(server.url, "package", npm, SECRET).status_code == 200
    assert jobs_created(client, app) == 0


# -- registry notifications -----------------------------------------------------------------------


def test_registry_notification(server: WatcherServer, app: str, registry, client) -> None:
    reg, digests = registry
    envelope = distribution_envelope(tag="1.2.0")
    envelope["events"][0]["target"].update(repository="acme/app", digest=digests["1.2.0"])
    envelope["events"][0]["request"]["host"] = reg.host
    envelope["events"][0]["id"] = str(uuid.uuid4())
    url = f"{server.url}/hooks/registry"
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    assert httpx.post(url, json=envelope, headers=headers).status_code == 401
    assert (
        httpx.post(url, json=envelope, headers={**headers, "Authorization": "Bearer wrong"}).status_code
        == 401
    )
    auth = {**headers, "Authorization": f"Bearer {REGISTRY_TOKEN}"}
    accepted = httpx.post(url, json=envelope, headers=auth)
    assert accepted.status_code == 202, accepted.text
    assert DeployQueue(client, app).get(accepted.json()["job_id"]).digest == digests["1.2.0"]
    assert httpx.post(url, json=envelope, headers=auth).json()["outcome"] == "duplicate"
    assert httpx.post(url, content=b"{", headers=auth).status_code == 400
    assert jobs_created(client, app) == 1
    assert f"registry delivery {envelope['events'][0]['id']}: 202 enqueued" in server.log()


def test_registry_notification_of_a_missing_tag_is_422_until_it_exists(
    server: WatcherServer, app: str, registry, client
) -> None:
    """As /hooks/github: 422, the event id released, so the registry's retry is processed once
    the tag shows."""
    reg, _ = registry
    envelope = distribution_envelope(tag="1.6.0")
    envelope["events"][0]["target"].update(repository="acme/app", digest=to_be_pushed(reg, "1.6.0"))
    envelope["events"][0]["request"]["host"] = reg.host
    envelope["events"][0]["id"] = event = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {REGISTRY_TOKEN}"}
    missing = httpx.post(f"{server.url}/hooks/registry", json=envelope, headers=auth)
    assert missing.status_code == 422 and "does not exist in the registry" in missing.json()["reason"]
    assert f"registry delivery {event}: 422 not-found" in server.log()
    assert jobs_created(client, app) == 0
    digest = push_images(reg.url, "acme/app", ["1.6.0"])["1.6.0"]
    retried = httpx.post(f"{server.url}/hooks/registry", json=envelope, headers=auth)
    assert retried.status_code == 202, retried.text
    assert DeployQueue(client, app).get(retried.json()["job_id"]).digest == digest


# -- pause, resume, status, health ------------------------------------------------------------------


def test_pause_and_resume(server: WatcherServer, app: str, client) -> None:
    suspension = Suspension(client, app)
    assert httpx.post(f"{server.url}/pause", json={"reason": "x"}).status_code == 401
    assert httpx.post(f"{server.url}/pause", headers={"Authorization": "Bearer nope"}).status_code == 401
    paused = httpx.post(
        f"{server.url}/pause",
        json={"reason": "release freeze", "by": "ops"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert paused.status_code == 200, paused.text
    assert suspension.paused() is not None and suspension.paused()["reason"] == "release freeze"
    body = json.dumps({"reason": "freeze over"}).encode()
    bad = httpx.post(
        f"{server.url}/resume", content=body, headers=signing.sign("nope" * 8, "POST", "/resume", body)
    )
    assert bad.status_code == 401 and suspension.paused() is not None
    resumed = httpx.post(
        f"{server.url}/resume", content=body, headers=signing.sign(API_TOKEN, "POST", "/resume", body)
    )
    assert resumed.status_code == 200 and resumed.json()["lifted"][app]["by"] == "ops"
    assert suspension.paused() is None


def test_status_health_and_readiness(server: WatcherServer, app: str, real_services: None) -> None:
    assert httpx.get(f"{server.url}/status").status_code == 401
    status = httpx.get(f"{server.url}/status", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)
    assert status.status_code == 200, status.text
    data = status.json()
    assert data["app"] == app and "live_color" in data and "queue" in data and "paused" in data
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok", "ready": True, "redis": "ok"}
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/nowhere").status_code == 404
    assert httpx.get(f"{server.url}/hooks/github").status_code == 405


def test_log_names_deliveries_and_never_secrets(server: WatcherServer, app: str, registry) -> None:
    delivery = str(uuid.uuid4())
    github_delivery(server.url, "package", push_event(registry, "1.2.0"), SECRET, delivery=delivery)
    github_delivery(server.url, "package", push_event(registry, "1.2.0"), "wrong", delivery="bad-" + delivery)
    log = server.log()
    assert f"github delivery {delivery} (package): 202 enqueued" in log
    assert f"github delivery bad-{delivery} (package): 401 refused" in log
    for secret in (SECRET, REGISTRY_TOKEN, API_TOKEN):
        assert secret not in log
    assert " 500 " not in log and "Traceback" not in log


# -- fail closed; Redis down ------------------------------------------------------------------------


def test_without_secrets_every_endpoint_refuses(registry, redis_url: str, tmp_path: Path) -> None:
    reg, _ = registry
    srv = _serve(tmp_path, f"{reg.host}/acme/app", redis_url, {})
    try:
        log = srv.log()
        assert "POST /hooks/github: REFUSING every delivery: no webhook secret is configured" in log
        assert "POST /hooks/registry: REFUSING every notification" in log
        payload = push_event(registry, "1.2.0")
        for secret in ("", SECRET):
            response = github_delivery(srv.url, "package", payload, secret)
            assert response.status_code == 403 and "no webhook secret" in response.json()["reason"]
        assert (
            httpx.post(
                f"{srv.url}/hooks/registry", json={}, headers={"Authorization": "Bearer x"}
            ).status_code
            == 403
        )
        assert httpx.post(f"{srv.url}/pause", headers={"Authorization": "Bearer x"}).status_code == 403
        assert httpx.get(f"{srv.url}/status").status_code == 403
    finally:
        srv.stop()


def test_rate_limited_registry_answers_503_at_once(registry, redis_url: str, client, tmp_path: Path) -> None:
    """A 429 asking for 30 s: the delivery fails fast (GitHub waits 10 s at most) and a
    redelivery of the same id is processed once the registry answers."""
    reg, _ = registry
    with Proxy(reg.host, canned=[(429, {"Retry-After": "30"})]).serving() as limited:
        srv = _serve(tmp_path, f"{limited.host}/acme/app", redis_url, {"WEBHOOK_SECRET": SECRET})
        try:
            payload = push_event(registry, "1.2.0")
            payload["package"]["package_version"]["package_url"] = f"{limited.host}/acme/app:1.2.0"
            delivery = str(uuid.uuid4())
            response = github_delivery(srv.url, "package", payload, SECRET, delivery=delivery)
            assert response.status_code == 503 and "rate-limiting" in response.json()["reason"], response.text
            assert response.elapsed.total_seconds() < 5
            assert jobs_created(client, srv.app) == 0  # type: ignore[attr-defined]
            again = github_delivery(srv.url, "package", payload, SECRET, delivery=delivery)
            assert again.status_code == 202, again.text
        finally:
            srv.stop()
            forget(client, srv.app)  # type: ignore[attr-defined]


def test_redis_down_is_503_never_500(registry, tmp_path: Path) -> None:
    reg, _ = registry
    srv = _serve(
        tmp_path,
        f"{reg.host}/acme/app",
        f"redis://127.0.0.1:{free_port()}/0",
        {"WEBHOOK_SECRET": SECRET, "WATCHER_API_TOKEN": API_TOKEN},
    )
    try:
        health = httpx.get(f"{srv.url}/healthz")
        assert health.status_code == 200 and health.json()["ready"] is False  # alive, not ready
        ready = httpx.get(f"{srv.url}/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["redis"]
        response = github_delivery(srv.url, "package", push_event(registry, "1.2.0"), SECRET)
        assert response.status_code == 503 and "Redis" in response.json()["reason"]
        pause = httpx.post(f"{srv.url}/pause", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert pause.status_code == 503
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()
