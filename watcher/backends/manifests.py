"""What a tag's manifest says about the platforms its image runs on.

A tag names either an index (OCI image index, Docker manifest list: one manifest per platform) or
one image manifest, whose config blob names its os and architecture. Docker refuses an image for
another platform only when it pulls it, or, for a single-platform image, not at all: the container
then fails with `exec format error` after the deploy began. Reading the manifest first lets a
deploy refuse before anything is pulled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watcher.backends.registry import Manifest, RegistryError

INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)


@dataclass(frozen=True)
class ImagePlatform:
    """An OCI platform: `linux/amd64`, `linux/arm/v7`."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


#: Reads a blob (a config) of the manifest's repository by digest.
BlobReader = Callable[[str], bytes]


def platforms(manifest: Manifest, read_blob: BlobReader) -> list[ImagePlatform]:
    """The platforms `manifest` has an image for, in its order (an index's entries, or the one
    image's config); attestation entries (`unknown/unknown`) are no platform and are left out."""
    document = _document(manifest.body, f"manifest {manifest.digest}")
    media_type = manifest.media_type or str(document.get("mediaType") or "")
    if media_type in INDEX_TYPES or (not media_type and isinstance(document.get("manifests"), list)):
        return _index_platforms(document, manifest.digest)
    if document.get("schemaVersion") == 1:  # Docker's legacy manifest names the architecture itself
        return [_platform({"os": "linux", "architecture": document.get("architecture")}, manifest.digest)]
    config = document.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str) or not digest:
        raise RegistryError(f"manifest {manifest.digest} names no config blob, so its platform is unknown")
    return [_platform(_document(read_blob(digest), f"config {digest}"), f"config {digest}")]


def members(manifest: Manifest) -> frozenset[str]:
    """The digests of the manifests an index lists (none for an image manifest): the platform
    manifests one multi-arch push also names in its events."""
    document = _document(manifest.body, f"manifest {manifest.digest}")
    entries = document.get("manifests")
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(
        entry["digest"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    )


def _index_platforms(document: dict[str, Any], digest: str) -> list[ImagePlatform]:
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError(f"index {digest} lists no manifests")
    found: list[ImagePlatform] = []
    for entry in entries:
        described = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(described, dict) or described.get("os") == "unknown":
            continue
        platform = _platform(described, f"index {digest}")
        if platform not in found:
            found.append(platform)
    return found


def _platform(described: dict[str, Any], where: str) -> ImagePlatform:
    os, architecture, variant = (described.get(name) or "" for name in ("os", "architecture", "variant"))
    if (
        not (isinstance(os, str) and isinstance(architecture, str) and isinstance(variant, str))
        or not os
        or not architecture
    ):
        raise RegistryError(f"{where} names no readable os and architecture")
    return ImagePlatform(os.lower(), architecture.lower(), variant.lower())


def _document(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{what} is not readable JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return document
