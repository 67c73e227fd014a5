"""Issue 21's attacks replayed against one real `watcher serve` (waitress, over real HTTP on
127.0.0.1), the real Redis and the real registry at 127.0.0.1:5000: the open redirect after login
(1), a captured signed control request replayed elsewhere, later or twice (2), the API token
guessed at full speed (3), a signed GitHub event replayed after a rollback or after its tag moved
(4), a copied dashboard session kept after logout (8), and a padded event past the body limit.

The server has a `[redis] prefix` of its own, so its throttle, nonces, sessions and queue are
nobody else's; each test speaks from a loopback address of its own (127.0.0.2 and up), so one
test's failed authentications never throttle another's. Each asserts what the attacker now sees
and that nothing changed: nothing queued, nothing paused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.conftest import require
from tests.harness.registry import push_images, push_index
from tests.harness.stack import REGISTRY, free_port
from tests.harness.triggers import WatcherServer, github_delivery, write_project
from tests.unit.test_github_payloads import github_package
from watcher import signing
from watcher.config import load_host
from watcher.engine.state import DeployState, Release, StateStore
from watcher.http import Guard
from watcher.platforms.color import Color
from watcher.queue.queue import DeployQueue
from watcher.queue.suspension import Suspension

pytestmark = pytest.mark.integration

BASE = f"http://{REGISTRY}"
SECRET = "hook-" + secrets.token_hex(16)
API_TOKEN = "api-" + secrets.token_hex(16)


@dataclass
class Served:
    """The running receiver, its app (rolled back from 2.13.1 to 2.13.0) and where its keys live."""

    server: WatcherServer
    app: str
    prefix: str
    image: str
    repository: str
    digests: dict[str, str]
    client: redis.Redis

    def client_from(self, address: str) -> httpx.Client:
        """An HTTP client whose requests come from `address` (the throttle counts per address)."""
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=self.server.url, transport=transport, timeout=15)

    def untouched(self) -> None:
        """Nothing the attacker wanted happened: no job ever created, nothing waiting, not paused."""
        queue = DeployQueue(self.client, self.app, prefix=self.prefix)
        assert queue.waiting() == []
        assert not self.client.exists(f"{self.prefix}:watcher:{self.app}:seq")
        assert Suspension(self.client, self.app, self.prefix).paused() is None


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `watcher serve` for the module; its app's last release was rolled back by an operator."""
    try:
        httpx.get(f"{BASE}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        require("this test", [f"registry at {REGISTRY} ({exc}; run scripts/services.sh start)"])
    app, prefix = f"s{uuid.uuid4().hex[:10]}", f"sec{uuid.uuid4().hex[:8]}"
    repository = f"watcher-test/security-{uuid.uuid4().hex[:10]}"
    digests = push_images(BASE, repository, ["2.13.0", "2.13.1"])
    image = f"{REGISTRY}/{repository}"
    port = free_port()
    root = tmp_path_factory.mktemp("security") / "project"
    config = write_project(
        root, app=app, image=image, port=port, extra=f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n'
    )
    settings = load_host(config, {}).app(None)
    older = Release(Color.BLUE, "2.13.0", digest=digests["2.13.0"])
    newer = Release(Color.GREEN, "2.13.1", digest=digests["2.13.1"])
    recorded = DeployState(live=newer, previous=older)
    StateStore(settings.state.dir, settings.state.deployment_color_file).save(
        DeployState(older, newer, rolled_back=recorded.going_live(older, rolled_back_from=newer))
    )
    settings.caddy.route_file.parent.mkdir(parents=True, exist_ok=True)
    settings.caddy.route_file.write_text("blue")
    server = WatcherServer(config, {"WEBHOOK_SECRET": SECRET, "WATCHER_API_TOKEN": API_TOKEN}, port)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield Served(server.start(), app, prefix, image, repository, digests, client)
    finally:
        server.stop()
        for found in client.scan_iter(f"{prefix}:*"):
            client.delete(found)
        client.close()


def csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def login(client: httpx.Client, path: str = "/login") -> httpx.Response:
    return client.post(path, data={"token": API_TOKEN, "csrf": csrf(client, path)})


# -- 1. the open redirect after login ---------------------------------------------------------------


def test_login_with_a_next_naming_another_host_stays_on_the_dashboard(served: Served) -> None:
    """The report: `/login?next=/%09/evil.example/x` and a correct login answered
    `Location: //evil.example/x` (a browser drops the tab and goes off site)."""
    with served.client_from("127.0.0.2") as browser:
        answer = login(browser, "/login?next=/%09/evil.example/x")
        assert answer.status_code == 303, answer.text
        assert answer.headers["Location"] == "/"
        assert browser.get("/").status_code == 200  # logged in, on the dashboard
    served.untouched()


# -- 2. a captured signed control request ---------------------------------------------------------


def signed_post(client: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})


def test_a_captured_signed_resume_is_refused_everywhere_else_and_a_second_time(served: Served) -> None:
    """The report: a captured signed `/resume` also paused at `/pause` and promoted at `/promote`."""
    body = json.dumps({"app": served.app}).encode()
    captured = signing.sign(API_TOKEN, "POST", "/resume", body)
    with served.client_from("127.0.0.4") as attacker:
        assert signed_post(attacker, "/resume", body, captured).status_code == 200  # the operator's
        for path in ("/pause", "/promote", "/abort", "/resume"):
            answer = signed_post(attacker, path, body, captured)
            assert answer.status_code == 401, (path, answer.text)
        assert "was used already" in answer.json()["reason"]  # the replay at /resume
    served.untouched()


def test_a_signature_older_than_five_minutes_or_of_the_body_alone_is_refused(served: Served) -> None:
    body = json.dumps({"app": served.app, "reason": "freeze"}).encode()
    late = signing.sign(API_TOKEN, "POST", "/pause", body, timestamp=int(time.time()) - signing.TOLERANCE - 5)
    old = "sha256=" + hmac.new(API_TOKEN.encode(), body, hashlib.sha256).hexdigest()  # the old scheme
    with served.client_from("127.0.0.5") as attacker:
        answer = signed_post(attacker, "/pause", body, late)
        assert answer.status_code == 401 and signing.TIMESTAMP in answer.json()["reason"], answer.text
        answer = signed_post(attacker, "/pause", body, {signing.SIGNATURE: old})
        assert answer.status_code == 401, answer.text
    served.untouched()


# -- 3. the API token guessed at full speed --------------------------------------------------------


def test_thirty_wrong_tokens_to_status_and_pause_end_in_429_for_the_right_token_too(served: Served) -> None:
    """The report: 30 wrong bearer tokens each to /status and /pause were each a quick 401."""
    codes = []
    with served.client_from("127.0.0.3") as guesser:
        for guess in range(30):
            wrong = {"Authorization": f"Bearer guess-{guess}-{secrets.token_hex(16)}"}
            codes.append(guesser.get("/status", headers=wrong).status_code)
            answer = guesser.post(
                "/pause", content=b"{}", headers={**wrong, "Content-Type": "application/json"}
            )
            codes.append(answer.status_code)
        assert codes[: Guard.MAX_FAILURES] == [401] * Guard.MAX_FAILURES, codes
        assert set(codes[Guard.MAX_FAILURES :]) == {429}, codes
        assert 0 < int(answer.headers["Retry-After"]) <= Guard.FAILURE_WINDOW
        right = guesser.get("/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert right.status_code == 429 and 0 < int(right.headers["Retry-After"]) <= Guard.FAILURE_WINDOW
    with served.client_from("127.0.0.6") as operator:  # another address is not throttled
        assert operator.get("/status", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    assert "guess-" not in served.server.log() and API_TOKEN not in served.server.log()
    served.untouched()


# -- 4. a signed GitHub event replayed -------------------------------------------------------------


def published(served: Served, tag: str, digest: str) -> dict[str, object]:
    return github_package(
        tag=tag, package_url=f"{served.image}:{tag}", owner="watcher-test", name="x", digest=digest
    )


def test_a_replayed_event_for_what_an_operator_rolled_back_from_queues_nothing(served: Served) -> None:
    """The report: 2.13.1's signed event, sent again under a new delivery id after the rollback to
    2.13.0, was answered 202 and queued 2.13.1 again."""
    event = published(served, "2.13.1", served.digests["2.13.1"])
    answer = github_delivery(served.server.url, "package", event, SECRET)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "rolled-back" and body.get("job_id") is None, body
    served.untouched()


@pytest.mark.parametrize(
    ("signed", "chunked"),
    [(True, False), (True, True), (False, True)],
    ids=["signed", "signed-chunked", "unsigned-chunked"],
)
def test_a_padded_event_past_the_body_limit_is_413_and_queues_nothing(
    served: Served, signed: bool, chunked: bool
) -> None:
    """A real package event padded to 3 MiB, signed or not, in one piece or chunked without a
    Content-Length: the JSON 413 before any signature or payload is looked at; nothing queued."""
    event = published(served, "2.15.0", served.digests["2.13.1"])
    body = json.dumps({**event, "padding": "x" * (3 << 20)}).encode()
    headers = {"X-GitHub-Event": "package", "X-GitHub-Delivery": str(uuid.uuid4())}
    headers["Content-Type"] = "application/json"
    if signed:
        headers["X-Hub-Signature-256"] = (
            "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        )
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    answer = httpx.post(f"{served.server.url}/hooks/github", content=content, headers=headers, timeout=15)
    assert answer.status_code == 413, answer.text
    assert answer.json()["outcome"] == "refused" and "[webhook] max_body" in answer.json()["reason"]
    served.untouched()


def test_a_replay_of_an_event_whose_tag_moved_is_stale(served: Served) -> None:
    """2.14.0's event captured, the tag pushed again with new content: the old event is stale."""
    old = push_images(BASE, served.repository, ["2.14.0"])["2.14.0"]
    event = published(served, "2.14.0", old)
    new = push_index(BASE, served.repository, "2.14.0", [served.digests["2.13.0"]])  # rebuilt
    assert new != old
    answer = github_delivery(served.server.url, "package", event, SECRET)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "stale" and body.get("job_id") is None, body
    assert new[:19] in body["reason"], body
    served.untouched()


# -- 8. dashboard sessions nobody could end --------------------------------------------------------


def session_of(client: httpx.Client) -> str:
    value = client.cookies.get("watcher_session")
    assert value, client.cookies
    return value


def copied(served: Served, cookie: str) -> int:
    """What a thief holding the cookie gets at the dashboard: 200, or 302 to the login page."""
    with served.client_from("127.0.0.7") as thief:
        return thief.get("/", headers={"Cookie": f"watcher_session={cookie}"}).status_code


def test_a_session_cookie_from_before_a_logout_is_refused(served: Served) -> None:
    """Before, the session was the signed cookie alone: a copy kept working after logout."""
    with served.client_from("127.0.0.8") as browser:
        assert login(browser).status_code == 303
        cookie = session_of(browser)
        assert copied(served, cookie) == 200
        assert browser.post("/logout", data={"csrf": csrf(browser, "/")}).status_code == 303
    assert copied(served, cookie) == 302
    served.untouched()


def test_log_out_everywhere_ends_a_copied_session_cookie(served: Served) -> None:
    with served.client_from("127.0.0.9") as laptop, served.client_from("127.0.0.10") as phone:
        for browser in (laptop, phone):
            assert login(browser).status_code == 303
        cookie = session_of(phone)
        assert copied(served, cookie) == 200
        answer = laptop.post("/logout/everywhere", data={"csrf": csrf(laptop, "/")})
        assert answer.status_code == 303 and answer.headers["Location"] == "/login"
        assert phone.get("/").status_code == 302
    assert copied(served, cookie) == 302
    served.untouched()
