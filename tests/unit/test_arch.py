"""Image-platform checks before a pull: manifest parsing, host platform matching, the pinned digest
(watcher/backends/manifests.py, watcher/engine/arch.py, watcher/engine/pin.py), against a
registry faked with httpx.MockTransport: pure logic, no pull; and the images the compose files
declare, rendered once per deploy."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.harness.triggers import write_project
from watcher.backends import compose
from watcher.backends.manifests import ImagePlatform, platforms
from watcher.backends.registry import ImageRef, Manifest, RegistryClient, RegistryError
from watcher.config import load_host
from watcher.engine import pin
from watcher.engine.arch import host_platform, missing, runs_on
from watcher.errors import DeployFailed
from watcher.platforms.compose import ComposePlatform

REF = ImageRef("ghcr.io", "x/y")
IMAGE = "ghcr.io/x/y:1.4"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
AMD64, ARM64 = host_platform("linux", "x86_64"), host_platform("linux", "aarch64")


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def config_blob(architecture: str, variant: str = "") -> bytes:
    return json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "variant": variant,
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()


def image_manifest(config: bytes, media_type: str = OCI_MANIFEST) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()


def index(*entries: dict[str, str], media_type: str = OCI_INDEX) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": "sha256:" + f"{n:02x}" * 32,
                    "size": 1,
                    "platform": entry,
                }
                for n, entry in enumerate(entries)
            ],
        }
    ).encode()


def parsed(body: bytes, media_type: str, blobs: dict[str, bytes] | None = None) -> list[str]:
    return [str(p) for p in platforms(Manifest(media_type, digest_of(body), body), (blobs or {}).__getitem__)]


# -- manifests ----------------------------------------------------------------------------------


def test_an_index_lists_its_platforms_without_the_attestations() -> None:
    body = index(
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "amd64"},
    )
    assert parsed(body, OCI_INDEX) == ["linux/amd64", "linux/arm/v7"]
    assert parsed(index({"os": "linux", "architecture": "arm64"}, media_type=DOCKER_LIST), DOCKER_LIST) == [
        "linux/arm64"
    ]
    assert parsed(body, "") == ["linux/amd64", "linux/arm/v7"], "no Content-Type: the body's mediaType says"


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_one_image_has_the_platform_of_its_config(media_type: str) -> None:
    config = config_blob("arm64", "v8")
    assert parsed(image_manifest(config, media_type), media_type, {digest_of(config): config}) == [
        "linux/arm64/v8"
    ]


def test_a_legacy_manifest_names_its_architecture() -> None:
    assert parsed(
        json.dumps({"schemaVersion": 1, "architecture": "amd64"}).encode(),
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ) == ["linux/amd64"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(),
        json.dumps({"mediaType": OCI_INDEX, "manifests": 3}).encode(),
        index({"os": "linux"}),
    ],
)
def test_an_unreadable_manifest_is_a_registry_error(body: bytes) -> None:
    with pytest.raises(RegistryError):
        parsed(body, "")


# -- the host and matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("s390x", "linux/s390x"),
        ("something", "linux/something"),
    ],
)
def test_the_engine_architecture_is_named_the_oci_way(arch: str, expected: str) -> None:
    assert str(host_platform("linux", arch)) == expected


@pytest.mark.parametrize(
    ("image", "host", "runs"),
    [
        (ImagePlatform("linux", "amd64"), AMD64, True),
        (ImagePlatform("linux", "arm64"), AMD64, False),
        (ImagePlatform("linux", "amd64"), ARM64, False),
        (ImagePlatform("linux", "arm64"), ARM64, True),  # arm64 without a variant is v8
        (ImagePlatform("linux", "arm64", "v8"), ARM64, True),
        (ImagePlatform("windows", "amd64"), AMD64, False),
        (ImagePlatform("linux", "arm", "v6"), host_platform("linux", "armv7l"), True),  # older arm runs
        (ImagePlatform("linux", "arm", "v7"), host_platform("linux", "armv6l"), False),  # newer does not
        (ImagePlatform("linux", "arm"), host_platform("linux", "armv7l"), True),  # no variant: v7
        (ImagePlatform("linux", "arm", "v7"), ARM64, False),
        (ImagePlatform("linux", "x86_64"), AMD64, True),
    ],
)
def test_which_images_run_on_which_hosts(image: ImagePlatform, host: ImagePlatform, runs: bool) -> None:
    assert runs_on(image, host) is runs


def test_the_refusal_names_the_host_and_what_the_image_has() -> None:
    assert (
        missing(IMAGE, [ImagePlatform("linux", "amd64"), ImagePlatform("linux", "arm", "v7")], ARM64)
        == "ghcr.io/x/y:1.4 has no linux/arm64 image (it has: linux/amd64, linux/arm/v7)"
    )
    assert missing(IMAGE, [ImagePlatform("linux", "amd64")], AMD64) is None
    assert "has no linux/arm/v6 image" in str(
        missing(IMAGE, [ImagePlatform("linux", "arm", "v7")], host_platform("linux", "armv6l"))
    )


# -- the pinned digest, against a fake registry --------------------------------------------------


class Registry:
    """Answers a tag's HEAD with `tag_digest` and GETs from `stored` (digest -> (type, bytes))."""

    def __init__(self, tag_digest: str, stored: dict[str, tuple[str, bytes]]) -> None:
        self.tag_digest = tag_digest
        self.stored = stored
        self.paths: list[str] = []

    def client(self) -> RegistryClient:
        return RegistryClient(transport=httpx.MockTransport(self._handle), max_retries=0)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        reference = request.url.path.rsplit("/", 1)[1]
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Docker-Content-Digest": self.tag_digest})
        if reference not in self.stored:
            return httpx.Response(404)
        media_type, body = self.stored[reference]
        return httpx.Response(200, content=body, headers={"Content-Type": media_type})


def single(architecture: str) -> tuple[str, dict[str, tuple[str, bytes]]]:
    config = config_blob(architecture)
    manifest = image_manifest(config)
    return digest_of(manifest), {
        digest_of(manifest): (OCI_MANIFEST, manifest),
        digest_of(config): ("application/octet-stream", config),
    }


def pinned(registry: Registry, queued: str | None, host: ImagePlatform = AMD64) -> pin.Pin:
    with registry.client() as client:
        chosen = pin.resolve(client, REF, "1.4", queued, IMAGE)
        pin.check(client, REF, chosen, host, IMAGE)
    return chosen


def test_an_image_for_another_architecture_only_is_refused() -> None:
    digest, stored = single("arm64")
    with pytest.raises(
        DeployFailed,
        match=r"^ghcr.io/x/y:1.4 has no linux/amd64 image \(it has: linux/arm64\); "
        "nothing was changed$",
    ):
        pinned(Registry(digest, stored), None)
    body = index(
        {"os": "linux", "architecture": "arm64"}, {"os": "linux", "architecture": "arm", "variant": "v7"}
    )
    with pytest.raises(DeployFailed, match=r"has no linux/amd64 image \(it has: linux/arm64, linux/arm/v7\)"):
        pinned(Registry(digest_of(body), {digest_of(body): (OCI_INDEX, body)}), None)


def test_the_queued_digest_is_deployed_and_a_moved_tag_reported() -> None:
    queued, stored = single("amd64")
    now, more = single("arm64")  # the tag moved to an image this host cannot even run
    registry = Registry(now, {**stored, **more})
    chosen = pinned(registry, queued)
    assert (chosen.digest, chosen.moved) == (queued, now)
    assert f"GET /v2/x/y/manifests/{queued}" in registry.paths, "the queued digest is what is checked"
    assert pinned(Registry(queued, stored), queued).moved is None
    assert pinned(Registry(queued, stored), None).digest == queued, "no queued digest: the tag's"


def test_a_queued_digest_gone_from_the_registry_fails_clearly() -> None:
    now, stored = single("amd64")
    gone = "sha256:" + "cd" * 32
    with pytest.raises(
        DeployFailed,
        match=f"queued at {gone}, which the registry no longer has "
        f"\\(the tag now points at {now}\\); nothing was changed",
    ):
        pinned(Registry(now, stored), gone)


def test_content_that_does_not_match_its_digest_is_refused() -> None:
    digest, stored = single("amd64")
    stored[digest] = (OCI_MANIFEST, stored[digest][1] + b" ")
    with pytest.raises(DeployFailed, match="does not match that digest"):
        pinned(Registry(digest, stored), None)


def test_a_blob_redirect_is_followed_without_credentials() -> None:
    config = config_blob("amd64")
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "ghcr.io" and "Authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="ghcr.io"'})
        if request.url.host == "ghcr.io":
            return httpx.Response(307, headers={"Location": "https://storage.example/blob?sig=1"})
        return httpx.Response(200, content=config)

    with RegistryClient(transport=httpx.MockTransport(handle), username="u", password="p") as client:
        assert client.blob(REF, digest_of(config)) == config
    assert "Authorization" in seen[1].headers
    assert seen[-1].url.host == "storage.example" and "Authorization" not in seen[-1].headers

    def insecure(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "http://storage.example/blob"})

    with (
        RegistryClient(transport=httpx.MockTransport(insecure)) as client,
        pytest.raises(RegistryError, match="not https"),
    ):
        client.blob(REF, digest_of(config))


# -- the images the compose files declare ----------------------------------------------------------


@pytest.mark.parametrize(
    "web, refused",
    [
        ("127.0.0.1:5000/acme/shop:{v}", None),
        ("127.0.0.1:5000/other/shop:{v}", "service web: its image resolves to 127.0.0.1:5000/other/shop:1.4"),
        ("127.0.0.1:5000/acme/shop:latest", "no service of compose.yml"),
    ],
)
def test_the_compose_files_are_rendered_once_to_check_their_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web: str, refused: str | None
) -> None:
    config = load_host(write_project(tmp_path, app="shop", image="127.0.0.1:5000/acme/shop", port=9), {}).app(
        None
    )
    rendered: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        rendered.append(argv)
        version = kwargs["env"][config.version_env]
        services = {"web": {"image": web.format(v=version)}, "caddy": {"image": "caddy:2"}}
        return subprocess.CompletedProcess(argv, 0, json.dumps({"services": services}), "")

    monkeypatch.setattr(compose.subprocess, "run", run)
    platform = ComposePlatform(config, SimpleNamespace())  # type: ignore[arg-type]
    if refused is None:
        assert pin.check_images(config, platform, "1.4") == {"web": "127.0.0.1:5000/acme/shop:1.4"}
    else:
        with pytest.raises(DeployFailed, match=re.escape(refused)):
            pin.check_images(config, platform, "1.4")
    assert len(rendered) == 1 and rendered[0][-3:] == ["config", "--format", "json"]


@pytest.mark.parametrize("follows", [None, True, False])
def test_a_companion_on_its_own_image_follows_the_version_when_declared_or_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, follows: bool | None
) -> None:
    declared = "" if follows is None else f"follows_version = {'true' if follows else 'false'}"
    path = write_project(
        tmp_path,
        app="shop",
        image="127.0.0.1:5000/acme/shop",
        port=9,
        extra=f"[services.stream]\n{declared}\n",
    )
    config = load_host(path, {}).app(None)
    stream = "127.0.0.1:5000/acme/stream:{v}" if follows is None else "127.0.0.1:5000/acme/stream:own"

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        version = kwargs["env"][config.version_env]
        services = {
            "web": {"image": f"127.0.0.1:5000/acme/shop:{version}"},
            "stream": {"image": stream.format(v=version)},
        }
        return subprocess.CompletedProcess(argv, 0, json.dumps({"services": services}), "")

    monkeypatch.setattr(compose.subprocess, "run", run)
    images = pin.check_images(config, ComposePlatform(config, SimpleNamespace()), "1.4")  # type: ignore[arg-type]
    expected = "127.0.0.1:5000/acme/stream:own" if follows is False else "127.0.0.1:5000/acme/stream:1.4"
    assert images == {"web": "127.0.0.1:5000/acme/shop:1.4", "stream": expected}
