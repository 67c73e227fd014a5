"""The registry poller against a real docker-registry, through a proxy that pages tag lists the
way GHCR does (distribution 2.8 ignores `n=`) and injects 429s and 5xx; the real Redis queue.

Each policy picks the right tag from a list spread over many pages; what is live, what was last
requested and a second watcher instance are respected; the token challenge is answered by a real
token endpoint; Retry-After is honoured; a registry that is down is logged, retried, and causes
no job.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.harness.registry import (
    OCI_MANIFEST,
    LocalRegistry,
    Proxy,
    TokenService,
    push_images,
    put_manifest,
    require_tool,
    running_registry,
    upload_blob,
)
from tests.harness.stack import free_port
from tests.harness.triggers import forget, jobs_created, write_project
from watcher.atomic import write_atomic
from watcher.backends.registry import RegistryClient
from watcher.config import load_config, load_host
from watcher.engine.state import DeployState, Release, StateStore
from watcher.host import Host
from watcher.platforms.color import Color
from watcher.queue.queue import DeployQueue
from watcher.triggers.poller import Poller

pytestmark = pytest.mark.integration

RELEASES = [f"1.{minor}.{patch}" for minor in range(5) for patch in (0, 1, 2, 10)]  # 20, up to 1.4.10
OTHERS = [
    "2.0.0-rc.1",
    "1.5.0-beta.2",
    "v1.3.3",
    "1",
    "1.4",
    "latest",
    "main",
    "sha-0a1b2c3",
    "sha-ffffff0",
    "sha256-" + "a" * 64 + ".sig",
    "main-9-abc1234",
    "main-41-def5678",
    "main-100-0a1b2c3",
    "pr-12",
]
PAGE = 4  # 34 tags: 9 pages


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, dict[str, str]]]:
    binary = require_tool("docker-registry")
    with running_registry(binary, tmp_path_factory.mktemp("registry")) as reg:
        yield reg, push_images(reg.url, "acme/app", RELEASES + OTHERS)


@pytest.fixture(scope="module")
def proxy(registry) -> Iterator[Proxy]:
    reg, _ = registry
    with Proxy(reg.host, paginate=True).serving() as served:
        yield served


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


class Setup:
    """One app (its own name, so its own queue) polled in-process."""

    def __init__(
        self,
        tmp: Path,
        client: redis.Redis,
        image: str,
        policy: str = "",
        env: dict[str, str] | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.name = f"pl{uuid.uuid4().hex[:8]}"
        path = write_project(
            tmp,
            app=self.name,
            image=image,
            port=free_port(),
            extra=f'[poll]\npage_size = {PAGE}\ninterval = "1s"\njitter = "0s"\n{policy}',
        )
        self.config = load_config(path, env or {})
        self.client = client
        self.host = Host(load_host(path, env or {}), client=client)
        self.app = self.host.app(self.name)
        self.registry = registry or RegistryClient(
            username=self.config.registry.username,
            password=self.config.registry.password,
            max_retries=2,
            backoff=0.05,
        )
        self.poller = Poller(self.host, {self.name: self.registry}, requested_by="test poller")
        self.queue = DeployQueue(client, self.name)

    def poll(self):
        return self.poller.poll(self.app)

    def jobs(self) -> int:
        return jobs_created(self.client, self.name)

    def make_live(self, version: str, digest: str | None) -> None:
        """What a deploy leaves behind: the route file and the state beside it (the one source)."""
        for job in self.queue.waiting():
            self.queue.cancel(job.id, by="test")
        StateStore(self.config.state.dir, self.config.state.deployment_color_file).save(
            DeployState(Release(Color.BLUE, version, digest=digest))
        )
        write_atomic(self.config.caddy.route_file, "blue")


@pytest.fixture
def setups(client: redis.Redis, tmp_path: Path) -> Iterator[list[Setup]]:
    made: list[Setup] = []
    yield made
    for setup in made:
        setup.poller.shutdown()
        forget(client, setup.name)


def make(setups: list[Setup], tmp: Path, client: redis.Redis, image: str, policy: str = "", **kw) -> Setup:
    setup = Setup(tmp / f"p{len(setups)}", client, image, policy, **kw)
    setups.append(setup)
    return setup


# -- policies over paged tag lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, expected",
    [
        ('[policy]\nkind = "semver"', "1.4.10"),
        ('[policy]\nkind = "semver"\nrange = ">=1.2,<1.4"', "1.3.10"),  # numeric: 1.3.10 > v1.3.3
        ('[policy]\nkind = "semver"\nprereleases = true', "2.0.0-rc.1"),
        ('[policy]\nkind = "semver"\nrange = "~=1.1.0"\nexclude = ["1\\\\.1\\\\.10"]', "1.1.2"),
        (
            '[policy]\nkind = "regex"\ninclude = "main-(\\\\d+)-[0-9a-f]{7}"\nexclude = ["sha-.*", ".*\\\\.sig"]',
            "main-100-0a1b2c3",
        ),
    ],
)
def test_each_policy_picks_the_right_tag_across_pages(
    setups, tmp_path, client, registry, proxy, policy: str, expected: str
) -> None:
    _, digests = registry
    setup = make(setups, tmp_path, client, f"{proxy.host}/acme/app", policy)
    before = len([s for s in proxy.seen if "/tags/list" in s[1]])
    result = setup.poll()
    assert result.status == "enqueued", result
    assert (result.tag, result.digest) == (expected, digests[expected])
    pages = len([s for s in proxy.seen if "/tags/list" in s[1]]) - before
    assert pages == (len(RELEASES) + len(OTHERS) + PAGE - 1) // PAGE, "every page was read"
    job = setup.queue.get(result.job_id)
    assert (job.version, job.digest, job.source, job.requested_by) == (
        expected,
        digests[expected],
        "poll",
        "test poller",
    )


def test_enqueues_only_what_differs_from_live_and_last_request(
    setups, tmp_path, client, registry, proxy
) -> None:
    reg, _ = registry
    digests = push_images(reg.url, "acme/grow", ["1.4.2", "1.4.10"])  # a repository of its own: it grows
    setup = make(setups, tmp_path, client, f"{proxy.host}/acme/grow")
    assert setup.poll().status == "enqueued" and setup.jobs() == 1
    again = setup.poll()
    assert again.status == "requested" and setup.jobs() == 1  # same candidate: not again
    # The deploy happened: the candidate is live.
    setup.make_live("1.4.10", digests["1.4.10"])
    assert setup.poll().status == "up-to-date"
    # An operator rolled back to 1.4.2: the poller does not undo it (1.4.10 was already requested).
    setup.make_live("1.4.2", digests["1.4.2"])
    assert setup.poll().status == "requested" and setup.jobs() == 1
    # Something newer than any candidate is live (a manual deploy): no downgrade.
    setup.make_live("9.0.0", None)
    assert setup.poll().status == "up-to-date"
    # A new release appears: it is requested.
    setup.make_live("1.4.10", digests["1.4.10"])
    new = push_images(reg.url, "acme/grow", ["1.4.11"])["1.4.11"]
    result = setup.poll()
    assert (result.status, result.tag, result.digest) == ("enqueued", "1.4.11", new) and setup.jobs() == 2


def test_digest_policy_follows_a_mutable_tag(setups, tmp_path, client, registry, proxy) -> None:
    reg, _ = registry
    push_images(reg.url, "acme/moving", ["main"])
    setup = make(
        setups, tmp_path, client, f"{proxy.host}/acme/moving", '[policy]\nkind = "digest"\ntag = "main"'
    )
    first = setup.poll()
    assert first.status == "enqueued" and first.tag == "main"
    setup.make_live("main", first.digest)
    assert setup.poll().status == "up-to-date"
    assert setup.poll().status == "up-to-date"
    # The tag moves (a new build pushed as main): its new digest is requested, once.
    moved = rebuild(reg.url, "acme/moving", "main")
    assert moved != first.digest
    second = setup.poll()
    assert (second.status, second.tag, second.digest) == ("enqueued", "main", moved)
    assert setup.poll().status == "requested"
    assert setup.jobs() == 2


def rebuild(base: str, repo: str, tag: str) -> str:
    """Push a new image under an existing tag (new content, so a new digest)."""
    with httpx.Client(timeout=10) as http:
        config = upload_blob(
            http,
            base,
            repo,
            b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
        )
        layer = upload_blob(http, base, repo, uuid.uuid4().hex.encode())
        return put_manifest(
            http,
            base,
            repo,
            tag,
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
            },
        )


def test_two_instances_polling_make_one_job(tmp_path, client, registry, proxy, setups) -> None:
    """Two watcher instances (separate pollers and registry clients, one Redis) poll the same app
    at the same moments: the (app, tag, digest) claim lets one enqueue."""
    first = make(setups, tmp_path, client, f"{proxy.host}/acme/app")
    second = Poller(
        Host(first.host.config, client=client),
        {first.name: RegistryClient(max_retries=2, backoff=0.05)},
        requested_by="second instance",
    )
    results = []
    for _ in range(4):
        barrier = threading.Barrier(2)

        def run(poller: Poller) -> None:
            barrier.wait()
            results.append(poller.poll(first.app))

        threads = [threading.Thread(target=run, args=(p,)) for p in (first.poller, second)]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
    second.shutdown()
    statuses = [r.status for r in results]
    assert first.jobs() == 1, statuses
    assert statuses.count("enqueued") == 1 and set(statuses) <= {"enqueued", "duplicate", "requested"}, (
        statuses
    )


# -- auth, rate limits, failures -------------------------------------------------------------------


def test_token_challenge_flow_with_a_real_token_endpoint(tmp_path, client, setups) -> None:
    openssl = require_tool("openssl")
    binary = require_tool("docker-registry")
    (tmp_path / "tokens-work").mkdir()
    tokens = TokenService(openssl, tmp_path / "tokens-work", users={"deployer": "pat-123"}, public=set())
    with (
        tokens.serving(),
        running_registry(binary, tmp_path / "auth-registry", tokens.registry_auth()) as reg,
    ):
        push = tokens.mint(
            "pusher", [{"type": "repository", "name": "acme/private", "actions": ["pull", "push"]}]
        )
        digests = push_images(
            reg.url, "acme/private", ["1.0.0", "1.1.0"], headers={"Authorization": f"Bearer {push}"}
        )
        setup = make(
            setups,
            tmp_path,
            client,
            f"{reg.host}/acme/private",
            env={"REGISTRY_USERNAME": "deployer", "REGISTRY_PASSWORD": "pat-123"},
        )
        result = setup.poll()
        assert (result.status, result.tag, result.digest) == ("enqueued", "1.1.0", digests["1.1.0"]), result
        assert tokens.requests and all(r["user"] == "deployer" for r in tokens.requests)
        assert any("repository:acme/private:pull" in str(r["query"].get("scope")) for r in tokens.requests)
        # Anonymous: the token endpoint grants nothing and the poll fails without enqueueing.
        anonymous = make(setups, tmp_path, client, f"{reg.host}/acme/private")
        failed = anonymous.poll()
        assert failed.status == "failed" and "denied" in failed.reason and anonymous.jobs() == 0


def test_429_retry_after_is_honoured(tmp_path, client, registry, setups) -> None:
    reg, digests = registry
    with Proxy(reg.host, paginate=True, canned=[(429, {"Retry-After": "1"})]).serving() as limited:
        setup = make(setups, tmp_path, client, f"{limited.host}/acme/app")
        started = time.monotonic()
        result = setup.poll()
        took = time.monotonic() - started
    assert result.status == "enqueued" and result.digest == digests["1.4.10"]
    assert took >= 1.0, "waited as asked"
    assert limited.seen[0][1].startswith("/v2/acme/app/tags/list") and len(limited.seen) > 2


def test_registry_down_is_logged_retried_and_enqueues_nothing(tmp_path, client, caplog, setups) -> None:
    setup = make(setups, tmp_path, client, f"127.0.0.1:{free_port()}/acme/app")
    with caplog.at_level(logging.WARNING):
        result = setup.poll()
    assert result.status == "failed" and "unavailable after 3 attempts" in result.reason
    messages = [r.getMessage() for r in caplog.records]
    assert any("retry 1 of 2" in m for m in messages) and any("retry 2 of 2" in m for m in messages)
    assert any(m.startswith(f"poll {setup.name}: registry:") for m in messages)
    assert setup.jobs() == 0


def test_scheduler_retries_after_a_failing_poll(tmp_path, client, registry, setups) -> None:
    """The scheduled poll (interval 1 s) fails while the registry answers 503, and enqueues on a
    later interval once it recovers."""
    reg, digests = registry
    with Proxy(reg.host, paginate=True, canned=[(503, {})] * 6).serving() as flaky:
        setup = make(setups, tmp_path, client, f"{flaky.host}/acme/app")
        setup.poller.start()
        deadline = time.monotonic() + 20
        while setup.jobs() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        setup.poller.shutdown()
        assert not flaky.canned, "the 503s were served"
    assert setup.jobs() == 1
    assert setup.queue.waiting()[0].digest == digests["1.4.10"]
