"""Which image platforms (OS, architecture, variant) run on the Docker host an app deploys on.

The host is the Docker engine's (`docker info`: OSType, Architecture), not this Python process's:
watcher may talk to a remote engine (DOCKER_HOST). The engine names architectures the kernel's way
(`x86_64`, `aarch64`, `armv7l`); manifests name them the OCI way (`amd64`, `arm64`, `arm` + `v7`).
Matching follows containerd's: arm64 without a variant is v8; an arm host runs its own variant and
older ones (v7 runs v6 and v5); other architectures' variants are not compared, since the engine
does not tell them.
"""

from __future__ import annotations

from watcher.backends.manifests import ImagePlatform

#: Kernel (uname -m) and Go names of architectures -> OCI architecture and variant.
_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "arm": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64le": ("mips64le", ""),
    "loongarch64": ("loong64", ""),
    "loong64": ("loong64", ""),
}


def host_platform(os_type: str, architecture: str) -> ImagePlatform:
    """The OCI platform of an engine that reports `os_type` and `architecture`."""
    arch, variant = _ARCHITECTURES.get(architecture.lower(), (architecture.lower(), ""))
    return ImagePlatform(os_type.lower(), arch, variant)


def normalized(platform: ImagePlatform) -> ImagePlatform:
    """`platform` with containerd's defaults: arm64 is v8, arm without a variant is v7."""
    arch = platform.architecture.lower()
    variant = platform.variant.lower()
    if arch in _ARCHITECTURES and arch not in ("arm", "arm64"):
        arch, default = _ARCHITECTURES[arch]
        variant = variant or default
    if arch == "arm64":
        variant = variant or "v8"
    elif arch == "arm":
        variant = variant or "v7"
    return ImagePlatform(platform.os.lower(), arch, variant)


def runs_on(image: ImagePlatform, host: ImagePlatform) -> bool:
    """Whether an image built for `image` runs on `host`."""
    image, host = normalized(image), normalized(host)
    if (image.os, image.architecture) != (host.os, host.architecture):
        return False
    if host.architecture == "arm64":
        return image.variant == host.variant
    if host.architecture == "arm":
        return _level(image.variant) <= _level(host.variant)
    return True


def _level(variant: str) -> int:
    """An arm variant's number (`v7` -> 7); an unreadable one is the highest, so it never matches."""
    return int(variant[1:]) if variant[:1] == "v" and variant[1:].isdigit() else 99


def missing(image: str, available: list[ImagePlatform], host: ImagePlatform) -> str | None:
    """Why `image` cannot run on `host` (None when one of its platforms does)."""
    if any(runs_on(platform, host) for platform in available):
        return None
    has = ", ".join(str(p) for p in available) or "no platform it names"
    return f"{image} has no {normalized(host).os}/{_short(normalized(host))} image (it has: {has})"


def _short(platform: ImagePlatform) -> str:
    """The architecture as people write it: `arm64`, `amd64`, `arm/v7`."""
    return f"arm/{platform.variant}" if platform.architecture == "arm" else platform.architecture
