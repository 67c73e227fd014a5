"""RegistryClient against a real docker-registry (distribution 2.8) over real HTTP.

Content is pushed through the registry's HTTP API (no docker). Token auth is the registry's own:
it issues the Bearer challenge and verifies the JWTs our token service signs. A proxy in front
injects a 429 and 5xx, and pages tag lists like GHCR (the registry itself does not page).
Missing tools fail these tests under CI=true and skip them elsewhere.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import watcher.backends.registry as registry_module
from tests.harness.registry import (
    Proxy,
    TokenService,
    push_images,
    push_index,
    require_tool,
    running_registry,
)
from watcher.backends.registry import (
    AuthError,
    ImageRef,
    NotFound,
    RateLimited,
    RegistryClient,
    RegistryUnavailable,
)

pytestmark = pytest.mark.integration

TAGS = [f"1.{minor}.{patch}" for minor in range(5) for patch in range(5)]  # 25 tags
USER, PASSWORD = "deployer", "s3cret-pw"
# bcrypt (cost 4) of PASSWORD: docker-registry's htpasswd accepts only bcrypt.
HTPASSWD = f"{USER}:$2b$04$m2l9woWalF65THJlUqfIqezPdOdGvJIj/7qJbh7LSfZ5uMKXMskn6\n"


@pytest.fixture(scope="module")
def registry_binary() -> str:
    return require_tool("docker-registry")


@pytest.fixture(scope="module")
def open_registry(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An unauthenticated registry with 25 tagged OCI images and one multi-arch index."""
    with running_registry(registry_binary, tmp_path_factory.mktemp("open")) as registry:
        digests = push_images(registry.url, "watcher/app", TAGS)
        digests["multi"] = push_index(
            registry.url, "watcher/app", "multi", [digests["1.0.0"], digests["1.0.1"]]
        )
        yield {"registry": registry, "digests": digests}


@pytest.fixture(scope="module")
def token_setup(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Registry with token auth, the token service, and a paging proxy in front of the registry."""
    openssl = require_tool("openssl")
    workdir = tmp_path_factory.mktemp("token")
    tokens = TokenService(openssl, workdir, users={USER: PASSWORD}, public={"acme/public"})
    with (
        tokens.serving(),
        running_registry(registry_binary, workdir / "registry", tokens.registry_auth()) as registry,
    ):
        for repo in ("acme/private", "acme/public"):
            push = tokens.mint("pusher", [{"type": "repository", "name": repo, "actions": ["pull", "push"]}])
            push_images(registry.url, repo, TAGS, headers={"Authorization": f"Bearer {push}"})
        with Proxy(registry.host, paginate=True).serving() as proxy:
            yield {"tokens": tokens, "proxy": proxy, "registry": registry}


@pytest.fixture
def tokens(token_setup: dict) -> TokenService:
    service: TokenService = token_setup["tokens"]
    service.requests.clear()
    service.token_field, service.expires_in = "token", 300
    return service


@pytest.fixture
def proxy(token_setup: dict) -> Proxy:
    front: Proxy = token_setup["proxy"]
    front.seen.clear()
    front.canned.clear()
    return front


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's sleeps; they are kept short by the tests that trigger them."""
    recorded: list[float] = []
    real_sleep = registry_module.sleep

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        real_sleep(min(seconds, 1.5))

    monkeypatch.setattr(registry_module, "sleep", sleep)
    return recorded


# --- plain registry ------------------------------------------------------------------------------


def test_manifest_digest_matches_pushed_bytes(open_registry: dict) -> None:
    ref = ImageRef.parse(f"{open_registry['registry'].host}/watcher/app")
    with RegistryClient() as client:
        for tag, digest in open_registry["digests"].items():
            assert client.manifest_digest(ref, tag) == digest
        assert client.tag_exists(ref, "1.4.4")
        assert not client.tag_exists(ref, "9.9.9")
        with pytest.raises(NotFound, match=r"watcher/app:9\.9\.9"):
            client.manifest_digest(ref, "9.9.9")


def test_list_tags_against_registry_that_ignores_page_size(open_registry: dict) -> None:
    ref = ImageRef.parse(f"{open_registry['registry'].host}/watcher/app")
    with RegistryClient() as client:
        tags = client.list_tags(ref, page_size=10)
    assert sorted(tags) == sorted([*TAGS, "multi"])


def test_unknown_repository_is_not_found(open_registry: dict) -> None:
    ref = ImageRef.parse(f"{open_registry['registry'].host}/watcher/missing")
    with RegistryClient() as client, pytest.raises(NotFound, match="watcher/missing"):
        client.list_tags(ref)


# --- token auth, pagination, 429 and 5xx through the proxy -------------------------------------


def test_token_flow_with_credentials_and_pagination(tokens: TokenService, proxy: Proxy) -> None:
    ref = ImageRef.parse(f"{proxy.host}/acme/private")
    with RegistryClient(username=USER, password=PASSWORD) as client:
        tags = client.list_tags(ref, page_size=10)
        digest = client.manifest_digest(ref, "1.2.3")

    assert tags == sorted(TAGS)
    pages = [path for method, path, _ in proxy.seen if "/tags/list" in path]
    # First page twice (401 challenge, then with the token), then two further pages.
    assert pages[0] == pages[1] == "/v2/acme/private/tags/list?n=10"
    assert pages[2:] == [
        "/v2/acme/private/tags/list?n=10&last=1.1.4",
        "/v2/acme/private/tags/list?n=10&last=1.3.4",
    ]
    assert all(auth and auth.startswith("Bearer ") for _, _, auth in proxy.seen[1:])
    assert digest.startswith("sha256:")
    # One token for the whole session, requested with Basic credentials and the registry's scope.
    assert len(tokens.requests) == 1
    assert tokens.requests[0]["user"] == USER
    assert tokens.requests[0]["query"]["scope"] == ["repository:acme/private:pull"]


def test_anonymous_token_for_public_repository(tokens: TokenService, proxy: Proxy) -> None:
    tokens.token_field, tokens.expires_in = "access_token", None
    with RegistryClient() as client:
        assert client.list_tags(ImageRef.parse(f"{proxy.host}/acme/public")) == sorted(TAGS)
        with pytest.raises(AuthError, match="no credentials"):
            client.list_tags(ImageRef.parse(f"{proxy.host}/acme/private"))
    assert [request["authorization"] for request in tokens.requests] == [None, None]


def test_token_without_expires_in_is_renewed_within_a_minute(
    tokens: TokenService, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens.expires_in = None
    ref = ImageRef.parse(f"{proxy.host}/acme/private")
    clock = [1000.0]
    monkeypatch.setattr(registry_module, "monotonic", lambda: clock[0])
    with RegistryClient(username=USER, password=PASSWORD) as client:
        client.manifest_digest(ref, "1.0.0")
        clock[0] += 45
        client.manifest_digest(ref, "1.0.1")
        assert len(tokens.requests) == 1
        clock[0] += 15  # 60 s after issue: renewed before use, no 401 round trip needed
        seen_before = len(proxy.seen)
        client.manifest_digest(ref, "1.0.2")
    assert len(tokens.requests) == 2
    assert len(proxy.seen) == seen_before + 1


def test_wrong_password_is_an_auth_error(tokens: TokenService, proxy: Proxy) -> None:
    with RegistryClient(username=USER, password="wrong") as client:
        with pytest.raises(AuthError, match="rejected the credentials") as caught:
            client.list_tags(ImageRef.parse(f"{proxy.host}/acme/private"))
    assert "wrong" not in str(caught.value)


def test_429_retry_after_is_honoured(tokens: TokenService, proxy: Proxy, sleeps: list[float]) -> None:
    ref = ImageRef.parse(f"{proxy.host}/acme/public")
    proxy.canned.append((429, {"Retry-After": "1"}))
    with RegistryClient() as client:
        assert client.tag_exists(ref, "1.0.0")
    assert sleeps == [1.0]
    assert proxy.seen[0][0] == "HEAD" and len(proxy.seen) == 3  # 429, 401 challenge, 200


def test_long_retry_after_is_left_to_the_caller(
    tokens: TokenService, proxy: Proxy, sleeps: list[float]
) -> None:
    proxy.canned.append((429, {"Retry-After": "3600"}))
    with RegistryClient() as client, pytest.raises(RateLimited) as caught:
        client.list_tags(ImageRef.parse(f"{proxy.host}/acme/public"))
    assert caught.value.retry_after == 3600 and sleeps == []


def test_5xx_then_recovery_and_then_unavailable(
    tokens: TokenService, proxy: Proxy, sleeps: list[float]
) -> None:
    ref = ImageRef.parse(f"{proxy.host}/acme/public")
    with RegistryClient(max_retries=2, backoff=0.01) as client:
        proxy.canned.extend([(503, {}), (502, {})])
        assert client.tag_exists(ref, "1.0.0")
        proxy.canned.extend([(503, {})] * 3)
        with pytest.raises(RegistryUnavailable, match=rf"registry {proxy.host} .*HTTP 503"):
            client.tag_exists(ref, "1.0.0")
    assert len(sleeps) == 4


def test_connection_refused_is_unavailable(sleeps: list[float]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ref = ImageRef.parse(f"127.0.0.1:{port}/acme/app")
        with RegistryClient(max_retries=1, backoff=0.01) as client:
            with pytest.raises(RegistryUnavailable, match=rf"127\.0\.0\.1:{port}.*ConnectError"):
                client.list_tags(ref)
    assert len(sleeps) == 1


# --- Basic auth (htpasswd) -----------------------------------------------------------------------


def test_basic_challenge(registry_binary: str, tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(HTPASSWD)
    auth = {"htpasswd": {"realm": "watcher-test", "path": str(htpasswd)}}
    with running_registry(registry_binary, tmp_path / "registry", auth) as registry:
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        digests = push_images(registry.url, "acme/basic", ["1.0.0"], headers={"Authorization": basic})
        ref = ImageRef.parse(f"{registry.host}/acme/basic")
        with RegistryClient(username=USER, password=PASSWORD) as client:
            assert client.manifest_digest(ref, "1.0.0") == digests["1.0.0"]
            assert client.list_tags(ref) == ["1.0.0"]
        with RegistryClient() as client, pytest.raises(AuthError, match="requires a username"):
            client.list_tags(ref)
        with (
            RegistryClient(username=USER, password="nope") as client,
            pytest.raises(AuthError, match="check the credentials"),
        ):
            client.list_tags(ref)
