"""A webhook flood: a burst of deliveries at once, most of them copies and forgeries, each labelled
with the answers it may get, sent from a thread pool with httpx and counted.

Why labelled: "no 500" alone proves little (the receiver answers anything unexpected with 503).
Each delivery says which codes are right for it, so a forgery that got through, a duplicate that
made a job or a genuine push that was lost all show up by kind.
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx

from tests.unit.test_github_payloads import github_package
from watcher.queue.connection import key
from watcher.triggers.payloads import sign

GITHUB = "/hooks/github"
REGISTRY = "/hooks/registry"
ACCEPTED = frozenset({200, 202})  # a genuine copy: the first one to arrive makes the job, the rest are 200
IGNORED = frozenset({200})
FORGED = frozenset({401, 403, 429})  # 429: the forger's address is throttled after a few wrong tokens
SENDER = "127.0.0.1"  # GitHub and the registry
FORGER = "127.0.0.2"  # another address (loopback is a /8): its failures throttle it, not the senders


@dataclass(frozen=True)
class Pushed:
    """One push of `repository:tag` (with its registry digest) to the registry at `host`."""

    host: str
    repository: str
    tag: str
    digest: str

    def github_payload(self) -> dict[str, Any]:
        owner, _, name = self.repository.partition("/")
        return github_package(
            tag=self.tag,
            owner=owner,
            name=name,
            digest=self.digest,
            package_url=f"{self.host}/{self.repository}:{self.tag}",
        )

    def envelope(self, event_id: str) -> dict[str, Any]:
        """The Distribution notification the registry sends for this push."""
        target = {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 528,
            "digest": self.digest,
            "repository": self.repository,
            "tag": self.tag,
            "url": f"http://{self.host}/v2/{self.repository}/manifests/{self.digest}",
        }
        return {
            "events": [
                {
                    "id": event_id,
                    "timestamp": "2026-01-01T00:00:00Z",
                    "action": "push",
                    "target": target,
                    "request": {
                        "id": "r",
                        "addr": "127.0.0.1:1",
                        "host": self.host,
                        "method": "PUT",
                        "useragent": "docker/27",
                    },
                    "actor": {},
                    "source": {"addr": "registry:5000", "instanceID": "i"},
                }
            ]
        }


@dataclass(frozen=True)
class Delivery:
    kind: str  # what it is, for counting: "github copy", "forged registry", ...
    path: str
    body: bytes
    headers: dict[str, str]
    allowed: frozenset[int]
    source: str = SENDER  # the address it is sent from


@dataclass(frozen=True)
class Answer:
    delivery: Delivery
    status: int  # 0: no response (transport error, named in `error`)
    body: dict[str, Any]
    error: str = ""


def github(
    kind: str,
    event: str,
    body: bytes,
    *,
    secret: str | None,
    delivery: str | None = None,
    signature: str | None = None,
    allowed: frozenset[int] = ACCEPTED,
) -> Delivery:
    """A GitHub delivery signed with `secret` (or carrying `signature` as given, or none)."""
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    if signature is None and secret is not None:
        signature = sign(secret, body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return Delivery(kind, GITHUB, body, headers, allowed)


def registry(
    kind: str,
    envelope: dict[str, Any],
    authorization: str | None,
    allowed: frozenset[int] = ACCEPTED,
    source: str = SENDER,
) -> Delivery:
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return Delivery(kind, REGISTRY, json.dumps(envelope).encode(), headers, allowed, source)


def copies(
    pushes: list[Pushed], secret: str, token: str, *, replays: int, fresh_ids: int, notifications: int
) -> list[Delivery]:
    """Every genuine delivery of `pushes`: each push's original GitHub delivery and registry
    notification, plus exact replays (same delivery or event id), and the same bodies under
    fresh delivery ids (a sender's retry, or a second hook) spread over the pushes."""
    out: list[Delivery] = []
    bodies = {push: json.dumps(push.github_payload()).encode() for push in pushes}
    originals = {push: str(uuid.uuid4()) for push in pushes}
    events = {push: str(uuid.uuid4()) for push in pushes}
    bearer = f"Bearer {token}"
    for push in pushes:
        out.append(
            github("github original", "package", bodies[push], secret=secret, delivery=originals[push])
        )
        out.append(registry("registry original", push.envelope(events[push]), bearer))
    for i in range(replays):
        push = pushes[i % len(pushes)]
        out.append(github("github replay", "package", bodies[push], secret=secret, delivery=originals[push]))
    for i in range(fresh_ids):
        push = pushes[i % len(pushes)]
        out.append(github("github fresh id", "package", bodies[push], secret=secret))
    for i in range(notifications):
        push = pushes[i % len(pushes)]
        event = events[push] if i % 2 else str(uuid.uuid4())
        out.append(registry("registry copy", push.envelope(event), bearer))
    return out


def forgeries(pushes: list[Pushed], secret: str, *, github_count: int, registry_count: int) -> list[Delivery]:
    """Deliveries of these pushes (and of tags never pushed) that no holder of the secrets sent:
    wrong key, a body changed after signing, no or malformed signature; wrong or missing token."""
    out: list[Delivery] = []
    for i in range(github_count):
        push = pushes[i % len(pushes)]
        body = json.dumps(push.github_payload()).encode()
        forged = body.replace(push.tag.encode(), b"v9999")
        signature = (
            sign("not-the-secret", body),
            sign(secret, body),
            None,
            "sha256=" + "0" * 64,
            "sha1=" + "0" * 40,
        )[i % 5]
        out.append(
            github(
                "forged github",
                "package",
                forged if i % 5 == 1 else body,
                secret=None,
                signature=signature,
                allowed=FORGED,
            )
        )
    for i in range(registry_count):
        auth = ("Bearer not-the-token", None, "Basic Zm9vOmJhcg==", "Bearer")[i % 4]
        out.append(
            registry(
                "forged registry",
                pushes[i % len(pushes)].envelope(str(uuid.uuid4())),
                auth,
                allowed=FORGED,
                source=FORGER,
            )
        )
    return out


def noise(secret: str, count: int) -> list[Delivery]:
    """Signed deliveries that must make no job: pings, other events, unknown images, untagged."""
    out: list[Delivery] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            body, event = json.dumps({"zen": "Keep it logically awesome.", "hook_id": i}).encode(), "ping"
        elif kind == 1:
            body, event = json.dumps({"action": "opened", "issue": {"number": i}}).encode(), "issues"
        elif kind == 2:
            body = json.dumps(github_package(tag="v1", owner="someone", name="else")).encode()
            event = "package"
        else:
            body = json.dumps(github_package(tag=None, owner="someone", name="else")).encode()
            event = "package"
        out.append(github("signed noise", event, body, secret=secret, allowed=IGNORED))
    return out


def send(
    url: str, deliveries: list[Delivery], *, threads: int = 32, budget: float = 90, seed: int = 9
) -> tuple[list[Answer], float]:
    """POST every delivery in a shuffled burst from `threads` threads (one keep-alive client each);
    returns the answers, in the order of `deliveries`, and the seconds the burst took.
    AssertionError past `budget` seconds."""
    order = list(range(len(deliveries)))
    random.Random(seed).shuffle(order)
    local = threading.local()
    clients: list[httpx.Client] = []
    guard = threading.Lock()

    def client(source: str) -> httpx.Client:
        """This thread's keep-alive client from `source`."""
        if not hasattr(local, "clients"):
            local.clients = {}
        if source not in local.clients:
            transport = httpx.HTTPTransport(local_address=source)
            local.clients[source] = httpx.Client(base_url=url, timeout=30, transport=transport)
            with guard:
                clients.append(local.clients[source])
        return local.clients[source]

    def one(delivery: Delivery) -> Answer:
        try:
            response = client(delivery.source).post(
                delivery.path, content=delivery.body, headers=delivery.headers
            )
        except httpx.HTTPError as exc:
            return Answer(delivery, 0, {}, f"{type(exc).__name__}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = {"raw": response.text[:200]}
        return Answer(delivery, response.status_code, body if isinstance(body, dict) else {"raw": body})

    started = time.monotonic()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="flood")
    try:
        futures = {i: pool.submit(one, deliveries[i]) for i in order}
        _, pending = wait(futures.values(), timeout=budget)
        took = time.monotonic() - started
        assert not pending, f"{len(pending)} of {len(futures)} deliveries unanswered after {budget}s"
        return [futures[i].result() for i in range(len(deliveries))], took
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for each in clients:
            each.close()


def codes_by_kind(answers: list[Answer]) -> dict[str, collections.Counter[int]]:
    """{kind: Counter(status code)}: the flood's figures."""
    table: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for answer in answers:
        table[answer.delivery.kind][answer.status] += 1
    return dict(table)


def wrong(answers: list[Answer]) -> list[str]:
    """Each answer whose code is not one its delivery allows, described."""
    return [
        f"{a.delivery.kind}: {a.status} {a.error or a.body}"
        for a in answers
        if a.status not in a.delivery.allowed
    ]


def delivery_keys(deliveries: list[Delivery]) -> list[str]:
    """The Redis keys under which the receiver remembers these deliveries' ids (three days), so a
    test can forget exactly its own."""
    found = set()
    for delivery in deliveries:
        if delivery.path == GITHUB:
            found.add(key("_deliveries", "github", delivery.headers["X-GitHub-Delivery"]))
        else:
            found.update(
                key("_deliveries", "registry", event["id"]) for event in json.loads(delivery.body)["events"]
            )
    return sorted(found)
