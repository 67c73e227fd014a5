"""GET /metrics (watcher/metrics/): what each metric reads, scraped through the Flask test client
and parsed with prometheus_client's own parser. The job history and queue state live in the
shared Redis (db 15, a fresh app name per test); the receiver's other parts are
test_webhook.py's fakes.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.harness.metrics import Samples, named, parse, value
from tests.harness.stack import free_port
from tests.unit.test_config import MINIMAL, make_project, refused
from tests.unit.test_github_payloads import DIGEST as PUSHED
from tests.unit.test_webhook import (
    API_TOKEN,
    IMAGE,
    FakeRedis,
    FakeRegistry,
    FakeSink,
    Receiver,
    fake_host,
    github,
    host_config,
    receiver,
)
from watcher import activity
from watcher.backends.caddy import Front, probe
from watcher.backends.registry import ImageRef, RegistryClient, RegistryUnavailable
from watcher.config import Retention, load_host
from watcher.engine.state import Release
from watcher.errors import WatcherError
from watcher.host import App, Host
from watcher.metrics import registry_for
from watcher.platforms.color import Color
from watcher.policy import SemverPolicy
from watcher.queue import DeployLock, DeployQueue, Status, Suspension
from watcher.queue.connection import connect
from watcher.queue.job import Audit
from watcher.triggers.poller import Poller
from watcher.triggers.server import start

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DIGEST = "sha256:" + "ab" * 32


def scrape(hooks: Receiver) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    answer = hooks.client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    return parse(answer.get_data(as_text=True))


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


UP = Front("127.0.0.1:8080", "", "")


def owners(
    client: redis.Redis,
    names: list[str],
    live_of: Callable[[str], Release | None] = lambda app: None,
    proxy_of: Callable[[str], Front] = lambda app: UP,
) -> list[App]:
    """The apps a receiver's metrics read, over `client`, what is live coming from `live_of`,
    what Caddy is from `proxy_of`."""
    host = Host(host_config(), client=client)
    apps = []
    for name in names:
        state = SimpleNamespace(dir=Path(tempfile.mkdtemp(prefix="watcher-metrics-")))
        config = SimpleNamespace(name=name, image=IMAGE, freezes=(), state=state)
        app = App(host, config, policy=SemverPolicy())  # type: ignore[arg-type]
        app.live = lambda name=name: live_of(name)  # type: ignore[method-assign]
        app.proxy = lambda name=name: proxy_of(name)  # type: ignore[method-assign]
        apps.append(app)
    return apps


@pytest.fixture
def live() -> dict[str, Release | Exception | None]:
    return {}


@pytest.fixture
def hooks(
    client: redis.Redis, app_name: str, live: dict[str, Release | Exception | None]
) -> Iterator[Receiver]:
    def live_of(app: str) -> Release | None:
        found = live.get(app)
        if isinstance(found, Exception):
            raise found
        return found

    yield receiver(metrics=registry_for(owners(client, [app_name], live_of)))


def run_job(
    client: redis.Redis,
    app: str,
    version: str,
    status: Status,
    phases: dict[str, float],
    *,
    kind: str = "cli",
    receipt: dict | None = None,
) -> None:
    """Enqueue, take and finish one job as a worker does."""
    queue = DeployQueue(client, app)
    queue.enqueue(version, source=kind, requested_by="test")
    lock = DeployLock(client, app, ttl=30, purpose="test")
    assert lock.try_acquire()
    try:
        taken = queue.take(lock, worker="test")
        assert taken is not None
        time.sleep(0.05)
        queue.finish(
            lock,
            taken.job,
            status,
            reason="broke" if status is Status.FAILED else None,
            message="done",
            audit=Audit(phases, receipt=receipt),
        )
    finally:
        lock.release()


# -- access -----------------------------------------------------------------------------------


def test_metrics_needs_the_api_token_as_status_does(hooks: Receiver) -> None:
    assert hooks.client.get("/metrics").status_code == 401
    assert hooks.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert hooks.client.get("/metrics", headers=AUTH).status_code == 200


def test_metrics_are_open_when_status_auth_is_off() -> None:
    assert receiver(status_auth=False).client.get("/metrics").status_code == 200


# -- deploys from the job history ---------------------------------------------------------------


def test_finished_jobs_count_once_with_their_durations_and_phases(
    hooks: Receiver, client: redis.Redis, app_name: str
) -> None:
    before = time.time()
    run_job(client, app_name, "v1", Status.SUCCEEDED, {"pull": 0.2, "health": 3.0})
    run_job(client, app_name, "v2", Status.FAILED, {"pull": 0.3, "health": 40.0})
    samples = scrape(hooks)
    assert value(samples, "watcher_deploys_total", app=app_name, kind="deploy", outcome="succeeded") == 1
    assert value(samples, "watcher_deploys_total", app=app_name, kind="deploy", outcome="failed") == 1
    assert (
        value(samples, "watcher_deploy_duration_seconds_count", app=app_name, kind="deploy", outcome="failed")
        == 1
    )
    assert (
        value(
            samples, "watcher_deploy_duration_seconds_sum", app=app_name, kind="deploy", outcome="succeeded"
        )
        >= 0.05
    )
    assert value(samples, "watcher_deploy_phase_duration_seconds_count", app=app_name, phase="pull") == 2
    assert value(samples, "watcher_deploy_phase_duration_seconds_sum", app=app_name, phase="health") == 43.0
    assert (
        value(samples, "watcher_deploy_phase_duration_seconds_bucket", app=app_name, phase="health", le="5.0")
        == 1
    )
    assert value(samples, "watcher_last_success_timestamp_seconds", app=app_name) >= before

    again = scrape(hooks)  # a scrape adds nothing by itself
    assert value(again, "watcher_deploys_total", app=app_name, kind="deploy", outcome="succeeded") == 1
    run_job(client, app_name, "v1", Status.SUCCEEDED, {"pull": 0.1}, kind="rollback")
    after = scrape(hooks)
    assert value(after, "watcher_deploys_total", app=app_name, kind="rollback", outcome="succeeded") == 1
    assert value(after, "watcher_deploy_phase_duration_seconds_count", app=app_name, phase="pull") == 3


def test_receipts_count_the_requests_served_during_deploys(
    hooks: Receiver, client: redis.Redis, app_name: str
) -> None:
    receipt = {
        "moved_at": 10.0,
        "start": 0.0,
        "end": 20.0,
        "colors": {
            "blue": {"requests": 90, "failed": 0, "classes": {"2xx": 90}},
            "green": {
                "requests": 110,
                "failed": 6,
                "classes": {"2xx": 100, "4xx": 4, "5xx": 5, "upstream_error": 1},
            },
        },
    }
    run_job(client, app_name, "v1", Status.FAILED, {"verify": 1.4}, receipt=receipt)
    run_job(client, app_name, "v1", Status.SUCCEEDED, {"verify": 2.0}, receipt=receipt)
    samples = scrape(hooks)
    assert (
        value(samples, "watcher_deploy_requests_total", app=app_name, color="green", **{"class": "5xx"}) == 10
    )
    assert (
        value(samples, "watcher_deploy_requests_total", app=app_name, color="blue", **{"class": "2xx"}) == 180
    )
    assert (
        value(
            samples,
            "watcher_deploy_requests_total",
            app=app_name,
            color="green",
            **{"class": "upstream_error"},
        )
        == 2
    )


def test_an_already_live_request_is_a_noop_not_a_success(
    hooks: Receiver, client: redis.Redis, app_name: str
) -> None:
    DeployQueue(client, app_name).enqueue(
        "v1", source="poll", requested_by="test", live=Release(Color.BLUE, "v1")
    )
    samples = scrape(hooks)
    assert value(samples, "watcher_deploys_total", app=app_name, kind="deploy", outcome="noop") == 1
    assert value(samples, "watcher_deploys_total", app=app_name, kind="deploy", outcome="succeeded") == 0
    assert ("watcher_last_success_timestamp_seconds", frozenset({("app", app_name)})) not in samples


def test_counters_never_fall_when_the_history_is_trimmed(client: redis.Redis, app_name: str) -> None:
    hooks = receiver(metrics=registry_for(owners(client, [app_name])))
    trimmed = DeployQueue(client, app_name, retention=Retention(keep=2))
    for version in ("v1", "v2", "v3"):
        trimmed.enqueue(version, source="cli", requested_by="test")  # each supersedes the one before
    first = value(scrape(hooks), "watcher_deploys_total", app=app_name, kind="deploy", outcome="superseded")
    for version in ("v4", "v5", "v6", "v7"):
        trimmed.enqueue(version, source="cli", requested_by="test")
    later = value(scrape(hooks), "watcher_deploys_total", app=app_name, kind="deploy", outcome="superseded")
    assert first == 2 and later >= first + 2


def test_phases_are_kept_with_the_job(client: redis.Redis, app_name: str) -> None:
    run_job(client, app_name, "v1", Status.SUCCEEDED, {"switch": 0.01})
    assert DeployQueue(client, app_name).history(1)[0].phases == {"switch": 0.01}


# -- queue state and what is live ---------------------------------------------------------------


def test_queue_pause_and_lock_are_read_at_scrape_time(
    hooks: Receiver, client: redis.Redis, app_name: str
) -> None:
    idle = scrape(hooks)
    assert value(idle, "watcher_redis_up") == 1
    assert value(idle, "watcher_queue_length", app=app_name) == 0
    assert value(idle, "watcher_lock_held", app=app_name) == 0
    DeployQueue(client, app_name).enqueue("v1", source="cli", requested_by="test")
    Suspension(client, app_name).pause(by="test")
    lock = DeployLock(client, app_name, ttl=30, purpose="test")
    assert lock.try_acquire()
    try:
        busy = scrape(hooks)
    finally:
        lock.release()
    assert value(busy, "watcher_queue_length", app=app_name) == 1
    assert value(busy, "watcher_paused", app=app_name) == 1
    assert value(busy, "watcher_lock_held", app=app_name) == 1
    assert 0 <= value(busy, "watcher_lock_age_seconds", app=app_name) < 5
    assert value(busy, "watcher_job_running", app=app_name) == 0


def test_live_info_names_colour_version_and_digest(
    hooks: Receiver, app_name: str, live: dict[str, Release | Exception | None]
) -> None:
    assert not named(scrape(hooks), "watcher_live_info")
    live[app_name] = Release(Color.GREEN, "v2", digest=DIGEST)
    assert (
        value(scrape(hooks), "watcher_live_info", app=app_name, color="green", version="v2", digest=DIGEST)
        == 1
    )
    live[app_name] = WatcherError("the state file is unreadable")
    assert not named(scrape(hooks), "watcher_live_info")


def test_proxy_up_is_what_status_judges_of_caddy(client: redis.Redis, app_name: str, tmp_path: Path) -> None:
    """The real probe: a site taking connections is up (its admin socket gone or not); a port
    nothing listens at is down."""
    with socket.create_server(("127.0.0.1", 0)) as site:
        open_url = f"http://127.0.0.1:{site.getsockname()[1]}/version"
        sock = f"unix://{tmp_path / 'caddy-admin.sock'}"
        served, down = f"{app_name}-served", f"{app_name}-down"
        apps = owners(
            client,
            [served, down],
            proxy_of=lambda name: probe(
                sock, open_url if name == served else f"http://127.0.0.1:{free_port()}/"
            ),
        )
        samples = scrape(receiver(metrics=registry_for(apps)))
    assert value(samples, "watcher_proxy_up", app=served) == 1
    assert value(samples, "watcher_proxy_up", app=down) == 0


def test_redis_down_is_a_gauge_and_the_rest_is_still_served(app_name: str) -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True, retry=Retry(NoBackoff(), 0))
    hooks = receiver(metrics=registry_for(owners(down, [app_name])))
    samples = scrape(hooks)
    assert value(samples, "watcher_redis_up") == 0
    assert not named(samples, "watcher_queue_length")


# -- what the receiver process does itself -------------------------------------------------------


def test_webhook_deliveries_by_endpoint_and_outcome(hooks: Receiver) -> None:
    hooks.registry.tags["1.2.0"] = PUSHED  # the digest the event names
    before = scrape(hooks)
    assert github(hooks, "1.2.0").status_code == 202
    assert github(hooks, "1.3.0").status_code == 422  # not in the registry
    hooks.client.post("/hooks/github", data=b"{}", headers={"X-GitHub-Event": "package"})  # unsigned
    hooks.client.post("/hooks/registry", json={"events": []})  # no token
    after = scrape(hooks)

    def moved(endpoint: str, outcome: str) -> float:
        return value(after, "watcher_webhook_deliveries_total", endpoint=endpoint, outcome=outcome) - value(
            before, "watcher_webhook_deliveries_total", endpoint=endpoint, outcome=outcome
        )

    assert moved("github", "enqueued") == 1
    assert moved("github", "not-found") == 1
    assert moved("github", "refused") == 1
    assert moved("registry", "refused") == 1
    assert all(
        set(labels) == {"endpoint", "outcome"} for labels in named(after, "watcher_webhook_deliveries_total")
    )


def test_registry_attempts_and_429s_are_counted_per_host(hooks: Receiver) -> None:
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"tags": ["v1"]})]
    )
    registry = RegistryClient(
        transport=httpx.MockTransport(lambda request: next(answers)),
        backoff=0,
        on_attempt=activity.registry_request,
    )
    host = {"registry": "127.0.0.1:5000"}
    before = scrape(hooks)
    assert registry.list_tags(ImageRef.parse("127.0.0.1:5000/acme/app")) == ["v1"]
    after = scrape(hooks)
    assert (
        value(after, "watcher_registry_rate_limited_total", **host)
        - value(before, "watcher_registry_rate_limited_total", **host)
        == 1
    )
    assert (
        value(after, "watcher_registry_request_duration_seconds_count", **host)
        - value(before, "watcher_registry_request_duration_seconds_count", **host)
        == 2
    )


def test_polls_and_their_failures_are_counted(hooks: Receiver) -> None:
    class Down:
        def list_tags(self, ref: ImageRef, *, page_size: int | None = None) -> list[str]:
            raise RegistryUnavailable("the registry is down")

    host = fake_host(FakeRedis(), FakeSink(), FakeRegistry(), names=("polled",))
    app = host.apps["polled"]
    poller = Poller(host, {"polled": Down()})  # type: ignore[dict-item]
    before = scrape(hooks)
    poller.poll(app)
    poller.poll(app, dry_run=True)  # check-tags: a look, not a poll
    after = scrape(hooks)
    for name in ("watcher_poll_runs_total", "watcher_poll_errors_total"):
        assert value(after, name, app="polled") - value(before, name, app="polled") == 1


# -- [metrics] listen: an address of its own ----------------------------------------------------


def metrics_config(tmp_path: Path, listen: str, webhook: str = "127.0.0.1:9000") -> Path:
    return make_project(
        tmp_path, MINIMAL + f'\n[webhook]\nlisten = "{webhook}"\n\n[metrics]\nlisten = "{listen}"\n'
    )


def test_metrics_listen_is_validated_like_the_receivers(tmp_path: Path) -> None:
    assert (
        load_host(metrics_config(tmp_path, "127.0.0.1:9100"), {}).webhook.metrics_listen == "127.0.0.1:9100"
    )
    assert (
        load_host(make_project(tmp_path), {"METRICS_LISTEN": "0.0.0.0:9100"}).webhook.metrics_listen
        == "0.0.0.0:9100"
    )
    assert load_host(make_project(tmp_path), {}).webhook.metrics_listen is None
    assert "metrics.listen" in refused(metrics_config(tmp_path, "127.0.0.1:99999"))
    assert "the receiver's address already" in refused(metrics_config(tmp_path, "127.0.0.1:9000"))


def test_with_its_own_address_metrics_are_served_there_only(tmp_path: Path, redis_url: str) -> None:
    receiver_port, metrics_port = free_port(), free_port()
    path = metrics_config(tmp_path, f"127.0.0.1:{metrics_port}", f"127.0.0.1:{receiver_port}")
    host = load_host(path, {"WATCHER_API_TOKEN": API_TOKEN})
    service = start(host, lambda config: {}, client=connect(redis_url), poll=False)
    try:
        answer = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", headers=AUTH, timeout=10)
        assert answer.status_code == 200
        assert named(parse(answer.text), "watcher_queue_length") == [{"app": "shop"}]
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 401
        assert (
            httpx.get(f"http://127.0.0.1:{receiver_port}/metrics", headers=AUTH, timeout=10).status_code
            == 404
        )
    finally:
        service.stop()


def test_a_redis_that_lost_the_queue_is_counted_with_when(
    hooks: Receiver, client: redis.Redis, app_name: str
) -> None:
    before = scrape(hooks)  # the first look sets the app's marker
    assert value(before, "watcher_redis_data_lost_total", app=app_name) == 0
    assert not named(before, "watcher_redis_data_lost_timestamp_seconds")
    for found in client.scan_iter(f"watcher:{app_name}:*"):  # FLUSHALL, for this app's keys
        client.delete(found)
    after = scrape(hooks)
    assert value(after, "watcher_redis_data_lost_total", app=app_name) == 1
    assert abs(value(after, "watcher_redis_data_lost_timestamp_seconds", app=app_name) - time.time()) < 30
