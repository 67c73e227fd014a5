"""A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

Also a token service that signs real JWTs the registry verifies, a proxy that can inject failures
(429, 5xx) and page tag lists, and helpers that push images through the HTTP API without docker.
Reusable by end-to-end tests that need a registry to deploy from.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def require_tool(name: str) -> str:
    """Path of a tool the live tests need: a failure under CI (it must be installed there),
    a skip on a developer machine without it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install {name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the live registry tests", pytrace=False)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRegistry:
    """docker-registry serving a temp directory; `auth` is the config's auth section, if any;
    `extra` adds top-level config sections (e.g. `notifications`)."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        auth: dict[str, dict[str, str]] | None = None,
        extra: dict[str, object] | None = None,
    ):
        self.binary = binary
        self.workdir = workdir
        self.auth = auth
        self.extra = extra or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            config = {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")}},
                "http": {"addr": self.host, "secret": "test-secret"},
            }
            if self.auth:
                config["auth"] = self.auth
            config.update(self.extra)
            config_path = self.workdir / "config.yml"
            # JSON is YAML: no YAML library needed.
            config_path.write_text(json.dumps(config))
            log = (self.workdir / "registry.log").open("wb")
            self.process = subprocess.Popen(
                [self.binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 15
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        return False

    def log_tail(self) -> str:
        path = self.workdir / "registry.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def running_registry(
    binary: str,
    workdir: Path,
    auth: dict[str, dict[str, str]] | None = None,
    extra: dict[str, object] | None = None,
) -> Iterator[LocalRegistry]:
    registry = LocalRegistry(binary, workdir, auth, extra)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


# --- pushing content through the HTTP API -------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_blob(client: httpx.Client, base: str, repo: str, data: bytes) -> dict[str, object]:
    """Monolithic upload (POST, then PUT with ?digest=); returns the descriptor fields."""
    digest = _digest(data)
    started = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    # The Location carries upload state in its query: merge, don't replace (httpx params= replaces).
    location = httpx.URL(base).join(started.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def put_manifest(client: httpx.Client, base: str, repo: str, tag: str, manifest: dict[str, object]) -> str:
    """PUT a manifest under a tag; returns the digest of the exact bytes sent."""
    body = json.dumps(manifest).encode()
    response = client.put(
        f"{base}/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": manifest["mediaType"]}
    )
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == _digest(body)
    return _digest(body)


def push_images(
    base: str, repo: str, tags: list[str], headers: dict[str, str] | None = None
) -> dict[str, str]:
    """Push one distinct OCI image manifest per tag (shared blobs); returns tag -> digest."""
    with httpx.Client(headers=headers or {}, timeout=10) as client:
        config = upload_blob(
            client,
            base,
            repo,
            b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
        )
        layer = upload_blob(client, base, repo, b"a small layer, not a real tarball")
        digests = {}
        for tag in tags:
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
                # Distinct bytes per tag, so each tag has its own digest.
                "annotations": {"org.opencontainers.image.version": tag},
            }
            digests[tag] = put_manifest(client, base, repo, tag, manifest)
        return digests


def push_index(base: str, repo: str, tag: str, manifests: list[str]) -> str:
    """Push an OCI image index (what a multi-arch build pushes) over existing manifests."""
    with httpx.Client(timeout=10) as client:
        entries = []
        for number, digest in enumerate(manifests):
            size = len(
                client.get(f"{base}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}).content
            )
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"architecture": ["amd64", "arm64"][number % 2], "os": "linux"},
                }
            )
        return put_manifest(
            client, base, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        )


# --- a token service the registry really verifies ------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Docker token auth (the flow GHCR and Docker Hub use), signing RS256 JWTs with openssl.

    Users in `users` get whatever they ask for; anonymous callers get pull on `public` repositories
    and an empty grant otherwise (so the registry answers 401 insufficient_scope, as Docker Hub does).
    """

    openssl: str
    workdir: Path
    users: dict[str, str]
    public: set[str]
    issuer: str = "watcher-test-issuer"
    service: str = "watcher-test-registry"
    token_field: str = "token"
    expires_in: int | None = 300
    requests: list[dict[str, object]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.key = self.workdir / "token.key"
        self.cert = self.workdir / "token.crt"
        subprocess.run(
            [
                self.openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=watcher test token issuer",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        self._x5c = base64.b64encode(ssl.PEM_cert_to_DER_cert(self.cert.read_text())).decode()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, dict[str, str]]:
        """The `auth` section that makes docker-registry demand our tokens."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert),
            }
        }

    def mint(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            [self.openssl, "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, object]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            if user is not None:
                allowed = actions.split(",")
            else:
                allowed = ["pull"] if name in self.public and "pull" in actions.split(",") else []
            access.append({"type": kind, "name": name, "actions": allowed})
        return access

    @contextmanager
    def serving(self) -> Iterator[TokenService]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                user = service._user(self.headers.get("Authorization"))
                service.requests.append(
                    {"query": query, "user": user, "authorization": self.headers.get("Authorization")}
                )
                if url.path != "/token":
                    return self._reply(404, {"error": "not found"})
                if user is False:
                    return self._reply(401, {"details": "incorrect username or password"})
                if query.get("service") != [service.service]:
                    return self._reply(400, {"details": "unknown service"})
                token = service.mint(user or "anonymous", service.grant(user or None, query.get("scope", [])))
                body: dict[str, object] = {service.token_field: token}
                if service.expires_in is not None:
                    body["expires_in"] = service.expires_in
                self._reply(200, body)

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        with _serve(Handler) as port:
            self.port = port
            yield self

    def _user(self, authorization: str | None) -> str | None | bool:
        """The authenticated user, None for anonymous, False for wrong credentials."""
        if authorization is None:
            return None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user if self.users.get(user) == password else False


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- a proxy in front of the registry ------------------------------------------------------------


@dataclass
class Proxy:
    """Forwards to a registry; can answer canned failures first, and can page tag lists.

    docker-registry 2.8 ignores `n`/`last` on tags/list and sends every tag in one unsorted page;
    with `paginate` the proxy pages the registry's real list the way the distribution spec and
    GHCR do (lexical order, `n`, `last`, a relative `Link: <...>; rel="next"`).
    """

    upstream: str  # "127.0.0.1:PORT"
    paginate: bool = False
    canned: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextmanager
    def serving(self) -> Iterator[Proxy]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

            def _handle(self) -> None:
                proxy.seen.append((self.command, self.path, self.headers.get("Authorization")))
                if proxy.canned:
                    status, headers = proxy.canned.pop(0)
                    return self._reply(status, headers, b'{"errors":[{"code":"INJECTED"}]}')
                url = urllib.parse.urlsplit(self.path)
                if proxy.paginate and self.command == "GET" and url.path.endswith("/tags/list"):
                    return self._paged(url)
                status, headers, body = self._forward(self.path)
                self._reply(status, headers, body)

            def _forward(self, path: str) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=10)
                try:
                    forwarded = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                    }
                    conn.request(self.command, path, headers=forwarded)
                    response = conn.getresponse()
                    body = response.read()
                    headers = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in ("connection", "transfer-encoding", "content-length")
                    }
                    if self.command == "HEAD":
                        headers["Content-Length"] = response.getheader("Content-Length", "0")
                    return response.status, headers, body
                finally:
                    conn.close()

            def _paged(self, url: urllib.parse.SplitResult) -> None:
                status, headers, body = self._forward(url.path)  # the whole list; auth still applies
                if status != 200:
                    return self._reply(status, headers, body)
                query = urllib.parse.parse_qs(url.query)
                listing = json.loads(body)
                tags = sorted(listing["tags"] or [])
                if "last" in query:
                    tags = [tag for tag in tags if tag > query["last"][0]]
                if "n" in query:
                    size = int(query["n"][0])
                    if len(tags) > size:
                        tags = tags[:size]
                        following = urllib.parse.urlencode({"n": size, "last": tags[-1]})
                        headers["Link"] = f'<{url.path}?{following}>; rel="next"'
                self._reply(200, headers, json.dumps({"name": listing["name"], "tags": tags}).encode())

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(body)))
                elif "Content-Length" not in headers:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        with _serve(Handler) as port:
            self.port = port
            yield self
