"""Where a registry's token challenge may send the registry credentials (issue 21, item 6).

The attack: a registry answering `WWW-Authenticate: Bearer realm="http://127.0.0.1:19485/internal/admin?x=1"`
made watcher GET that URL with `Authorization: Basic` of REGISTRY_USERNAME and REGISTRY_PASSWORD.
Here the hostile registry is a MockTransport on a public name and the "internal admin" a real
http.server on 127.0.0.1 that records what reaches it: nothing may. A realm is asked for a token
only on the registry's own host or a host configured for it (`[registry] token_hosts`; Docker Hub's
auth.docker.io built in), over https, or plain http when registry and realm are both on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.unit.test_config import MINIMAL, make_project, refused
from watcher.backends.registry import DOCKER_HUB, AuthError, ImageRef, RegistryClient
from watcher.config import load_host

DIGEST = "sha256:" + "cd" * 32
REPO = "acme/app"


class Seen(BaseHTTPRequestHandler):
    """The internal service a hostile realm points at: records each request's path and auth."""

    got: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.got.append((self.path, self.headers.get("Authorization")))
        body = b'{"token": "t"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def internal() -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    got: list[tuple[str, str | None]] = []
    handler = type("Handler", (Seen,), {"got": got})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()


def hostile(registry: str, realm: str) -> httpx.BaseTransport:
    """`registry` answers every request with a challenge naming `realm`, or, with the token
    `t`, the digest; any other host is reached for real (the internal service)."""
    real = httpx.HTTPTransport()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.netloc.decode() != registry:
            return real.handle_request(request)
        if request.headers.get("Authorization") == "Bearer t":
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})
        challenge = f'Bearer realm="{realm}",service="s",scope="repository:{REPO}:pull"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handle)


def client(registry: str, realm: str) -> RegistryClient:
    return RegistryClient(
        username="bot", password="s3cret", transport=hostile(registry, realm), max_retries=0
    )


def test_a_public_registry_cannot_send_the_credentials_to_a_loopback_service(internal) -> None:
    """The attack as reported: the registry is not on loopback, its realm is."""
    port, got = internal
    realm = f"http://127.0.0.1:{port}/internal/admin?x=1"
    with client("registry.example.com", realm) as registry:
        with pytest.raises(AuthError) as refused_:
            registry.manifest_digest(ImageRef("registry.example.com", REPO), "v1")
    assert f"the token service http://127.0.0.1:{port}/internal/admin" in str(refused_.value)
    assert "not on registry.example.com" in str(refused_.value)
    assert got == []  # nothing reached the internal service, with or without credentials


@pytest.mark.parametrize(
    "registry, realm, problem",
    [
        ("registry.example.com", "https://auth.evil.example/token", "not on registry.example.com"),
        ("ghcr.io", "https://ghcr.io.evil.example/token", "not on ghcr.io"),
        ("registry.example.com", "http://registry.example.com/token", "not https"),
        ("127.0.0.1:5000", "https://auth.evil.example/token", "not on 127.0.0.1"),
        ("127.0.0.1:5000", "/token", "not on 127.0.0.1"),
    ],
)
def test_a_realm_elsewhere_or_in_clear_text_is_refused_by_name(
    registry: str, realm: str, problem: str
) -> None:
    with client(registry, realm) as registry_client:
        with pytest.raises(AuthError, match=problem) as refused_:
            registry_client.manifest_digest(ImageRef(registry, REPO), "v1")
    assert "the token service" in str(refused_.value) and "s3cret" not in str(refused_.value)


@pytest.mark.parametrize(
    "registry, realm, configured",
    [
        ("ghcr.io", "https://ghcr.io/token", ()),  # GHCR: its own host
        (DOCKER_HUB, "https://auth.docker.io/token", ()),  # Docker Hub: built in
        ("registry.gitlab.com", "https://gitlab.com/jwt/auth", (("registry.gitlab.com", "gitlab.com"),)),
    ],
)
def test_the_registrys_own_host_and_the_configured_hosts_get_a_token_request(
    registry: str, realm: str, configured: tuple[tuple[str, str], ...]
) -> None:
    token_host = httpx.URL(realm).host

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == token_host and request.url.path != f"/v2/{REPO}/manifests/v1":
            assert request.headers["Authorization"].startswith("Basic ")
            return httpx.Response(200, json={"token": "t"})
        if request.headers.get("Authorization") == "Bearer t":
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})
        challenge = f'Bearer realm="{realm}",service="s",scope="repository:{REPO}:pull"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with RegistryClient(
        username="bot", password="s3cret", transport=httpx.MockTransport(handle), token_hosts=configured
    ) as registry_client:
        assert registry_client.manifest_digest(ImageRef(registry, REPO), "v1") == DIGEST


def test_a_loopback_registry_may_name_a_plain_http_realm_on_loopback(internal) -> None:
    """The local test registry's token service (tests/harness/registry.py: TokenService)."""
    port, got = internal
    with client("127.0.0.1:5000", f"http://127.0.0.1:{port}/token") as registry:
        assert registry.manifest_digest(ImageRef("127.0.0.1:5000", REPO), "v1") == DIGEST
    assert [path.split("?")[0] for path, _ in got] == ["/token"]


def test_token_hosts_are_read_from_the_config(tmp_path) -> None:
    extra = '\n[registry.token_hosts]\n"registry.gitlab.com" = ["gitlab.com"]\n'
    config = load_host(make_project(tmp_path, MINIMAL + extra), {}).app(None)
    assert config.registry.token_hosts == frozenset({("registry.gitlab.com", "gitlab.com")})


@pytest.mark.parametrize(
    "extra, problem",
    [
        ('"Registry.Example.com" = ["auth.example.com"]', "expected a registry HOST[:PORT] in lowercase"),
        ('"registry.example.com" = ["https://auth.example.com/token"]', "expected a host name in lowercase"),
    ],
)
def test_token_hosts_are_checked(tmp_path, extra: str, problem: str) -> None:
    said = refused(make_project(tmp_path, MINIMAL + f"\n[registry.token_hosts]\n{extra}\n"))
    assert "registry.token_hosts" in said and problem in said, said
