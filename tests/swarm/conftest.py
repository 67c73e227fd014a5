"""Fixtures of the tests on a real multi-node Docker Swarm (tests/harness/swarm.py).

`swarm1` and `swarm3` are module-scoped: under pytest-xdist `--dist loadscope` a module runs on
one worker, which starts its swarm once, runs the module's tests in file order and tears the
swarm down; swarms of other workers live beside it (names, subnets and address pools are unique
per swarm, and at most WATCHER_SWARM_MAX swarms run on the machine at once). Every start first
removes what swarms of dead processes left.

Under CI=true a missing prerequisite (root, nsenter, ip, dockerd, docker-registry, curl, a
writable cgroup hierarchy) fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.harness.stack import CADDY_IMAGE
from tests.harness.swarm import Swarm, missing_tools

#: The test app's local repository on the main engine; `Swarm.push` copies it into a swarm.
SWARM_APP = "watcher-test/swarm-app"


@pytest.fixture(scope="session")
def swarm_images(real_services: None) -> dict[str, str]:
    """The edge's Caddy and the test app (v1, v2), built offline on the main engine once per
    machine: {"caddy": ref, "v1": ref, "v2": ref}."""
    require("the swarm tests", missing_tools())
    from tests.harness import images

    with images.exclusive():
        refs = {"caddy": images.build_caddy_image(CADDY_IMAGE)}
        for version in ("v1", "v2"):
            refs[version] = images.build_app_image(f"{SWARM_APP}:{version}", version)
    return refs


def _swarm(nodes: int, swarm_images: dict[str, str]) -> Iterator[Swarm]:
    require(f"a {nodes}-node swarm", missing_tools())
    swarm = Swarm(nodes)
    try:
        swarm.start()
        swarm.load_images(swarm_images["caddy"])  # the edge runs on node 1
        print(f"swarm {swarm.id} ({nodes} nodes) up: {json.dumps(_rounded(swarm.timings))}")
        yield swarm
    finally:
        swarm.close()
        print(f"swarm {swarm.id} down: {json.dumps(_rounded(swarm.timings))}")


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


@pytest.fixture(scope="module")
def swarm1(swarm_images: dict[str, str]) -> Iterator[Swarm]:
    """A 1-node swarm (a manager), its registry and edge network; the edge Caddy is not started."""
    yield from _swarm(1, swarm_images)


@pytest.fixture(scope="module")
def swarm3(swarm_images: dict[str, str]) -> Iterator[Swarm]:
    """A 3-node swarm (1 manager, 2 workers), its registry and edge network; the edge Caddy is
    not started (`Swarm.start_edge`)."""
    yield from _swarm(3, swarm_images)
