"""A 1-node swarm: one Ready manager, a pinned dnsrr service, the edge answering under load."""

from __future__ import annotations

import pytest

from tests.harness.swarm import Swarm, leftovers

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration


def test_one_node_swarm_serves_through_the_edge(swarm1: Swarm, swarm_images: dict[str, str]) -> None:
    assert swarm1.ready_nodes() == [swarm1.manager.name]
    pinned = swarm1.push(swarm_images["v2"], "watcher-test/app", "v2")
    swarm1.manager.docker(
        "service",
        "create",
        "--detach",
        "--name",
        "solo",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        swarm1.edge_network,
        pinned,
        check=True,
    )
    swarm1.wait_running("solo", 1)
    swarm1.start_edge(
        Swarm.caddyfile("reverse_proxy {\n\tdynamic a tasks.solo 8080 {\n\t\trefresh 1s\n\t}\n}")
    )
    result = swarm1.load("/work", rate=20, duration=2)
    assert result.sent > 0 and result.failed == 0, result.errors
    assert result.versions == {"v2": result.ok}
    swarm_id = swarm1.id
    swarm1.close()
    assert leftovers(swarm_id) == []
