"""Offline stand-ins for the images of the corpus's stacks (tests/fixtures/corpus): one program,
tests/harness/standin.py, on the test app's runtime, playing the role each compose file gives
it, in images pushed under names that look like the real ones' (`127.0.0.1:5000/umami-software/umami:v1`).

Each version of an app image differs (its /etc/app/config.json), so a deploy really changes what
answers. A stack's images are built by the worker that runs the stack, once per run, under the
harness's lock (tests/harness/images.py `exclusive`): `watcher cleanup` removes an app's unused
local images, so no other stack may share them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import images

STANDIN = Path(__file__).with_name("standin.py")
REGISTRY = images.REGISTRY
#: The names real commands give the stand-in (the compose files' `command`, `entrypoint` and
#: healthchecks run these).
COMMANDS = (
    "usr/local/bin/bundle",
    "usr/local/bin/node",
    "usr/local/bin/pg_isready",
    "usr/local/bin/curl",
    "listmonk/listmonk",
    "app/docker/entrypoints/rails.sh",
    "entrypoint.sh",
)


@dataclass(frozen=True)
class StandIn:
    """One image repository of a stack: its path under the registry (the real one's), the
    environment baked in (the stand-in's role, port, prefix, peer), its tags, and which tags
    are built broken (their one-shot migration exits 1)."""

    repo: str
    env: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ("v1", "v2")
    broken: tuple[str, ...] = ()
    shellless: bool = False
    workdir: str = "/app"

    def ref(self, tag: str) -> str:
        return f"{REGISTRY}/{self.repo}:{tag}"


def _layer(version: str, broken: bool) -> images.RootFS:
    layer = images.RootFS()
    layer.file("app/standin.py", STANDIN.read_bytes(), 0o755)
    for path in COMMANDS:
        layer.symlink(path, "/app/standin.py")
    config = {"version": version, "healthy": True, "migrate_exit": 1 if broken else 0}
    layer.file("etc/app/config.json", json.dumps(config, sort_keys=True).encode())
    layer.file("etc/app/version", f"{version}\n".encode())
    for d in ("www", "listmonk/uploads", "media", "templates", "certs", "data"):
        layer.dir(d)
    return layer


def build(standin: StandIn) -> list[str]:
    """Build and push every tag of `standin`; return the refs."""
    if standin.shellless:  # static answers, no roles: the harness's distroless-like app
        port = int(standin.env.get("PORT", "8080"))
        refs = [images.build_shellless_app_image(standin.ref(tag), tag, port=port) for tag in standin.tags]
        for ref in refs:
            images.push(ref)
        return refs
    base = images.build_app_base_image()
    refs = []
    for tag in standin.tags:
        env = {"STANDIN_ROLE": "serve", "PORT": "8080", **standin.env}
        changes = [
            "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(env.items())),
            f"WORKDIR {standin.workdir}",
            f"ENTRYPOINT {json.dumps(['/app/standin.py'])}",
            "CMD []",
            f"LABEL org.opencontainers.image.version={json.dumps(tag)}",
        ]
        ref = standin.ref(tag)
        images._commit(ref, base, _layer(tag, tag in standin.broken), changes)
        images.push(ref)
        refs.append(ref)
    return refs


def build_all(standins: list[StandIn]) -> list[str]:
    """Every image of a stack, once per machine at a time (xdist workers wait for each other)."""
    with images.exclusive():
        images.build_caddy_image(images.DEFAULT_CADDY_REF)
        redis = images.build_redis_image(images.DEFAULT_REDIS_REF)
        refs = []
        for standin in standins:
            if standin.env.get("STANDIN_ROLE") == "redis":
                for tag in standin.tags:  # the real redis-server of the harness, under the stack's name
                    refs.append(images.tag(redis, standin.ref(tag)))
                    images.push(standin.ref(tag))
            else:
                refs += build(standin)
        return refs
