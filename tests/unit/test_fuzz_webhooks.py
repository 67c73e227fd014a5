"""Fuzzing what arrives from the network: the payload parsers on any JSON, the signature and token
checks on any header, and the Flask receiver on any request. What must hold for every input:

- the parsers return pushes or the reason a delivery is ignored, and every pushed tag is valid;
- a signature verifies only if it is the HMAC of the body, compared in constant time;
- no request is answered 500, nor with the 503 that stands for an unexpected exception;
- nothing is enqueued (nor any delivery id claimed) unless the signature or token is right;
- a correctly signed body enqueues only a version that passes tag validation, or is refused.

The app is the real receiver and dispatch (tests/unit/test_webhook.py's fakes for Redis and the
queue) behind a registry that has every tag and a policy that takes every valid one, so that
watcher's own checks are all that stands between a payload and the queue.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from flask.testing import FlaskClient
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from werkzeug.test import TestResponse

from tests.unit.test_fuzz_config import mutated
from tests.unit.test_fuzz_values import tag_like
from tests.unit.test_github_payloads import DIGEST, distribution_envelope, github_package, harbor_push
from tests.unit.test_webhook import API_TOKEN, IMAGE, SECRET, TOKEN, FakeRedis, FakeSink, fake_host
from watcher import http, signing
from watcher.backends.registry import ImageRef
from watcher.config import WebhookSettings
from watcher.memory import LocalMemory
from watcher.policy import RegexPolicy
from watcher.triggers.payloads import (
    Ignored,
    Push,
    parse_github,
    parse_registry_notification,
    sign,
    verify_github_signature,
)
from watcher.triggers.server import create_app
from watcher.validation import validate_tag

MAX_BODY = 8 * 1024
PATHS = ["/hooks/github", "/hooks/registry", "/pause", "/resume", "/status", "/healthz", "/readyz", "/nope"]
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/vnd.docker.distribution.events.v1+json",
    "multipart/form-data; boundary=x",
]


# -- strategies --------------------------------------------------------------------------------------


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), tag_like()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=10,
    )


def nested(depth: int) -> Any:
    """A list `depth` deep, built without recursion: what `json.loads` makes of `[[[...]]]`."""
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def payloads(values: st.SearchStrategy[Any] = json_values()) -> st.SearchStrategy[Any]:
    """Real deliveries for the configured image with a random tag, as sent or with a few keys
    mangled; and any JSON."""

    def github(tag: str, event: str, action: str) -> dict[str, Any]:
        return github_package(action, tag, event=event, package_url=f"{IMAGE}:{tag}")

    templates = st.one_of(
        st.builds(
            github,
            tag_like(),
            st.sampled_from(["package", "registry_package"]),
            st.sampled_from(["published", "updated", "deleted"]),
        ),
        st.builds(
            lambda tag, action: distribution_envelope(tag=tag, action=action),
            tag_like(),
            st.sampled_from(["push", "pull"]),
        ),
        st.just(harbor_push()),
    )
    keys = st.sampled_from(["action", "package", "tag", "name", "events", "target", "package_url"]) | st.text(
        max_size=8
    )
    return st.one_of(templates, templates.flatmap(lambda payload: mutated(payload, values, keys)), values)


# Where a deep value lands in each kind of delivery: the fields the receiver reads or echoes.
DEEP_FIELDS = [
    (b"", b""),
    (b'{"action": ', b"}"),
    (b'{"events": [{"action": ', b"}]}"),
    (b'{"zen": "z", "hook_id": ', b"}"),
    (b'{"type": ', b', "event_data": {}}'),
]


def deep(field: tuple[bytes, bytes], depth: int) -> bytes:
    return field[0] + b"[" * depth + b"]" * depth + field[1]


def deep_bodies() -> st.SearchStrategy[bytes]:
    """JSON nested past what json and repr recurse through (up to 4000 deep: hypothesis raises the
    recursion limit to some 2000 frames above the test's)."""
    return st.builds(deep, st.sampled_from(DEEP_FIELDS), st.integers(1, 4000))


def bodies() -> st.SearchStrategy[bytes]:
    as_json = payloads().map(lambda payload: json.dumps(payload).encode())
    as_form = as_json.map(lambda body: urllib.parse.urlencode({"payload": body.decode()}).encode())
    junk = st.one_of(
        as_form,
        deep_bodies(),
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        st.just(b"x" * (MAX_BODY + 1)),
    )
    return st.one_of(as_json, junk)  # half of them JSON, so that half reach the parsers


HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)


def right_signatures(body: bytes) -> st.SearchStrategy[str]:
    """The HMAC of the body, in any hex case and with the padding the check allows."""
    right = sign(SECRET, body)
    return st.sampled_from([right, right.upper().replace("SHA256=", "sha256="), f" {right}\t"])


def signatures(body: bytes) -> st.SearchStrategy[str | None]:
    """Right, and every way of being wrong: another secret, another body, one digit off, cut
    short, another scheme, garbage, none."""
    right = sign(SECRET, body)
    hex_digits = st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)
    return st.one_of(
        right_signatures(body),
        st.just(sign(SECRET + "x", body)),
        st.just(sign(SECRET, body + b"\n")),
        st.just(right[:-1]),
        st.just(right[:-1] + ("0" if right[-1] != "0" else "1")),
        st.just(right.replace("sha256=", "sha1=")),
        hex_digits.map(lambda digits: "sha256=" + digits),
        HEADER_TEXT,
        st.none(),
    )


RIGHT_BEARERS = st.sampled_from([f"Bearer {TOKEN}", f"bearer  {TOKEN} "])
BEARERS = st.one_of(
    RIGHT_BEARERS,
    st.sampled_from([f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", TOKEN]),
    HEADER_TEXT,
    st.none(),
)


# -- the receiver --------------------------------------------------------------------------------


class EveryTag:
    """A registry that has whatever tag it is asked for."""

    def manifest_digest(self, ref: ImageRef, tag: str) -> str:
        return DIGEST

    def close(self) -> None:
        pass


class RecordingSink(FakeSink):
    """The queue, and who paused or resumed it."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []

    def pause(self, app: str, *, by: str, reason: str, until: float | None = None) -> dict[str, Any]:
        self.controls.append(f"pause {app}")
        return super().pause(app, by=by, reason=reason, until=until)

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        self.controls.append(f"resume {app}")
        return super().resume(app, by=by)


@dataclass
class Receiver:
    client: FlaskClient
    sink: RecordingSink
    redis: FakeRedis
    memory: LocalMemory  # the failed-authentication throttle and the nonces

    def post(self, path: str, body: bytes, headers: dict[str, str | None], content_type: str) -> TestResponse:
        """Exactly `body` (as `data`, an empty one would become an empty form's encoding)."""
        sent = {name: value for name, value in headers.items() if value is not None}
        return self.client.post(
            path,
            input_stream=io.BytesIO(body),
            content_length=len(body),
            headers=sent,
            content_type=content_type,
        )


@functools.cache
def _built(secret: str | None, token: str | None, api_token: str | None) -> Receiver:
    sink, store = RecordingSink(), FakeRedis()
    settings = WebhookSettings(max_body=MAX_BODY, secret=secret, registry_token=token, api_token=api_token)
    host = fake_host(store, sink, EveryTag(), policy=RegexPolicy(".*"))
    flask_app = create_app(
        host,
        settings,
        ready=lambda: None,
        status=lambda name: {"app": name},
        metrics=CollectorRegistry(),
    )
    return Receiver(flask_app.test_client(), sink, store, host.memory)  # type: ignore[arg-type]


def receiver(
    secret: str | None = SECRET, token: str | None = TOKEN, api_token: str | None = API_TOKEN
) -> Receiver:
    """A receiver with nothing queued, claimed or paused. Each is built once and emptied for the
    next example: building the Flask app (werkzeug compiles every route) is most of a request's cost."""
    hooks = _built(secret, token, api_token)
    hooks.sink.jobs.clear()
    hooks.sink.controls.clear()
    hooks.redis.data.clear()
    hooks.memory.entries.clear()
    return hooks


def assert_answered(response: TestResponse) -> None:
    """A JSON answer below 500: here Redis and the registry always answer, so a 503 could only be
    the one the receiver gives for an unexpected exception."""
    body = response.get_json(silent=True)
    assert response.status_code < 500, body
    assert isinstance(body, dict), response.data[:200]


def assert_nothing_done(hooks: Receiver) -> None:
    assert hooks.sink.jobs == [] and hooks.sink.controls == [] and hooks.redis.data == {}


# -- parsers -------------------------------------------------------------------------------------


def assert_pushes_valid(results: list[Push | Ignored]) -> None:
    for result in results:
        assert isinstance(result, (Push, Ignored))
        if isinstance(result, Push):
            assert result.tags and all(validate_tag(tag) == tag for tag in result.tags)
            assert ImageRef(result.registry, result.repository).repository == result.repository.lower()


@given(
    payloads(json_values() | st.integers(1, 990).map(nested)),
    st.sampled_from(["package", "registry_package"]),
)
def test_the_parsers_read_any_json_without_raising(payload: Any, event: str) -> None:
    """Any JSON: as deep as json.loads nests under the default recursion limit, too."""
    assert_pushes_valid([parse_github(event, payload)])
    assert_pushes_valid(parse_registry_notification(payload))


# -- signatures and tokens -------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=20), st.binary(max_size=100), st.data())
def test_a_signature_verifies_only_if_it_is_the_hmac_of_the_body(
    secret: str, body: bytes, data: st.DataObject
) -> None:
    header = data.draw(st.one_of(signatures(body), HEADER_TEXT.map(lambda text: "sha256=" + text)))
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    stripped = (header or "").strip()
    is_hmac = stripped.startswith("sha256=") and stripped[len("sha256=") :].lower() == expected
    assert verify_github_signature(secret, body, header) == is_hmac


def test_signatures_and_tokens_are_compared_in_constant_time() -> None:
    """Every check of a well-formed guess goes through hmac.compare_digest."""
    body = b"{}"
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        assert not verify_github_signature(SECRET, body, "sha256=" + "0" * 64)
        assert not http.bearer_ok(f"Bearer {TOKEN}x", TOKEN)
        stale = {**signing.sign(API_TOKEN, "POST", "/pause", body), signing.SIGNATURE: "sha256=" + "0" * 64}
        assert signing.refusal([API_TOKEN], stale, "POST", "/pause", body, time.time())
    assert compare.call_count == 3


# -- the receiver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str | None]
    content_type: str = "application/json"


def content_types() -> st.SearchStrategy[str]:
    return st.one_of(st.just("application/json"), st.sampled_from(CONTENT_TYPES) | HEADER_TEXT)


def github_deliveries(
    signing: Callable[[bytes], st.SearchStrategy[str | None]],
) -> st.SearchStrategy[Delivery]:
    events = st.sampled_from(["package", "registry_package", "ping", "push", "Package", ""])
    return bodies().flatmap(
        lambda body: st.builds(
            Delivery,
            st.just(body),
            st.fixed_dictionaries(
                {
                    "X-Hub-Signature-256": signing(body),
                    "X-GitHub-Event": events,
                    "X-GitHub-Delivery": st.uuids().map(str) | HEADER_TEXT,
                }
            ),
            content_types(),
        )
    )


def registry_deliveries(authorizations: st.SearchStrategy[str | None]) -> st.SearchStrategy[Delivery]:
    return st.builds(
        Delivery, bodies(), st.fixed_dictionaries({"Authorization": authorizations}), content_types()
    )


def signed(body: bytes, event: str = "package") -> Delivery:
    return Delivery(body, {"X-Hub-Signature-256": sign(SECRET, body), "X-GitHub-Event": event})


def assert_enqueued_only_valid_tags(hooks: Receiver, response: TestResponse) -> None:
    """202 with jobs of valid tags only; any other answer, no job, and a 200 or a 4xx."""
    if response.status_code == 202:
        assert hooks.sink.jobs and all(validate_tag(tag) == tag for tag in hooks.sink.jobs)
    else:
        assert hooks.sink.jobs == [] and (response.status_code == 200 or 400 <= response.status_code < 500)


@given(github_deliveries(signatures))
def test_github_refuses_every_signature_but_the_hmac_of_the_body(delivery: Delivery) -> None:
    hooks = receiver()
    response = hooks.post("/hooks/github", delivery.body, delivery.headers, delivery.content_type)
    assert_answered(response)
    if len(delivery.body) <= MAX_BODY and not verify_github_signature(
        SECRET, delivery.body, delivery.headers["X-Hub-Signature-256"]
    ):
        assert response.status_code == 401
        assert_nothing_done(hooks)


@given(github_deliveries(right_signatures))
@example(signed(deep(DEEP_FIELDS[0], 4000)))  # json.loads: RecursionError
def test_a_signed_github_delivery_enqueues_only_a_valid_tag(delivery: Delivery) -> None:
    hooks = receiver()
    response = hooks.post("/hooks/github", delivery.body, delivery.headers, delivery.content_type)
    assert_answered(response)
    assert_enqueued_only_valid_tags(hooks, response)


@given(registry_deliveries(BEARERS))
def test_registry_refuses_every_token_but_its_own(delivery: Delivery) -> None:
    hooks = receiver()
    response = hooks.post("/hooks/registry", delivery.body, delivery.headers, delivery.content_type)
    assert_answered(response)
    if len(delivery.body) <= MAX_BODY and not http.bearer_ok(delivery.headers["Authorization"], TOKEN):
        assert response.status_code == 401
        assert_nothing_done(hooks)


@given(registry_deliveries(RIGHT_BEARERS))
@example(
    Delivery(deep(DEEP_FIELDS[2], 4000), {"Authorization": f"Bearer {TOKEN}"})
)  # json.loads: RecursionError
def test_an_authorized_notification_enqueues_only_valid_tags(delivery: Delivery) -> None:
    hooks = receiver()
    response = hooks.post("/hooks/registry", delivery.body, delivery.headers, delivery.content_type)
    assert_answered(response)
    assert_enqueued_only_valid_tags(hooks, response)


@given(
    st.sampled_from(PATHS),
    st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    bodies(),
    st.dictionaries(
        st.sampled_from(
            [
                "X-Hub-Signature-256",
                "X-GitHub-Event",
                "X-GitHub-Delivery",
                "Authorization",
                "X-Watcher-Signature-256",
                "Content-Length",
            ]
        ),
        HEADER_TEXT,
        max_size=4,
    ),
    st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
    st.sampled_from([SECRET, None, ""]),
)
def test_no_request_with_nothing_right_does_anything(
    path: str, method: str, body: bytes, headers: dict[str, str], content_type: str, secret: str | None
) -> None:
    """Random headers (a wrong Content-Length among them) and no secret, or one nobody sent:
    refused, never a 500, nothing done."""
    hooks = receiver(secret=secret, token=secret, api_token=secret)
    response = hooks.client.open(path, method=method, data=body, headers=headers, content_type=content_type)
    assert_answered(response)
    assert_nothing_done(hooks)


@pytest.mark.parametrize("field", DEEP_FIELDS[1:4])
def test_json_nested_to_just_under_the_recursion_limit_is_refused(field: tuple[bytes, bytes]) -> None:
    """Outside hypothesis, at the default limit: a few depths under it, json.loads succeeds and
    jsonify, echoing a ping's `hook_id`, recursed past the limit (a 503). Where depends on the
    stack, so every depth near the limit is tried."""
    hooks, limit = receiver(), sys.getrecursionlimit()
    for depth in range(limit - 150, limit + 10):
        body = deep(field, depth)
        ping = hooks.post("/hooks/github", body, signed(body, "ping").headers, "application/json")
        notification = hooks.post(
            "/hooks/registry", body, {"Authorization": f"Bearer {TOKEN}"}, "application/json"
        )
        assert (ping.status_code, notification.status_code) == (400, 400), depth
    assert_nothing_done(hooks)


def control_bodies() -> st.SearchStrategy[bytes]:
    fields = st.dictionaries(
        st.sampled_from(["app", "reason", "by", "until"]),
        st.sampled_from(["demo", "other", "2h", "2000-01-01T00:00"]) | json_values(),
        max_size=4,
    )
    return st.one_of(
        (fields | payloads()).map(lambda payload: json.dumps(payload).encode()),
        deep_bodies(),
        st.binary(max_size=50),
    )


@given(st.sampled_from(["/pause", "/resume"]), control_bodies(), st.sampled_from(["bearer", "hmac", "wrong"]))
@example("/pause", deep(DEEP_FIELDS[0], 4000), "bearer")  # json.loads: RecursionError
def test_pause_and_resume_act_only_on_the_api_token(path: str, body: bytes, auth: str) -> None:
    """The API token as bearer or HMAC: the named app (or every app) paused, else a 4xx; a wrong
    token or a signature under another key: 401, nothing paused."""
    hooks = receiver()
    headers = {
        "bearer": {"Authorization": f"Bearer {API_TOKEN}"},
        "hmac": signing.sign(API_TOKEN, "POST", path, body),
        "wrong": {"Authorization": f"Bearer {API_TOKEN}x", **signing.sign(SECRET, "POST", path, body)},
    }
    response = hooks.post(path, body, headers[auth], "application/json")
    assert_answered(response)
    if auth == "wrong":
        assert response.status_code == 401
        assert_nothing_done(hooks)
    elif response.status_code == 200:
        assert hooks.sink.controls and all(control.endswith(" demo") for control in hooks.sink.controls)
    else:
        assert response.status_code in (400, 404, 413) and hooks.sink.controls == []
