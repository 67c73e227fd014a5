"""OCI Distribution API client: which tags a repository has and which digest a tag points to.

Watcher must not trust a webhook or a tag policy blindly: it asks the registry whether a tag exists
and what it points to. GHCR, Docker Hub and self-hosted registries all speak this API, with the
token handshake, pagination and rate limits that other image updaters get wrong (see field notes
§3.7 and §5), so those are handled here once.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from time import monotonic, sleep
from types import TracebackType
from typing import NoReturn

import httpx
from tenacity import RetryCallState

from watcher.retry import asked_wait, http_retrying, problem
from watcher.validation import validate_tag

log = logging.getLogger(__name__)

# Every manifest type an image tag can point to; without the OCI types a registry may answer 404
# for an OCI image (distribution 2.8 does), and without the index/list types it may pick one
# platform's manifest, whose digest changes nothing for a multi-arch push.
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)

DOCKER_HUB = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})

#: (registry, token service host) pairs known beyond a registry's own host, where a token request
#: may carry the credentials (GHCR's realm is ghcr.io itself); others come from the config
#: (`[registry] token_hosts`).
TOKEN_HOSTS = frozenset({(DOCKER_HUB, "auth.docker.io")})

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_MAX_NAME = 255  # distribution's limit on a repository name

_MAX_DOCUMENT = 4 * 1024 * 1024  # manifests and image configs are small; more is not one
_REDIRECTS = (301, 302, 303, 307, 308)

_MAX_RETRY_AFTER = 60.0  # longer waits are the caller's business: we raise RateLimited instead
_MAX_BACKOFF = 30.0
_DEFAULT_TOKEN_TTL = 60.0  # distribution spec: assume 60 s when expires_in is absent
_TOKEN_MARGIN = 10.0  # renew this long before expiry so a token never dies in flight


#: Told of every HTTP attempt: the host (`ghcr.io`, `127.0.0.1:5000`), seconds, status (None: no
#: answer). A callback, so this backend knows nothing of metrics (the triggers pass one).
AttemptObserver = Callable[[str, float, int | None], None]


class RegistryError(Exception):
    """A registry operation failed; the message is written for the user."""


class AuthError(RegistryError):
    """Credentials are missing or wrong, or do not grant pull access."""


class NotFound(RegistryError):
    """The repository or tag does not exist (or is hidden from these credentials)."""


class RateLimited(RegistryError):
    """The registry kept answering 429, or asked for a longer wait than we block for."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError):
    """The registry kept failing (5xx, connection errors, timeouts) after all retries."""


def _split_host(registry: str) -> tuple[str, str | None]:
    """Split "host[:port]" or "[v6]:port" into a bare host and the port text."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, rest[1:] or None
    host, _, port = registry.partition(":")
    return host, port or None


def _is_loopback(host: str) -> bool:
    """True for hosts that never leave the machine, the only ones allowed plain http."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problem(registry: str, repository: str) -> str | None:
    """Why (registry, repository) cannot name an image, or None when it can."""
    match = _HOST.fullmatch(registry)
    if match is None:
        return f"registry {registry!r} is not a valid host[:port]"
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        return f"registry port in {registry!r} is out of range"
    if registry.startswith("["):
        try:
            ipaddress.IPv6Address(_split_host(registry)[0])
        except ValueError:
            return f"registry {registry!r} is not a valid IPv6 address"
    if not repository:
        return "the repository name is empty"
    if len(repository) > _MAX_NAME:
        return f"the repository name is longer than {_MAX_NAME} characters"
    if not all(_COMPONENT.fullmatch(part) for part in repository.split("/")):
        return (
            f"repository {repository!r} must be '/'-separated components of lowercase letters and"
            " digits, joined inside a component by '.', '_', '__' or '-'"
        )
    return None


@dataclass(frozen=True)
class ImageRef:
    """A repository in a registry: what tags are listed from and resolved in.

    Validated on construction, so a repository name is always safe to put into a URL path.
    """

    registry: str
    repository: str

    def __post_init__(self) -> None:
        problem = _problem(self.registry, self.repository)
        if problem is not None:
            raise RegistryError(f"invalid image reference {self.registry}/{self.repository}: {problem}")

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        """Parse "[registry/]repo[:tag]" the way docker does, lowercasing the repository.

        GitHub owners keep their case in URLs and payloads, but GHCR names are lowercase, so
        "ghcr.io/Owner/Name" means "ghcr.io/owner/name". A ":tag" suffix is checked and dropped:
        an ImageRef names a repository and callers pass tags per call. Digest references
        ("@sha256:...") are rejected: watcher follows tags.
        """
        if not image or image != image.strip():
            raise RegistryError(f"invalid image {image!r}: empty or surrounded by whitespace")
        if "@" in image:
            raise RegistryError(
                f"invalid image {image!r}: digest references are not supported; name the repository"
            )
        head, slash, last = image.rpartition("/")
        if ":" in last:
            last, _, tag = last.partition(":")
            try:
                validate_tag(tag)
            except ValueError as exc:
                raise RegistryError(f"invalid image {image!r}: {exc}") from None
        name = f"{head}{slash}{last}"
        first, slash, rest = name.partition("/")
        is_host = "." in first or ":" in first or first.startswith("[") or first.lower() == "localhost"
        if slash and is_host:
            registry, path = first.lower(), rest.lower()
        else:
            registry, path = DOCKER_HUB, name.lower()
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in path:
                path = f"library/{path}"
        problem = _problem(registry, path)
        if problem is not None:
            raise RegistryError(f"invalid image {image!r}: {problem}")
        return cls(registry, path)

    @property
    def base_url(self) -> str:
        """https, except plain http for loopback registries (a local test registry has no TLS)."""
        scheme = "http" if _is_loopback(_split_host(self.registry)[0]) else "https"
        return f"{scheme}://{self.registry}"

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    def names(self, repo_digest: str) -> bool:
        """Whether a RepoDigests entry (`repo@sha256:...`, Docker's short names for Docker Hub)
        is of this repository."""
        try:
            return ImageRef.parse(repo_digest.rpartition("@")[0]) == self
        except RegistryError:
            return False


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry sent it: its media type, digest and exact bytes."""

    media_type: str
    digest: str
    body: bytes


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "bearer" or "basic"
    realm: str
    service: str
    scope: str


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # monotonic clock


_AUTH_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def _parse_challenge(header: str) -> _Challenge | None:
    """Parse a WWW-Authenticate header; quoted values may hold commas (scope="repo:a/b:pull,push")."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params: dict[str, str] = {}
    for key, quoted, bare in _AUTH_PARAM.findall(rest):
        params.setdefault(key.lower(), re.sub(r"\\(.)", r"\1", quoted) if quoted else bare)
    if scheme == "bearer" and not params.get("realm"):
        return None
    return _Challenge(scheme, params.get("realm", ""), params.get("service", ""), params.get("scope", ""))


def _checked_tag(tag: str) -> str:
    try:
        return validate_tag(tag)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def _checked_digest(digest: str) -> str:
    if _DIGEST.fullmatch(digest) is None:
        raise RegistryError(f"not an image digest: {digest!r}")
    return digest


def _verified(body: bytes, digest: str, ref: ImageRef) -> bytes:
    """`body` if it hashes to `digest` (sha256; other algorithms are taken on trust)."""
    if len(body) > _MAX_DOCUMENT:
        raise RegistryError(
            f"{ref.registry} sent {len(body)} bytes for {ref}@{digest}: too big to be a manifest or config"
        )
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm == "sha256" and hashlib.sha256(body).hexdigest() != hex_digest:
        raise RegistryError(f"{ref.registry} sent content for {ref}@{digest} that does not match that digest")
    return body


def _fail(response: httpx.Response, ref: ImageRef, subject: str) -> NoReturn:
    """Turn an unexpected final status into the matching error."""
    status = response.status_code
    if status == 404:
        raise NotFound(f"{subject} not found on {ref.registry}")
    if status in (401, 403):
        raise AuthError(f"{ref.registry} denied access to {subject} (HTTP {status})")
    raise RegistryError(f"{ref.registry} answered HTTP {status} for {subject}")


class RegistryClient:
    """Sync client for one set of credentials; safe to reuse across calls, tokens are cached.

    TLS certificates are always verified; only loopback registries are spoken to over http.
    A token is asked for only from a realm on the registry's own host or on a host `token_hosts`
    (or TOKEN_HOSTS) names for it, over https, or plain http when both the registry and the realm
    are on loopback: a registry's challenge must not send the credentials anywhere it likes.
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        max_retry_after: float = _MAX_RETRY_AFTER,
        on_attempt: AttemptObserver | None = None,
        token_hosts: Collection[tuple[str, str]] = (),
        plain_http: Collection[str] = (),
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("registry username and password must be given together")
        if max_retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("timeout must be positive; max_retries and backoff must not be negative")
        self._basic = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username is not None
            else None
        )
        self._max_retries = max_retries
        self._backoff = backoff
        # A 429 asking for a longer wait raises RateLimited at once (a webhook cannot wait long).
        self._max_retry_after = max_retry_after
        # Redirects are not followed: a redirect elsewhere would carry our Authorization header.
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "watcher"},
        )
        self._on_attempt = on_attempt
        self._token_hosts = TOKEN_HOSTS | frozenset(token_hosts)
        self._plain_http = frozenset(plain_http)
        self._challenges: dict[tuple[str, str], _Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}

    def _base(self, ref: ImageRef) -> str:
        """`ref.base_url`, or plain http for a registry `[registry] plain_http` lists (a
        registry on a private network without TLS, as Docker's insecure-registries)."""
        return f"http://{ref.registry}" if ref.registry in self._plain_http else ref.base_url

    def manifest_digest(self, ref: ImageRef, tag: str) -> str:
        """Digest of what `tag` points to (the index for multi-arch images), without pulling it."""
        tag = _checked_tag(tag)
        subject = f"image {ref}:{tag}"
        url = httpx.URL(f"{self._base(ref)}/v2/{ref.repository}/manifests/{tag}")
        response = self._request("HEAD", ref, url, accept=MANIFEST_ACCEPT)
        if response.status_code != 200:
            _fail(response, ref, subject)
        digest = response.headers.get("Docker-Content-Digest", "")
        if _DIGEST.fullmatch(digest) is None:
            raise RegistryError(f"{ref.registry} returned no valid Docker-Content-Digest for {subject}")
        return digest

    def manifest(self, ref: ImageRef, digest: str) -> Manifest:
        """The manifest (index or image) stored at `digest`, its bytes checked against it: what a
        deploy pinned to that digest will pull, read before anything is pulled."""
        digest = _checked_digest(digest)
        subject = f"image {ref}@{digest}"
        url = httpx.URL(f"{self._base(ref)}/v2/{ref.repository}/manifests/{digest}")
        response = self._request("GET", ref, url, accept=MANIFEST_ACCEPT)
        if response.status_code != 200:
            _fail(response, ref, subject)
        media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
        return Manifest(media_type, digest, _verified(response.content, digest, ref))

    def blob(self, ref: ImageRef, digest: str) -> bytes:
        """A small blob (an image config) by digest. Registries with external storage (GHCR, S3)
        answer with a redirect: it is followed once, without our credentials."""
        digest = _checked_digest(digest)
        subject = f"blob {ref}@{digest}"
        url = httpx.URL(f"{self._base(ref)}/v2/{ref.repository}/blobs/{digest}")
        response = self._request("GET", ref, url, accept="*/*")
        if response.status_code in _REDIRECTS and response.headers.get("Location"):
            location = response.url.join(response.headers["Location"])
            if not (
                location.scheme == "https"
                or (location.scheme == "http" and _is_loopback(location.host))
                or (location.scheme == "http" and ref.registry in self._plain_http)
            ):
                raise RegistryError(
                    f"{ref.registry} redirects {subject} to a URL that is not https: {location.host}"
                )
            response = self._send(
                "GET", location, {"Accept": "*/*"}, f"blob storage {location.host} of {ref.registry}"
            )
        if response.status_code != 200:
            _fail(response, ref, subject)
        return _verified(response.content, digest, ref)

    def tag_exists(self, ref: ImageRef, tag: str) -> bool:
        """Whether `tag` exists, e.g. to check a webhook's claim before deploying it."""
        try:
            self.manifest_digest(ref, tag)
        except NotFound:
            return False
        return True

    def list_tags(self, ref: ImageRef, *, page_size: int | None = None) -> list[str]:
        """All tags of the repository, in the registry's order, following every `Link: rel="next"`.

        Registries page silently (GHCR: 100 per page); stopping at the first page hides new tags.
        """
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be a positive number")
        origin = httpx.URL(self._base(ref))
        url = httpx.URL(f"{self._base(ref)}/v2/{ref.repository}/tags/list")
        if page_size is not None:
            url = url.copy_merge_params({"n": str(page_size)})
        unreadable = f"{ref.registry} returned an unreadable tag list for {ref}"
        tags: list[str] = []
        visited: set[str] = set()
        while True:
            visited.add(str(url))
            response = self._request("GET", ref, url, accept="application/json")
            if response.status_code != 200:
                _fail(response, ref, f"repository {ref}")
            try:
                page = response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(unreadable) from None
            if not isinstance(page, list) or not all(isinstance(tag, str) for tag in page):
                raise RegistryError(unreadable)
            tags.extend(page)
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return tags
            url = response.url.join(next_link)
            # Our token must not travel to another host, and a loop must not spin forever.
            if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
                raise RegistryError(f"{ref.registry} sent a tag-list page link to another host: {url.host}")
            if str(url) in visited:
                raise RegistryError(f"{ref.registry} sent a tag-list page link that loops")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, ref: ImageRef, url: httpx.URL, *, accept: str) -> httpx.Response:
        """Send with the credentials the registry asked for last time; answer a 401 challenge once."""
        key = (ref.registry, ref.repository)
        peer = f"registry {ref.registry}"
        challenge = self._challenges.get(key)
        response = self._send(method, url, self._headers(ref, challenge, accept), peer)
        if response.status_code != 401:
            return response
        challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise AuthError(f"{ref.registry} requires authentication of a kind watcher does not support")
        self._challenges[key] = challenge
        # A 401 despite a cached token means it was revoked or expired early: fetch a fresh one.
        self._tokens.pop((ref.registry, challenge.scope), None)
        response = self._send(method, url, self._headers(ref, challenge, accept), peer)
        if response.status_code == 401:
            hint = "check the credentials" if self._basic else "no credentials are configured"
            raise AuthError(f"{ref.registry} denied pull access to {ref} ({hint})")
        return response

    def _headers(self, ref: ImageRef, challenge: _Challenge | None, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if challenge is None:
            return headers
        if challenge.scheme == "basic":
            if self._basic is None:
                raise AuthError(f"{ref.registry} requires a username and password for {ref}")
            headers["Authorization"] = self._basic
        else:
            headers["Authorization"] = f"Bearer {self._token(ref.registry, challenge)}"
        return headers

    def _token(self, registry: str, challenge: _Challenge) -> str:
        """A bearer token for the challenge's scope, from cache while it has life left."""
        key = (registry, challenge.scope)
        cached = self._tokens.get(key)
        now = monotonic()
        if cached is not None and now < cached.renew_at:
            return cached.value
        realm = self._realm(registry, challenge.realm)
        wanted = (("service", challenge.service), ("scope", challenge.scope))
        params = {name: value for name, value in wanted if value}
        headers = {"Accept": "application/json"}
        if self._basic is not None:
            headers["Authorization"] = self._basic
        log.debug("requesting a registry token from %s for scope %r", realm.host, challenge.scope)
        # copy_merge_params: httpx's params= would replace a query the realm already carries.
        peer = f"token service {realm.host} of {registry}"
        response = self._send("GET", realm.copy_merge_params(params), headers, peer)
        if response.status_code in (401, 403):
            who = "rejected the credentials" if self._basic else "refused anonymous access"
            raise AuthError(f"the token service of {registry} {who} (HTTP {response.status_code})")
        if response.status_code != 200:
            raise RegistryError(f"the token service of {registry} answered HTTP {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            expires_in = body.get("expires_in")
        except (ValueError, AttributeError):
            raise RegistryError(f"the token service of {registry} returned no readable JSON") from None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service of {registry} returned no token")
        ttl = _DEFAULT_TOKEN_TTL
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            ttl = float(expires_in)
        self._tokens[key] = _Token(token, now + ttl - min(_TOKEN_MARGIN, ttl / 2))
        return token

    def _realm(self, registry: str, named: str) -> httpx.URL:
        """The token service `registry` names, if the credentials may go there (AuthError)."""
        try:
            realm = httpx.URL(named)
        except httpx.InvalidURL:
            realm = httpx.URL()
        host = _split_host(registry)[0]
        shown = str(realm.copy_with(query=None, fragment=None))[:200] if realm.host else repr(named[:200])
        if realm.host != host and (registry, realm.host) not in self._token_hosts:
            raise AuthError(
                f"{registry} names the token service {shown}, which is not on {host}: no token is "
                f"asked for there (add its host to [registry] token_hosts for {registry} if it is "
                "the registry's own)"
            )
        if not (
            realm.scheme == "https"
            or (realm.scheme == "http" and _is_loopback(host) and _is_loopback(realm.host))
            or (realm.scheme == "http" and registry in self._plain_http and realm.host == host)
        ):
            raise AuthError(
                f"{registry} names the token service {shown}, which is not https: no token is asked "
                "for in clear text (plain http only for a registry and a token service on loopback)"
            )
        return realm

    def _send(self, method: str, url: httpx.URL, headers: dict[str, str], peer: str) -> httpx.Response:
        """One request with retries (watcher/retry.py): 429 after Retry-After, 5xx and network
        errors with backoff, `max_retries` retries at most."""
        attempts = self._max_retries + 1

        def log_retry(retry_state: RetryCallState) -> None:
            log.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                peer,
                problem(retry_state),
                retry_state.attempt_number,
                self._max_retries,
                retry_state.upcoming_sleep,
            )

        def give_up(retry_state: RetryCallState) -> RegistryError:
            asked = asked_wait(retry_state)
            if asked is not None and asked > self._max_retry_after:
                return RateLimited(f"{peer} is rate-limiting; it asks to wait {asked:.0f} s", asked)
            outcome = retry_state.outcome
            if outcome is not None and not outcome.failed and outcome.result().status_code == 429:
                return RateLimited(f"{peer} is still rate-limiting after {attempts} attempts")
            return RegistryUnavailable(
                f"{peer} is unavailable after {attempts} attempts: {problem(retry_state)}"
            )

        retrying = http_retrying(
            attempts=attempts,
            initial=self._backoff,
            maximum=_MAX_BACKOFF,
            max_retry_after=self._max_retry_after,
            before_sleep=log_retry,
            give_up=give_up,
            sleep=sleep,
        )
        return retrying(self._attempt, method, url, headers)

    def _attempt(self, method: str, url: httpx.URL, headers: dict[str, str]) -> httpx.Response:
        """One HTTP request, told to `on_attempt` (the metrics) with its host, time and status."""
        begun = monotonic()
        status: int | None = None
        try:
            response = self._http.request(method, url, headers=headers)
            status = response.status_code
            return response
        finally:
            if self._on_attempt is not None:
                self._on_attempt(url.netloc.decode("ascii"), monotonic() - begun, status)
