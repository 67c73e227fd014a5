"""Issue 21's attacks on authentication, each replayed as it was reported, through Flask's test
client against the real app factory (`create_app`), over the real Redis (db 15, a prefix per
test): the open redirect after login, a captured signed control request replayed elsewhere or
later, a token guessed at full speed, and a dashboard session nobody could end."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.harness.triggers import write_project
from tests.unit.test_dashboard import TOKEN, Dashboard, dashboard
from watcher import signing
from watcher.config import WebhookSettings
from watcher.dashboard import auth
from watcher.http import Guard
from watcher.memory import AuthKeys, LocalMemory, RedisMemory
from watcher.triggers.payloads import sign as github_sign
from watcher.triggers.probes import create_metrics_app

PREVIOUS = "previous-api-token-" + "p" * 32  # the API token being rotated out
REGISTRY_TOKEN = "registry-token-" + "r" * 32


@pytest.fixture
def board(redis_url: str, app_name: str) -> Dashboard:
    return dashboard(redis_url, app_name)


# -- 1. the open redirect after login -------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example/x",  # the report: /login?next=/%09/evil.example/x
        "/\n/evil.example/x",
        "/\r\n/evil.example",
        "\t//evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "/ /evil.example",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_site(board: Dashboard, target: str) -> None:
    answer = board.client.post("/login", data={"token": TOKEN, "csrf": board.csrf(), "next": target})
    location = answer.headers["Location"]
    assert answer.status_code == 303 and location.startswith("/"), location
    assert not location.startswith(("//", "/\\")), location
    assert not any(c in location for c in "\t\r\n \\"), location


def test_the_report_replayed_through_the_query_string(board: Dashboard) -> None:
    """`/login?next=/%09/evil.example/x`, then a correct login: it answered `//evil.example/x`."""
    csrf = board.csrf()
    answer = board.client.post("/login?next=/%09/evil.example/x", data={"token": TOKEN, "csrf": csrf})
    assert answer.headers["Location"] == "/"


@given(st.text(st.characters(codec="utf-8"), max_size=40) | st.from_regex(r"[/\\\t\n\r %:@.a-z?#]{0,20}"))
def test_any_next_becomes_a_local_path_or_nothing(target: str) -> None:
    """What a browser could read as another host, or reinterpret, never leaves `_local`."""
    kept = auth._local(target)
    assert kept is None or (kept.startswith("/") and not kept.startswith(("//", "/\\"))), kept
    assert kept is None or not any(c in kept for c in "\t\r\n \\#"), kept


def test_a_local_target_keeps_its_path_and_query(board: Dashboard) -> None:
    target = f"/apps/{board.name}/jobs/3?tab=phases&x=a%20b"
    answer = board.client.post("/login", data={"token": TOKEN, "csrf": board.csrf(), "next": target})
    assert answer.headers["Location"] == target


# -- 2. a signed control request replayed elsewhere or later ---------------------------------------


def post(board: Dashboard, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return board.client.post(path, data=body, headers=headers, content_type="application/json")


def test_a_captured_signed_resume_neither_pauses_nor_promotes(board: Dashboard) -> None:
    """The report: a captured signed `{"app":"shop"}` to /resume also paused the app at /pause
    and was accepted by /promote. The signature now covers the path and a one-time nonce."""
    body = json.dumps({"app": board.name}).encode()
    captured = signing.sign(TOKEN, "POST", "/resume", body)
    assert post(board, "/resume", body, captured).status_code == 200
    for path in ("/pause", "/promote", "/abort"):
        answer = post(board, path, body, captured)
        assert answer.status_code == 401, (path, answer.get_json())
    assert board.suspension.paused() is None and board.queue.waiting() == []


def test_the_same_signed_request_is_accepted_once_by_every_process(redis_url: str, app_name: str) -> None:
    """Two receivers on one Redis (two `watcher serve`): the nonce one saw, the other refuses."""
    first, second = dashboard(redis_url, app_name), dashboard(redis_url, app_name)
    body = json.dumps({"app": app_name, "reason": "freeze"}).encode()
    signed = signing.sign(TOKEN, "POST", "/pause", body)
    assert post(first, "/pause", body, signed).status_code == 200
    for board in (first, second):
        answer = post(board, "/pause", body, signed)
        assert answer.status_code == 401 and "was used already" in answer.get_json()["reason"]


@pytest.mark.parametrize("skew", [-signing.TOLERANCE - 2, signing.TOLERANCE + 2])
def test_a_signature_outside_five_minutes_is_refused(board: Dashboard, skew: int) -> None:
    body = json.dumps({"app": board.name}).encode()
    late = signing.sign(TOKEN, "POST", "/pause", body, timestamp=int(time.time()) + skew)
    answer = post(board, "/pause", body, late)
    assert answer.status_code == 401 and "X-Watcher-Timestamp" in answer.get_json()["reason"]
    assert board.suspension.paused() is None


def test_a_signature_of_the_body_alone_is_refused(board: Dashboard) -> None:
    """The old scheme: HMAC of the body alone, no timestamp, no nonce."""
    body = json.dumps({"app": board.name}).encode()
    old = "sha256=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    assert post(board, "/pause", body, {signing.SIGNATURE: old}).status_code == 401
    assert board.suspension.paused() is None


# -- 3. the API token guessed at full speed --------------------------------------------------------


def test_thirty_wrong_tokens_each_to_status_and_pause_are_throttled(
    board: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    """The report: 30 wrong bearer tokens each to /status and /pause got a quick 401, no throttle."""
    caplog.set_level(logging.WARNING)
    codes = []
    for guess in range(30):
        wrong = {"Authorization": f"Bearer guess-{guess}"}
        codes.append(board.client.get("/status", headers=wrong).status_code)
        codes.append(post(board, "/pause", b"{}", wrong).status_code)
    assert codes[: Guard.MAX_FAILURES] == [401] * Guard.MAX_FAILURES
    assert set(codes[Guard.MAX_FAILURES :]) == {429}, codes
    refused = board.client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 429  # the right token too: a guess is not even checked
    assert 0 < int(refused.headers["Retry-After"]) <= Guard.FAILURE_WINDOW
    assert board.suspension.paused() is None
    said = [r.message for r in caplog.records if "failed authentications from 127.0.0.1" in r.message]
    assert len(said) == 1, said  # once per window
    assert "guess-" not in caplog.text and TOKEN not in caplog.text


def test_the_throttle_is_one_for_every_endpoint_and_every_process(redis_url: str, app_name: str) -> None:
    """Failures at /metrics, /hooks/registry, the control API and the dashboard's login, spread
    over two receivers on one Redis, add up; then each of them answers 429."""
    extra = {"registry_token": REGISTRY_TOKEN}
    one, two = (dashboard(redis_url, app_name, webhook=extra) for _ in range(2))
    wrong = {"Authorization": "Bearer nope"}
    guesses = [
        lambda: one.client.get("/metrics", headers=wrong),
        lambda: two.client.post("/hooks/registry", data=b"{}", headers=wrong),
        lambda: post(one, "/resume", b"{}", wrong),
        lambda: two.login("nope"),
    ]
    for n in range(Guard.MAX_FAILURES):
        assert guesses[n % len(guesses)]().status_code == 401, n
    for board in (one, two):
        assert board.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429
        answer = board.client.post(
            "/hooks/registry", data=b"{}", headers={"Authorization": f"Bearer {REGISTRY_TOKEN}"}
        )
        assert answer.status_code == 429 and answer.headers["Retry-After"]
        login = board.login()
        assert login.status_code == 429 and login.headers["Retry-After"]
    counter = redis.Redis.from_url(redis_url).ttl(AuthKeys(app_name).failed + "127.0.0.1")
    assert 0 < counter <= Guard.FAILURE_WINDOW  # it ends by itself


def test_metrics_on_an_address_of_its_own_is_throttled_too() -> None:
    """`[metrics] listen`: /metrics served by an app of its own, guarded and throttled the same."""
    settings = WebhookSettings(api_token=TOKEN)
    scraper = create_metrics_app(settings, Guard(LocalMemory()), CollectorRegistry()).test_client()
    for _ in range(Guard.MAX_FAILURES):
        assert scraper.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    answer = scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 429 and answer.is_json and int(answer.headers["Retry-After"]) > 0


def test_while_redis_is_down_the_reads_answer_and_the_throttle_holds_in_the_process() -> None:
    """/metrics must still say `watcher_redis_up 0`: the guard must not need Redis to let it."""
    down = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    guard = Guard(RedisMemory(down))
    scraper = create_metrics_app(WebhookSettings(api_token=TOKEN), guard, CollectorRegistry()).test_client()
    assert scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    for _ in range(Guard.MAX_FAILURES):
        assert scraper.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    assert scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429


def test_a_request_without_a_credential_is_not_a_guess(board: Dashboard) -> None:
    for _ in range(3 * Guard.MAX_FAILURES):
        assert board.client.get("/status").status_code == 401
    assert board.client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_redis_the_throttle_is_the_process_own(redis_url: str, app_name: str) -> None:
    board = dashboard(redis_url, app_name, local=True)
    for _ in range(Guard.MAX_FAILURES):
        assert board.client.get("/status", headers={"Authorization": "Bearer x"}).status_code == 401
    assert board.client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429
    assert not redis.Redis.from_url(redis_url).exists(AuthKeys(app_name).failed + "127.0.0.1")


@pytest.mark.parametrize(
    "name", ["WATCHER_API_TOKEN", "WEBHOOK_SECRET", "WEBHOOK_REGISTRY_TOKEN", "WATCHER_API_TOKEN_PREVIOUS"]
)
@pytest.mark.parametrize("way", ["env", "file"])
def test_a_short_secret_is_refused_at_start_up(tmp_path: Path, name: str, way: str) -> None:
    """The report: `WATCHER_API_TOKEN=x` was accepted with no warning (`Bearer x` -> 200)."""
    config = write_project(tmp_path, app="shop", image="127.0.0.1:5000/acme/shop", port=9)
    env = {"PATH": "/usr/bin:/bin", "WATCHER_CONFIG": str(config), "REDIS_URL": "redis://127.0.0.1:9/0"}
    env |= {"WATCHER_API_TOKEN": TOKEN} if name == "WATCHER_API_TOKEN_PREVIOUS" else {}
    if way == "file":
        (tmp_path / "secret").write_text("x\n")
        env[f"{name}_FILE"] = str(tmp_path / "secret")
    else:
        env[name] = "x"
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "serve", "--no-poll"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert (
        name in said
        and "at least 32" in said
        and "secrets.token_hex(32)" in said
        and "openssl rand -hex 32" in said
    )
    assert "Traceback" not in said


def test_the_previous_api_token_still_works_while_it_is_rotated(redis_url: str, app_name: str) -> None:
    board = dashboard(redis_url, app_name, webhook={"api_token_previous": PREVIOUS})
    for token in (TOKEN, PREVIOUS):
        assert board.client.get("/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        body = json.dumps({"app": app_name}).encode()
        assert post(board, "/resume", body, signing.sign(token, "POST", "/resume", body)).status_code == 200
    assert board.login(PREVIOUS).status_code == 303
    assert board.client.get("/status", headers={"Authorization": "Bearer " + "z" * 40}).status_code == 401


def test_github_deliveries_signed_with_the_previous_secret_still_count(redis_url: str, app_name: str) -> None:
    new, old = "new-webhook-secret-" + "n" * 32, "old-webhook-secret-" + "o" * 32
    board = dashboard(redis_url, app_name, webhook={"secret": new, "secret_previous": old})
    body = b'{"zen": "Rotate.", "hook_id": 1}'
    for key, code in ((new, 200), (old, 200), ("another-secret-" + "a" * 32, 401)):
        headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": github_sign(key, body)}
        answer = board.client.post(
            "/hooks/github", data=body, headers=headers, content_type="application/json"
        )
        assert answer.status_code == code, (key, answer.get_json())


# -- 8. dashboard sessions nobody could end ----------------------------------------------------------


def cookie(board: Dashboard) -> str:
    found = board.client.get_cookie("watcher_session")
    assert found is not None
    return found.value


def test_a_session_cookie_is_worthless_after_logout(redis_url: str, app_name: str) -> None:
    """Before, the session was the signed cookie alone: a copy of it kept working after logout,
    until the token changed. Now the cookie names a record the logout deletes."""
    board, thief = dashboard(redis_url, app_name), dashboard(redis_url, app_name)
    board.login()
    thief.client.set_cookie("watcher_session", cookie(board))
    assert thief.client.get("/").status_code == 200  # a copied cookie works, in another process too
    board.client.post("/logout", data={"csrf": board.csrf("/")})
    assert thief.client.get("/").status_code == 302


def test_a_session_outlives_the_restart_that_rotates_the_token(redis_url: str, app_name: str) -> None:
    before = dashboard(redis_url, app_name, token=PREVIOUS)
    before.login(PREVIOUS)
    rotating = dashboard(redis_url, app_name, webhook={"api_token_previous": PREVIOUS})
    rotated = dashboard(redis_url, app_name)  # the previous token dropped
    for board, code in ((rotating, 200), (rotated, 302)):
        board.client.set_cookie("watcher_session", cookie(before))
        assert board.client.get("/").status_code == code


def test_log_out_everywhere_ends_every_session_of_every_process(redis_url: str, app_name: str) -> None:
    laptop, phone, other = (dashboard(redis_url, app_name) for _ in range(3))
    for board in (laptop, phone, other):
        board.login()
    csrf = laptop.csrf("/")
    assert laptop.client.post("/logout/everywhere", data={}).status_code == 400  # CSRF, as every POST
    assert phone.client.get("/").status_code == 200
    answer = laptop.client.post("/logout/everywhere", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    for board in (laptop, phone, other):
        assert board.client.get("/").status_code == 302


def test_a_session_expires_by_itself(board: Dashboard, redis_url: str) -> None:
    board.login()
    client = redis.Redis.from_url(redis_url)
    [record] = list(client.scan_iter(AuthKeys(board.name).session + "*"))
    assert 12 * 3600 - 60 < client.ttl(record) <= 12 * 3600


def test_without_redis_sessions_live_in_the_process(redis_url: str, app_name: str) -> None:
    board = dashboard(redis_url, app_name, local=True)
    assert board.login().status_code == 303 and board.client.get("/").status_code == 200
    board.client.post("/logout/everywhere", data={"csrf": board.csrf("/")})
    assert board.client.get("/").status_code == 302
    assert not list(redis.Redis.from_url(redis_url).scan_iter(AuthKeys(app_name).session + "*"))
