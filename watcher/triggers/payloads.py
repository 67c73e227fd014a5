"""What a webhook delivery says was pushed, read from untrusted JSON without ever raising.

Three senders:
- GitHub `package` / `registry_package` events (field notes §4): owner, name and tag from the
  payload; `package_version` and `container_metadata` can be null, a tag can be empty (an untagged
  manifest: one event of a multi-arch push), `package_url` can end in a bare `:`.
- Docker Distribution notification envelopes (docker-registry, GitLab, Harbor's internal
  registry): `{"events": [{"action": "push", "target": {"repository", "tag", "digest"}, ...}]}`.
- Harbor's own webhook (`PUSH_ARTIFACT`): `event_data.resources[].{tag, resource_url}`.

Every function here takes whatever `json.loads` produced and returns either pushes or the reason
the delivery is ignored; it raises nothing, so no payload can turn into a 500. Repository names are
lowercased and every tag passes `validate_tag` before it leaves this module.

Signatures: `verify_github_signature` checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body)
with `hmac.compare_digest`, so the time taken says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from watcher.backends.registry import ImageRef, RegistryError
from watcher.validation import validate_tag

GITHUB_HOST = "ghcr.io"
CONTAINER_ECOSYSTEMS = ("container", "docker")  # CONTAINER (GHCR), docker (the legacy registry)
GITHUB_ACTIONS = ("published", "updated")
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_SHOWN = 60


@dataclass(frozen=True)
class Push:
    """Tags pushed to one repository (as the sender names it); `digest` as the sender saw it."""

    registry: str
    repository: str
    tags: tuple[str, ...]
    digest: str | None = None
    event_id: str | None = None  # the registry's event id (Distribution), for deduplication

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class Ignored:
    reason: str
    event_id: str | None = None  # as Push.event_id: the log names every event of an envelope


def shown(value: Any) -> str:
    """A payload value, quoted and cut, fit for a log line or a reason."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def verify_github_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`header` is `sha256=<hex HMAC-SHA256 of body keyed by secret>`; constant-time compare."""
    if not secret or not header:
        return False
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), match.group(1).lower().encode())


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub would send for `body` (tests, benchmarks, clients)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _digest(value: Any) -> str | None:
    return value if isinstance(value, str) and _DIGEST.fullmatch(value) else None


def _split_reference(reference: str) -> tuple[str, str | None]:
    """`host/repo:tag` -> (`host/repo`, tag); a bare trailing `:` (untagged) gives tag None."""
    reference = reference.strip()
    if "@" in reference:
        reference = reference.split("@", 1)[0]
    head, slash, last = reference.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        return f"{head}{slash}{last}", tag or None
    return reference, None


def _image(reference: str) -> ImageRef | None:
    """An image reference from a payload, only when it names a host (never Docker Hub by default)."""
    if not reference or "/" not in reference:
        return None
    first = reference.split("/", 1)[0]
    if not ("." in first or ":" in first or first.lower() == "localhost"):
        return None
    try:
        return ImageRef.parse(reference)
    except RegistryError:
        return None


def _tags(candidates: list[Any]) -> tuple[tuple[str, ...], str | None]:
    """The valid tags among candidates (order kept), or the reason there are none."""
    tags: list[str] = []
    problem = None
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate:
            continue
        try:
            tags.append(validate_tag(candidate))
        except ValueError as exc:
            problem = str(exc)
    if tags:
        return tuple(dict.fromkeys(tags)), None
    return (), problem


def parse_github(event: str, payload: Any) -> Push | Ignored:
    """A `package` or `registry_package` event: what was pushed, or why it is ignored."""
    if not isinstance(payload, dict):
        return Ignored("the payload is not a JSON object")
    action = payload.get("action")
    if action not in GITHUB_ACTIONS:
        return Ignored(f"action {shown(action)} is not one of {', '.join(GITHUB_ACTIONS)}")
    package = payload.get(event)
    if not isinstance(package, dict):
        package = payload.get("registry_package") if event == "package" else payload.get("package")
    if not isinstance(package, dict):
        return Ignored(f"no {event} object in the payload")
    ecosystem = _text(package.get("package_type")) or _text(package.get("ecosystem"))
    if ecosystem.lower() not in CONTAINER_ECOSYSTEMS:
        return Ignored(f"package type {shown(ecosystem or None)} is not a container image")
    owner = _text(_dict(package.get("owner")).get("login")) or _text(package.get("namespace"))
    name = _text(package.get("name"))
    version = package.get("package_version")
    if not isinstance(version, dict):
        return Ignored("no package_version: nothing was tagged")
    metadata = _dict(version.get("container_metadata"))
    tag_info = _dict(metadata.get("tag"))
    url_image, url_tag = _split_reference(_text(version.get("package_url")))
    docker_metadata = version.get("docker_metadata")
    legacy = [
        tag
        for entry in (docker_metadata if isinstance(docker_metadata, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("tags"), list)
        for tag in entry["tags"]
    ]
    # The tag GitHub names is the tag; the package URL and the legacy list only stand in when it
    # names none (never when it names an invalid one).
    named = tag_info.get("name")
    tags, problem = _tags([named] if isinstance(named, str) and named else [url_tag, *legacy])
    if not tags:
        if problem:
            return Ignored(f"invalid tag: {problem}")
        return Ignored("untagged version (digest only): nothing to deploy")

    ref = _image(url_image)
    if ref is None:
        if not owner or not name:
            return Ignored("the payload names no package owner and name")
        try:
            ref = ImageRef(GITHUB_HOST, f"{owner}/{name}".lower())
        except RegistryError:
            return Ignored(f"package {shown(owner + '/' + name)} is not a valid image name")
    digest = _digest(tag_info.get("digest")) or _digest(_dict(metadata.get("manifest")).get("digest"))
    return Push(ref.registry, ref.repository, tags, digest)


def parse_distribution(payload: Any) -> list[Push | Ignored]:
    """A Docker Distribution notification envelope: one entry per event."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return [Ignored("not a notification envelope (no events list)")]
    results: list[Push | Ignored] = []
    for event in payload["events"]:
        if not isinstance(event, dict):
            results.append(Ignored("an event is not a JSON object"))
            continue
        event_id = _text(event.get("id"))[:100] or None
        target = _dict(event.get("target"))
        if event.get("action") != "push":
            results.append(Ignored(f"action {shown(event.get('action'))} is not push", event_id))
            continue
        media = _text(target.get("mediaType"))
        if media and media not in MANIFEST_TYPES:
            results.append(Ignored(f"a {shown(media)} push is no tagged image", event_id))
            continue
        tags, problem = _tags([target.get("tag")])
        if not tags:
            results.append(
                Ignored(f"invalid tag: {problem}" if problem else "untagged push (digest only)", event_id)
            )
            continue
        host = _text(_dict(event.get("request")).get("host"))
        if not host:
            url = _text(target.get("url"))
            host = re.sub(r"^https?://", "", url).split("/", 1)[0] if url else ""
        repository = _text(target.get("repository"))
        ref = _image(f"{host}/{repository}") if host and repository else None
        if ref is None:
            results.append(
                Ignored(
                    f"no valid registry host and repository ({shown(host)}, {shown(repository)})", event_id
                )
            )
            continue
        results.append(Push(ref.registry, ref.repository, tags, _digest(target.get("digest")), event_id))
    return results or [Ignored("the envelope holds no event")]


def parse_harbor(payload: Any) -> list[Push | Ignored]:
    """Harbor's own webhook payload (`type: PUSH_ARTIFACT`)."""
    if not isinstance(payload, dict):
        return [Ignored("the payload is not a JSON object")]
    kind = payload.get("type")
    if kind != "PUSH_ARTIFACT":
        return [Ignored(f"Harbor event {shown(kind)} is not PUSH_ARTIFACT")]
    data = _dict(payload.get("event_data"))
    resources = data.get("resources") if isinstance(data.get("resources"), list) else []
    results: list[Push | Ignored] = []
    for resource in resources:
        resource = _dict(resource)
        image, url_tag = _split_reference(_text(resource.get("resource_url")))
        ref = _image(image)
        tags, problem = _tags([resource.get("tag"), url_tag])
        if ref is None:
            results.append(Ignored(f"resource_url {shown(resource.get('resource_url'))} names no image"))
        elif not tags:
            results.append(Ignored(f"invalid tag: {problem}" if problem else "untagged artifact"))
        else:
            results.append(Push(ref.registry, ref.repository, tags, _digest(resource.get("digest"))))
    return results or [Ignored("the Harbor event lists no resource")]


def parse_registry_notification(payload: Any) -> list[Push | Ignored]:
    """`POST /hooks/registry` takes a Distribution envelope or a Harbor webhook."""
    if isinstance(payload, dict) and "events" not in payload and "event_data" in payload:
        return parse_harbor(payload)
    return parse_distribution(payload)
