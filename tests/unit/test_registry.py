"""RegistryClient and ImageRef against httpx.MockTransport: parsing, auth, paging, retries."""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from collections.abc import Callable

import httpx
import pytest

import watcher.backends.registry as registry_module
from watcher.backends.registry import (
    MANIFEST_ACCEPT,
    AuthError,
    ImageRef,
    NotFound,
    RateLimited,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)

REF = ImageRef("ghcr.io", "owner/app")
DIGEST = "sha256:" + "ab" * 32
CHALLENGE = 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:owner/app:pull"'

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(registry_module, "sleep", recorded.append)
    return recorded


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(registry_module, "monotonic", lambda: now[0])
    return now


class Recorder:
    """A MockTransport that records every request and answers from a handler."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, **kwargs: object) -> RegistryClient:
        return RegistryClient(transport=self.transport, **kwargs)  # type: ignore[arg-type]

    def paths(self, host: str = "ghcr.io") -> list[str]:
        return [r.url.path for r in self.requests if r.url.host == host]


def token_registry(token_body: dict[str, object], tags: list[str] | None = None) -> Handler:
    """GHCR-like: 401 + Bearer challenge unless a token issued by /token is presented."""
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token = f"tok{len(issued) + 1}"
            issued.append(token)
            return httpx.Response(
                200, json={key: (token if value == "TOKEN" else value) for key, value in token_body.items()}
            )
        if request.headers.get("Authorization") not in {f"Bearer {t}" for t in issued}:
            return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})
        if request.url.path.endswith("/tags/list"):
            return httpx.Response(200, json={"name": "owner/app", "tags": tags or ["1.0"]})
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    return handler


# --- ImageRef ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "registry", "repository", "base_url"),
    [
        ("ghcr.io/Owner/Name", "ghcr.io", "owner/name", "https://ghcr.io"),
        ("ghcr.io/owner/name:1.2.3", "ghcr.io", "owner/name", "https://ghcr.io"),
        ("GHCR.io/owner/sub/name", "ghcr.io", "owner/sub/name", "https://ghcr.io"),
        ("nginx", "registry-1.docker.io", "library/nginx", "https://registry-1.docker.io"),
        ("nginx:1.25-alpine", "registry-1.docker.io", "library/nginx", "https://registry-1.docker.io"),
        ("docker.io/nginx", "registry-1.docker.io", "library/nginx", "https://registry-1.docker.io"),
        (
            "index.docker.io/library/redis",
            "registry-1.docker.io",
            "library/redis",
            "https://registry-1.docker.io",
        ),
        ("user/app", "registry-1.docker.io", "user/app", "https://registry-1.docker.io"),
        ("localhost:5000/x", "localhost:5000", "x", "http://localhost:5000"),
        ("localhost/team/x", "localhost", "team/x", "http://localhost"),
        ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", "http://127.0.0.1:5000"),
        ("127.8.9.10:5000/a", "127.8.9.10:5000", "a", "http://127.8.9.10:5000"),
        ("[::1]:5000/a", "[::1]:5000", "a", "http://[::1]:5000"),
        (
            "registry.example.com:5000/a__b/c-d.e",
            "registry.example.com:5000",
            "a__b/c-d.e",
            "https://registry.example.com:5000",
        ),
        ("localhost.example.com/a", "localhost.example.com", "a", "https://localhost.example.com"),
        ("10.0.0.1:5000/a", "10.0.0.1:5000", "a", "https://10.0.0.1:5000"),
    ],
)
def test_parse(image: str, registry: str, repository: str, base_url: str) -> None:
    ref = ImageRef.parse(image)
    assert (ref.registry, ref.repository, ref.base_url) == (registry, repository, base_url)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("", "empty"),
        (" ghcr.io/o/n", "whitespace"),
        ("ghcr.io/", "repository name is empty"),
        ("ghcr.io/o//n", "must be '/'-separated"),
        ("ghcr.io/o/na me", "must be '/'-separated"),
        ("ghcr.io/o/-n", "must be '/'-separated"),
        ("ghcr.io/o/n:", "invalid tag ''"),
        ("ghcr.io/o/n:1.0;rm", "invalid tag '1.0;rm'"),
        ("ghcr.io/o/n@sha256:" + "a" * 64, "digest references are not supported"),
        ("ghcr.io:99999/o/n", "port .* out of range"),
        ("https://ghcr.io/o/n", "not a valid host"),
        ("[1::2::3]:5000/a", "not a valid IPv6"),
        ("ghcr.io/" + "a" * 256, "longer than 255"),
    ],
)
def test_parse_rejects_invalid_names(image: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        ImageRef.parse(image)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(RegistryError, match="invalid image reference"):
        ImageRef("ghcr.io", "../../etc")


# --- manifests -----------------------------------------------------------------------------------


def test_manifest_digest_heads_with_all_manifest_types() -> None:
    recorder = Recorder(lambda _: httpx.Response(200, headers={"Docker-Content-Digest": DIGEST}))
    with recorder.client() as client:
        assert client.manifest_digest(REF, "1.0.0") == DIGEST
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("HEAD", "https://ghcr.io/v2/owner/app/manifests/1.0.0")
    assert request.headers["Accept"] == MANIFEST_ACCEPT
    for media_type in (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ):
        assert media_type in request.headers["Accept"]
    assert request.extensions["timeout"] == {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}


def test_404_is_not_found_naming_image_and_tag() -> None:
    recorder = Recorder(lambda _: httpx.Response(404))
    with recorder.client() as client:
        with pytest.raises(NotFound, match=r"ghcr\.io/owner/app:2\.0"):
            client.manifest_digest(REF, "2.0")
        assert client.tag_exists(REF, "2.0") is False


def test_tag_exists() -> None:
    recorder = Recorder(lambda _: httpx.Response(200, headers={"Docker-Content-Digest": DIGEST}))
    with recorder.client() as client:
        assert client.tag_exists(REF, "latest") is True


@pytest.mark.parametrize("headers", [{}, {"Docker-Content-Digest": "md5:../x"}])
def test_missing_or_bad_digest_header_is_an_error(headers: dict[str, str]) -> None:
    with Recorder(lambda _: httpx.Response(200, headers=headers)).client() as client:
        with pytest.raises(RegistryError, match="Docker-Content-Digest"):
            client.manifest_digest(REF, "1.0")


@pytest.mark.parametrize("tag", ["1.0;rm", "../x", "", "-x", ".x", "a" * 129, "1.0\n", "a/b", "a?b=c"])
def test_invalid_tag_rejected_before_any_request(tag: str) -> None:
    recorder = Recorder(lambda _: httpx.Response(200, headers={"Docker-Content-Digest": DIGEST}))
    with recorder.client() as client:
        with pytest.raises(RegistryError, match="invalid tag"):
            client.manifest_digest(REF, tag)
        with pytest.raises(RegistryError, match="invalid tag"):
            client.tag_exists(REF, tag)
    assert recorder.requests == []


def test_403_is_auth_error() -> None:
    with Recorder(lambda _: httpx.Response(403)).client() as client:
        with pytest.raises(AuthError, match="denied access"):
            client.manifest_digest(REF, "1.0")


# --- token flow ----------------------------------------------------------------------------------


def test_anonymous_token_flow() -> None:
    recorder = Recorder(token_registry({"token": "TOKEN", "expires_in": 300}))
    with recorder.client() as client:
        assert client.list_tags(REF) == ["1.0"]
    challenge, token_request, retried = recorder.requests
    assert "Authorization" not in challenge.headers
    assert token_request.url.host == "ghcr.io" and token_request.url.path == "/token"
    assert dict(token_request.url.params) == {"service": "ghcr.io", "scope": "repository:owner/app:pull"}
    assert "Authorization" not in token_request.headers
    assert retried.headers["Authorization"] == "Bearer tok1"
    assert token_request.extensions["timeout"]["read"] == 10.0


def test_token_flow_with_basic_credentials_and_access_token_field() -> None:
    recorder = Recorder(token_registry({"access_token": "TOKEN"}))
    with recorder.client(username="bot", password="pat-secret") as client:
        assert client.manifest_digest(REF, "1.0") == DIGEST
    token_request = recorder.requests[1]
    expected = "Basic " + base64.b64encode(b"bot:pat-secret").decode()
    assert token_request.headers["Authorization"] == expected
    assert recorder.requests[2].headers["Authorization"] == "Bearer tok1"


def test_token_is_cached_and_sent_without_a_new_challenge(clock: list[float]) -> None:
    recorder = Recorder(token_registry({"token": "TOKEN", "expires_in": 300}))
    with recorder.client() as client:
        client.list_tags(REF)
        clock[0] += 200
        client.manifest_digest(REF, "1.0")
        client.tag_exists(REF, "1.1")
    assert recorder.paths().count("/token") == 1
    # 401, token, 200 for the first call; then straight to 200 with the cached token.
    assert len(recorder.requests) == 5
    assert all(r.headers["Authorization"] == "Bearer tok1" for r in recorder.requests[3:])


def test_token_without_expires_in_lives_60_seconds(clock: list[float]) -> None:
    recorder = Recorder(token_registry({"token": "TOKEN"}))
    with recorder.client() as client:
        client.manifest_digest(REF, "1.0")
        clock[0] += 49
        client.manifest_digest(REF, "1.0")
        assert recorder.paths().count("/token") == 1
        clock[0] += 2  # renewed shortly before the assumed 60 s expiry
        client.manifest_digest(REF, "1.0")
    assert recorder.paths().count("/token") == 2
    assert recorder.requests[-1].headers["Authorization"] == "Bearer tok2"


def test_tokens_are_cached_per_scope() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        repo = request.url.path.split("/")[2:4]
        scope = f"repository:{'/'.join(repo)}:pull"
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": request.url.params["scope"]})
        if request.headers.get("Authorization") != f"Bearer {scope}":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": f'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="{scope}"'
                },
            )
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    recorder = Recorder(handler)
    other = ImageRef("ghcr.io", "owner/other")
    with recorder.client() as client:
        for ref in (REF, other, REF, other):
            client.manifest_digest(ref, "1.0")
    tokens = [r.url.params["scope"] for r in recorder.requests if r.url.path == "/token"]
    assert tokens == ["repository:owner/app:pull", "repository:owner/other:pull"]


def test_rejected_cached_token_is_replaced_once() -> None:
    revoked = {"tok1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            count = sum(r.url.path == "/token" for r in recorder.requests)
            return httpx.Response(200, json={"token": f"tok{count}"})
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (auth[7:] in revoked and len(recorder.requests) > 3):
            return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    recorder = Recorder(handler)
    with recorder.client() as client:
        client.manifest_digest(REF, "1.0")  # 401, token tok1, 200
        client.manifest_digest(REF, "1.0")  # tok1 now refused: 401, token tok2, 200
    assert [r.headers.get("Authorization") for r in recorder.requests if r.url.path != "/token"] == [
        None,
        "Bearer tok1",
        "Bearer tok1",
        "Bearer tok2",
    ]


def test_401_after_fresh_token_is_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "useless"})
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE + ',error="insufficient_scope"'})

    recorder = Recorder(handler)
    with recorder.client() as client, pytest.raises(AuthError, match="no credentials are configured"):
        client.list_tags(REF)
    assert len(recorder.requests) == 3  # one retry only


def test_token_service_rejecting_credentials_is_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(401, json={"errors": [{"code": "DENIED"}]})
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})

    with Recorder(handler).client(username="bot", password="wrong") as client:
        with pytest.raises(AuthError, match="rejected the credentials"):
            client.list_tags(REF)


def test_credentials_never_go_to_a_plain_http_realm() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="http://ghcr.io/token",service="x",scope="y"'},
        )

    recorder = Recorder(handler)
    with recorder.client(username="bot", password="pat") as client:
        with pytest.raises(AuthError, match="not https"):
            client.list_tags(REF)
    assert [r.url.host for r in recorder.requests] == ["ghcr.io"]


def test_realm_query_is_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "t"})
        if request.headers.get("Authorization") == "Bearer t":
            return httpx.Response(200, json={"tags": []})
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="https://ghcr.io/token?account=x",service="s"'},
        )

    recorder = Recorder(handler)
    with recorder.client() as client:
        assert client.list_tags(REF) == []
    assert dict(recorder.requests[1].url.params) == {"account": "x", "service": "s"}


def test_basic_challenge_uses_credentials_directly() -> None:
    expected = "Basic " + base64.b64encode(b"bot:pw").decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") == expected:
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'})

    recorder = Recorder(handler)
    with recorder.client(username="bot", password="pw") as client:
        client.manifest_digest(REF, "1.0")
        client.manifest_digest(REF, "1.0")  # Basic is now sent up front
    assert [r.headers.get("Authorization") for r in recorder.requests] == [None, expected, expected]
    with Recorder(handler).client() as client, pytest.raises(AuthError, match="requires a username"):
        client.manifest_digest(REF, "1.0")


def test_unsupported_challenge_is_auth_error() -> None:
    recorder = Recorder(lambda _: httpx.Response(401, headers={"WWW-Authenticate": "Negotiate"}))
    with recorder.client() as client, pytest.raises(AuthError, match="does not support"):
        client.list_tags(REF)


def test_credentials_must_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="together"):
        RegistryClient(username="bot")


# --- tag pagination ------------------------------------------------------------------------------


def test_list_tags_follows_relative_and_absolute_links() -> None:
    pages = {
        None: (["a", "b"], '</v2/owner/app/tags/list?n=2&last=b>; rel="next"'),
        "b": (["c", "d"], '<https://ghcr.io/v2/owner/app/tags/list?n=2&last=d>; rel="next"'),
        "d": (["e"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        tags, link = pages[request.url.params.get("last")]
        return httpx.Response(
            200, json={"name": "owner/app", "tags": tags}, headers={"Link": link} if link else {}
        )

    recorder = Recorder(handler)
    with recorder.client() as client:
        assert client.list_tags(REF, page_size=2) == ["a", "b", "c", "d", "e"]
    assert [str(r.url) for r in recorder.requests] == [
        "https://ghcr.io/v2/owner/app/tags/list?n=2",
        "https://ghcr.io/v2/owner/app/tags/list?n=2&last=b",
        "https://ghcr.io/v2/owner/app/tags/list?n=2&last=d",
    ]


def test_list_tags_without_page_size_sends_no_n() -> None:
    recorder = Recorder(lambda _: httpx.Response(200, json={"name": "owner/app", "tags": None}))
    with recorder.client() as client:
        assert client.list_tags(REF) == []
    assert str(recorder.requests[0].url) == "https://ghcr.io/v2/owner/app/tags/list"


def test_next_link_to_another_host_is_refused() -> None:
    link = '<https://evil.example/v2/owner/app/tags/list?last=b>; rel="next"'
    recorder = Recorder(lambda _: httpx.Response(200, json={"tags": ["a"]}, headers={"Link": link}))
    with recorder.client() as client, pytest.raises(RegistryError, match="another host"):
        client.list_tags(REF)
    assert len(recorder.requests) == 1


def test_looping_next_link_is_refused() -> None:
    link = '</v2/owner/app/tags/list?n=1>; rel="next"'
    recorder = Recorder(lambda _: httpx.Response(200, json={"tags": ["a"]}, headers={"Link": link}))
    with recorder.client() as client, pytest.raises(RegistryError, match="loops"):
        client.list_tags(REF, page_size=1)


@pytest.mark.parametrize("body", [b"not json", b'["a"]', b'{"tags": "a"}', b'{"tags": [1]}'])
def test_unreadable_tag_list_is_an_error(body: bytes) -> None:
    with Recorder(lambda _: httpx.Response(200, content=body)).client() as client:
        with pytest.raises(RegistryError, match="unreadable tag list"):
            client.list_tags(REF)


def test_list_tags_of_missing_repository_is_not_found() -> None:
    with Recorder(lambda _: httpx.Response(404)).client() as client:
        with pytest.raises(NotFound, match=r"repository ghcr\.io/owner/app"):
            client.list_tags(REF)


# --- rate limits and failures --------------------------------------------------------------------


def responses(*answers: httpx.Response | Exception) -> Handler:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


OK = httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})


def test_429_retry_after_seconds_is_honoured(sleeps: list[float]) -> None:
    recorder = Recorder(responses(httpx.Response(429, headers={"Retry-After": "7"}), OK))
    with recorder.client() as client:
        assert client.manifest_digest(REF, "1.0") == DIGEST
    assert sleeps == [7.0]


def test_429_retry_after_http_date_is_honoured(sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    recorder = Recorder(responses(httpx.Response(429, headers={"Retry-After": when}), OK))
    with recorder.client() as client:
        client.manifest_digest(REF, "1.0")
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 20


def test_429_asking_for_more_than_a_minute_raises_at_once(sleeps: list[float]) -> None:
    recorder = Recorder(responses(httpx.Response(429, headers={"Retry-After": "600"})))
    with recorder.client() as client, pytest.raises(RateLimited, match="600 s") as caught:
        client.manifest_digest(REF, "1.0")
    assert caught.value.retry_after == 600 and sleeps == []


def test_persistent_429_is_rate_limited_after_max_retries(sleeps: list[float]) -> None:
    recorder = Recorder(lambda _: httpx.Response(429))
    with recorder.client(max_retries=3) as client, pytest.raises(RateLimited, match="4 attempts"):
        client.list_tags(REF)
    assert len(recorder.requests) == 4 and len(sleeps) == 3


def test_5xx_backs_off_exponentially_then_unavailable(sleeps: list[float]) -> None:
    recorder = Recorder(lambda _: httpx.Response(503))
    with recorder.client(max_retries=4, backoff=0.5) as client:
        with pytest.raises(RegistryUnavailable, match=r"registry ghcr\.io .*5 attempts.*HTTP 503"):
            client.manifest_digest(REF, "1.0")
    assert len(recorder.requests) == 5
    for attempt, delay in enumerate(sleeps):
        ceiling = 0.5 * 2**attempt
        assert ceiling / 2 <= delay <= ceiling


def test_5xx_then_success(sleeps: list[float]) -> None:
    recorder = Recorder(responses(httpx.Response(500), httpx.Response(502), OK))
    with recorder.client() as client:
        assert client.manifest_digest(REF, "1.0") == DIGEST
    assert len(sleeps) == 2


@pytest.mark.parametrize("error", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out")])
def test_network_errors_are_retried_then_unavailable(error: Exception, sleeps: list[float]) -> None:
    recorder = Recorder(responses(error, error, error))
    with recorder.client(max_retries=2) as client:
        with pytest.raises(RegistryUnavailable, match=rf"registry ghcr\.io .*{type(error).__name__}"):
            client.manifest_digest(REF, "1.0")
    assert len(sleeps) == 2


def test_token_service_failures_are_retried(sleeps: list[float]) -> None:
    recorder = Recorder(
        responses(
            httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE}),
            httpx.Response(503),
            httpx.Response(200, json={"token": "t"}),
            OK,
        )
    )
    with recorder.client() as client:
        assert client.manifest_digest(REF, "1.0") == DIGEST
    assert len(sleeps) == 1


def test_secrets_are_not_logged(caplog: pytest.LogCaptureFixture, sleeps: list[float]) -> None:
    recorder = Recorder(
        responses(
            httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE}),
            httpx.Response(200, json={"token": "sekrit-token"}),
            httpx.Response(503),  # makes the client log a retry of the authenticated request
            httpx.Response(200, json={"tags": ["1"]}),
        )
    )
    caplog.set_level(logging.DEBUG)
    with recorder.client(username="bot", password="pat-secret") as client:
        assert client.list_tags(REF) == ["1"]
    assert sleeps and "retry" in caplog.text
    encoded = base64.b64encode(b"bot:pat-secret").decode()
    for secret in ("sekrit-token", "pat-secret", encoded):
        assert secret not in caplog.text
