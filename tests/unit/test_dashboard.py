"""The dashboard through Flask's test client, over the real Redis queue (db 15, a fresh app
name per test) and a registry that holds the tags a test gives it: who may see and do what
(login, wrong token, the throttle, CSRF, cookie flags, status_auth = false), and that each
action does what the CLI does, to the same queue."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from tests.unit.test_webhook import host_config
from watcher.backends.access_log import Served
from watcher.backends.registry import ImageRef, NotFound
from watcher.config import RedisSettings, WebhookSettings
from watcher.engine.receipt import build
from watcher.freeze import FreezeWindow, window
from watcher.host import App, Host
from watcher.http import Guard
from watcher.memory import LocalMemory
from watcher.policy import SemverPolicy
from watcher.queue import DeployLock, DeployQueue, Status, Suspension
from watcher.queue.job import Audit
from watcher.triggers.server import create_app

TOKEN = "dashboard-test-token-" + "d" * 32
DIGEST = "sha256:" + "ab" * 32
IMAGE = "127.0.0.1:5000/acme/app"


@dataclass
class FakeRegistry:
    tags: dict[str, str] = field(
        default_factory=lambda: {"1.0.0": DIGEST, "1.1.0": DIGEST, "nightly": DIGEST}
    )

    def list_tags(self, ref: ImageRef, *, page_size: int | None = None) -> list[str]:
        return list(self.tags)

    def manifest_digest(self, ref: ImageRef, tag: str) -> str:
        if tag not in self.tags:
            raise NotFound(f"manifest unknown: {ref}:{tag}")
        return self.tags[tag]

    def close(self) -> None:
        pass


def fake_status(name: str) -> dict[str, Any]:
    """`status --json`'s shape: live on blue, 1.0.0 retained on green as the rollback target."""
    container = {
        "name": f"{name}-web-blue-1",
        "service": "web",
        "state": "running",
        "health": "healthy",
        "version": "1.1.0",
        "image": f"{IMAGE}:1.1.0",
        "id": "0123456789ab",
        "restarts": 0,
    }
    return {
        "app": name,
        "live_color": "blue",
        "live_version": "1.1.0",
        "live_since": "2026-01-01T00:00:00+00:00",
        "live_digest": DIGEST,
        "live_health": "healthy",
        "previous_color": "green",
        "previous_version": "1.0.0",
        "rollback": {"version": "1.0.0", "color": "green", "way": "instant", "digest": None, "image": None},
        "rollback_description": "1.0.0 (instant: retained on green)",
        "route": "blue",
        "colors": {
            "blue": {"role": "live", "version": "1.1.0", "health": "healthy", "containers": [container]},
            "green": {"role": "rollback target", "version": "1.0.0", "health": "stopped", "containers": []},
        },
        "warnings": [],
    }


@dataclass
class Dashboard:
    client: FlaskClient
    queue: DeployQueue
    suspension: Suspension
    name: str

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    def login(self, token: str = TOKEN) -> Any:
        return self.client.post("/login", data={"token": token, "csrf": self.csrf()})


def dashboard(
    redis_url: str,
    name: str,
    *,
    token: str | None = TOKEN,
    status_auth: bool = True,
    public_url: str | None = None,
    freezes: tuple[FreezeWindow, ...] = (),
    status: Callable[[str], dict[str, Any]] = fake_status,
    webhook: dict[str, Any] | None = None,
    local: bool = False,
) -> Dashboard:
    """The receiver's app over Redis (`local`: the throttle, nonces and sessions in the process,
    as without Redis); `webhook`: more WebhookSettings (other secrets)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # The app's name as the installation's prefix: its sessions and its failed logins (counted per
    # address, 127.0.0.1 for every test) are its own, and the app_name fixture removes them.
    host = Host(replace(host_config(), redis=RedisSettings(prefix=name)), client=client, exists_wait=0)
    host.notifier = None
    if local:
        host.memory = LocalMemory()
    state = SimpleNamespace(dir=Path(tempfile.mkdtemp(prefix="watcher-dashboard-")))
    config = SimpleNamespace(
        name=name, image=IMAGE, poll=SimpleNamespace(page_size=None), freezes=freezes, state=state
    )
    owner = App(host, config, policy=SemverPolicy(), registry=FakeRegistry())  # type: ignore[arg-type]
    owner.live = lambda: None  # type: ignore[method-assign]  # nothing serves
    host.apps[name] = owner
    settings = WebhookSettings(api_token=token, status_auth=status_auth, **(webhook or {}))
    app = create_app(
        host,
        settings,
        ready=lambda: None,
        status=status,
        metrics=CollectorRegistry(),
        public_url=public_url,
    )
    return Dashboard(app.test_client(), owner.queue, owner.suspension, name)


@pytest.fixture
def board(redis_url: str, app_name: str) -> Iterator[Dashboard]:
    yield dashboard(redis_url, app_name)


def test_every_page_needs_a_login(board: Dashboard) -> None:
    for path in ("/", f"/apps/{board.name}", f"/apps/{board.name}/jobs/1"):
        answer = board.client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next="), path
    assert board.client.get(f"/apps/{board.name}/live.json").status_code == 401
    assert board.client.get("/dashboard/static/dashboard.css").status_code == 200


def test_a_wrong_token_is_refused_and_the_right_one_lets_in(board: Dashboard) -> None:
    wrong = board.login("not-the-token")
    assert wrong.status_code == 401 and "Wrong token" in wrong.get_data(as_text=True)
    assert board.client.get("/").status_code == 302
    right = board.login()
    assert right.status_code == 303 and right.headers["Location"] == "/"
    page = board.client.get("/").get_data(as_text=True)
    assert board.name in page and "1.1.0" in page and "healthy" in page


def test_logins_are_logged_without_the_token(board: Dashboard, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    board.login("a-guess-of-the-token")
    board.login()
    assert "failed login from 127.0.0.1" in caplog.text and "login from 127.0.0.1" in caplog.text
    assert "a-guess-of-the-token" not in caplog.text and TOKEN not in caplog.text


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(board: Dashboard) -> None:
    target = f"/apps/{board.name}"
    csrf = board.csrf()
    assert (
        board.client.post("/login", data={"token": TOKEN, "csrf": csrf, "next": target}).headers["Location"]
        == target
    )
    board.client.post("/logout", data={"csrf": board.csrf("/")})
    evil = board.client.post(
        "/login", data={"token": TOKEN, "csrf": board.csrf(), "next": "//evil.example/x"}
    )
    assert evil.headers["Location"] == "/"


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(board: Dashboard) -> None:
    cookie = board.login().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    over_https = board.client.post(
        "/login", base_url="https://localhost", data={"token": TOKEN, "csrf": board.csrf()}
    )
    assert "Secure" in over_https.headers["Set-Cookie"], over_https.headers


def test_an_https_public_url_makes_the_cookie_secure_behind_a_tls_proxy(
    redis_url: str, app_name: str
) -> None:
    board = dashboard(redis_url, app_name, public_url="https://deploy.example.com")
    assert "Secure" in board.login().headers["Set-Cookie"]  # the request itself was plain http


def test_logout_ends_the_session(board: Dashboard) -> None:
    board.login()
    assert board.client.post("/logout", data={"csrf": board.csrf("/")}).status_code == 303
    assert board.client.get("/").status_code == 302


def test_repeated_failed_logins_are_slowed_down(board: Dashboard) -> None:
    for _ in range(Guard.MAX_FAILURES):
        assert board.login("guess").status_code == 401
    assert board.login().status_code == 429  # even the right token waits out the window


def test_without_an_api_token_every_login_is_refused(redis_url: str, app_name: str) -> None:
    board = dashboard(redis_url, app_name, token=None)
    page = board.client.get("/login").get_data(as_text=True)
    assert "No API token is configured" in page and 'name="token"' not in page
    assert board.client.post("/login", data={"token": "", "csrf": "x"}).status_code in (400, 403)
    assert board.client.get("/").status_code == 302


@pytest.mark.parametrize("csrf, code", [(None, 400), ("forged", 403)])
def test_an_action_without_the_right_csrf_token_does_nothing(
    board: Dashboard, csrf: str | None, code: int
) -> None:
    board.login()
    form = {"version": "1.1.0"} | ({"csrf": csrf} if csrf else {})
    assert board.client.post(f"/apps/{board.name}/deploy", data=form).status_code == code
    assert board.client.post(f"/apps/{board.name}/pause", data={"reason": "x"} | form).status_code == code
    assert board.queue.waiting() == [] and board.suspension.paused() is None
    assert board.client.post("/login", data={"token": TOKEN} | form).status_code == code


def test_an_action_needs_a_login(board: Dashboard) -> None:
    answer = board.client.post(f"/apps/{board.name}/pause", data={"csrf": board.csrf()})
    assert answer.status_code == 401 and board.suspension.paused() is None


def test_status_auth_false_opens_the_pages_but_not_the_actions(redis_url: str, app_name: str) -> None:
    board = dashboard(redis_url, app_name, status_auth=False)
    assert board.client.get("/").status_code == 200
    assert board.client.get(f"/apps/{board.name}").status_code == 200
    assert board.client.get(f"/apps/{board.name}/live.json").status_code == 200
    assert board.client.post(f"/apps/{board.name}/pause", data={"csrf": board.csrf()}).status_code == 401
    assert board.suspension.paused() is None


def test_deploy_queues_a_dashboard_job_of_a_tag_the_policy_lists(board: Dashboard) -> None:
    board.login()
    page = board.client.get(f"/apps/{board.name}").get_data(as_text=True)
    assert '<option value="1.1.0">' in page and '<option value="1.0.0">' in page and "nightly" not in page
    answer = board.client.post(
        f"/apps/{board.name}/deploy", data={"version": "1.1.0", "csrf": board.csrf("/")}
    )
    assert answer.status_code == 303 and answer.headers["Location"] == f"/apps/{board.name}/jobs/1"
    [job] = board.queue.waiting()
    assert (job.version, job.source, job.digest) == ("1.1.0", "dashboard", DIGEST)
    assert job.requested_by == "dashboard (127.0.0.1)"
    job_page = board.client.get(answer.headers["Location"]).get_data(as_text=True)
    for name in job.to_dict():
        assert f">{name}</dt>" in job_page, name  # every field of the record
    assert board.client.get(f"/apps/{board.name}/jobs/1.json").get_json()["version"] == "1.1.0"


def test_deploy_refuses_a_tag_the_policy_or_the_registry_does_not_have(board: Dashboard) -> None:
    board.login()
    for version, why in (("nightly", "not a semantic version"), ("9.9.9", "does not exist in the registry")):
        answer = board.client.post(
            f"/apps/{board.name}/deploy",
            data={"version": version, "csrf": board.csrf("/")},
            follow_redirects=True,
        )
        assert why in answer.get_data(as_text=True), version
    assert board.queue.waiting() == []


def test_rollback_queues_a_rollback_job_of_the_target_shown(board: Dashboard) -> None:
    board.login()
    stale = board.client.post(
        f"/apps/{board.name}/rollback",
        data={"version": "0.9.0", "csrf": board.csrf("/")},
        follow_redirects=True,
    )
    assert "rollback target is now 1.0.0" in stale.get_data(as_text=True) and board.queue.waiting() == []
    board.client.post(f"/apps/{board.name}/rollback", data={"version": "1.0.0", "csrf": board.csrf("/")})
    [job] = board.queue.waiting()
    assert (job.version, job.source, job.kind) == ("1.0.0", "rollback", "rollback")


def faulty_status(name: str) -> dict[str, Any]:
    """Caddy down, the live release left serving unverified, the rollback target unverified too."""
    data = fake_status(name)
    data["live_how"] = "left serving unverified"
    data["proxy"] = {
        "up": False,
        "site": "127.0.0.1:8080",
        "site_problem": "Connection refused",
        "admin": False,
        "admin_problem": "Caddy admin API at unix:///run/caddy-admin.sock did not answer",
    }
    data["rollback"] = {**data["rollback"], "how": "left serving unverified", "unverified": True}
    data["rollback_description"] = (
        "1.0.0 (instant: retained on green; unverified: it never passed verification)"
    )
    data["warnings"] = ["Caddy is down: nothing takes connections at 127.0.0.1:8080 (Connection refused)"]
    return data


def test_caddy_down_and_unverified_releases_are_shown_on_the_overview_and_the_app_page(
    redis_url: str, app_name: str
) -> None:
    board = dashboard(redis_url, app_name, status=faulty_status)
    board.login()
    for path in ("/", f"/apps/{app_name}"):
        page = board.client.get(path).get_data(as_text=True)
        assert 'data-proxy="down"' in page and "nothing is served" in page, path
        assert 'data-state="left serving unverified">left serving unverified<' in page, path
        assert "data-rollback-unverified" in page and "Caddy is down" in page, path
    assert "it never passed verification" in board.client.get(f"/apps/{app_name}").get_data(as_text=True)
    healthy = dashboard(redis_url, app_name)
    healthy.login()
    page = healthy.client.get("/").get_data(as_text=True)
    assert "data-proxy" not in page and "unverified" not in page  # older status data: nothing claimed


def test_pause_resume_and_cancel_do_what_the_cli_does(board: Dashboard) -> None:
    board.login()
    board.client.post(f"/apps/{board.name}/pause", data={"reason": "release freeze", "csrf": board.csrf("/")})
    paused = board.suspension.paused()
    assert paused and paused["reason"] == "release freeze" and paused["by"] == "dashboard (127.0.0.1)"
    assert "release freeze" in board.client.get("/").get_data(as_text=True)
    board.client.post(f"/apps/{board.name}/resume", data={"csrf": board.csrf("/")})
    assert board.suspension.paused() is None

    job = board.queue.enqueue("1.1.0", source="cli", requested_by="test").job
    board.client.post(f"/apps/{board.name}/jobs/{job.id}/cancel", data={"csrf": board.csrf("/")})
    cancelled = board.queue.get(job.id)
    assert cancelled and cancelled.status is Status.CANCELLED and board.queue.waiting() == []
    again = board.client.post(
        f"/apps/{board.name}/jobs/{job.id}/cancel", data={"csrf": board.csrf("/")}, follow_redirects=True
    )
    assert "already ended" in again.get_data(as_text=True)


def test_live_json_reports_the_queue(board: Dashboard) -> None:
    board.login()
    board.queue.enqueue("1.1.0", source="cli", requested_by="test")
    data = board.client.get(f"/apps/{board.name}/live.json").get_json()
    assert (
        [j["version"] for j in data["waiting"]] == ["1.1.0"]
        and data["running"] == []
        and data["paused"] is None
    )


def test_an_unknown_app_or_job_is_a_404_page(board: Dashboard) -> None:
    board.login()
    assert board.client.get("/apps/nosuchapp").status_code == 404
    missing = board.client.get(f"/apps/{board.name}/jobs/999")
    assert missing.status_code == 404 and "has no job 999" in missing.get_data(as_text=True)


def test_a_jobs_page_charts_its_traffic_receipt(board: Dashboard) -> None:
    moved = 1000.0
    served = [Served(moved - 5 + i * 0.1, "blue", 200, 200, 0.01, False) for i in range(50)]
    served += [
        Served(moved + i * 0.1, "green", 500 if i % 10 == 0 else 200, 200, 0.02, False) for i in range(50)
    ]
    receipt = build("abort", served, moved, moved - 10, moved + 5, "/run/watcher/access.log").to_dict()
    board.queue.enqueue("1.1.0", source="cli", requested_by="test")
    lock = DeployLock(board.queue.client, board.name, ttl=30, purpose="test", prefix=board.name)
    assert lock.try_acquire()
    taken = board.queue.take(lock, worker="test")
    board.queue.finish(
        lock, taken.job, Status.FAILED, reason="bake: green answered 5 of 50", audit=Audit(receipt=receipt)
    )
    lock.release()
    board.login()
    page = board.client.get(f"/apps/{board.name}/jobs/{taken.job.id}").get_data(as_text=True)
    assert "served 100 requests during the abort, 5 failed" in page
    assert (
        page.count('class="c-green"') == 5 and page.count('class="failed"') == 5 and 'class="moved"' in page
    )
    assert "t=0s green: 10 requests, 1 failed" in page


def test_a_freeze_and_a_timed_pause_are_shown_and_a_deploy_says_it_waits(
    redis_url: str, app_name: str
) -> None:
    """A window in force now (it began two hours ago and ends in two): the badge, when it ends,
    the waiting job held; a rollback is not held. A pause with `until` shows its end."""
    now = datetime.now(UTC)
    began, ends = now - timedelta(hours=2), now + timedelta(hours=2)
    freeze = window(
        f"{began.minute} {began.hour} * * *", f"{ends.minute} {ends.hour} * * *", reason="release"
    )
    board = dashboard(redis_url, app_name, freezes=(freeze,))
    board.login()
    until = ends.replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M UTC")
    answer = board.client.post(
        f"/apps/{board.name}/deploy",
        data={"version": "1.1.0", "csrf": board.csrf("/")},
        follow_redirects=True,
    )
    assert f"it waits: {board.name} is frozen until {until}" in answer.get_data(as_text=True)
    page = board.client.get(f"/apps/{board.name}").get_data(as_text=True)
    assert (
        'data-state="frozen"' in page
        and f"until <strong>{until}</strong>" in page
        and "<q>release</q>" in page
    )
    assert f"held by freeze until {until}" in page
    assert "is-paused" in board.client.get("/").get_data(as_text=True)
    live = board.client.get(f"/apps/{board.name}/live.json").get_json()
    assert live["frozen"]["until"] == ends.replace(second=0, microsecond=0).isoformat()
    board.client.post(f"/apps/{board.name}/rollback", data={"version": "1.0.0", "csrf": board.csrf("/")})
    assert "held by freeze" not in board.client.get(f"/apps/{board.name}").get_data(as_text=True)

    refused = board.client.post(
        f"/apps/{board.name}/pause",
        data={"until": "yesterday", "csrf": board.csrf("/")},
        follow_redirects=True,
    )
    assert "until: expected a span like 30m or 2h" in refused.get_data(as_text=True)
    assert board.suspension.paused() is None
    board.client.post(
        f"/apps/{board.name}/pause", data={"until": "2099-01-01T08:00", "csrf": board.csrf("/")}
    )
    assert board.suspension.paused()["until"] == "2099-01-01T08:00:00+00:00"  # type: ignore[index]
    assert "until <strong>2099-01-01 08:00 UTC</strong>" in board.client.get("/").get_data(as_text=True)
    board.suspension.resume()
