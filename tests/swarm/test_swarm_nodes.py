"""A node lost during a deploy on a real 3-node swarm (tests/harness/swarm.py), under keep-alive
POST load through the edge Caddy: a node drained while the new colour starts, a node cut off the
network during the health wait and after the switch (tests/swarm/faulting.py has the app and the
checks). Each case prints "sent N failed M", what watcher did and the node's timeline.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.swarm import LoadSummary, Node, Swarm
from tests.swarm.conftest import APP, SwarmApp, total
from tests.swarm.faulting import (
    REPLICAS,
    Deploying,
    app,
    loaded,
    next_version,
    recover,
    running_on,
    truthful,
)

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration

__all__ = ["app"]  # the module's own swarm and app (a module-scoped fixture)


# ------------------------------------------------- 2. a node drained as the new colour starts


def test_a_node_drained_while_the_new_colour_starts(app: SwarmApp) -> None:
    swarm = app.swarm
    node = swarm.node(3)
    before = app.status()
    idle = "green" if before["live_color"] == "blue" else "blue"
    retained = (before["colors"].get(idle) or {}).get("version")
    version = next_version(before["live_version"], *([retained] if retained else []))  # a new stack
    try:
        with loaded(app) as loads:
            deploying = Deploying(app, "deploy", version)
            t0 = deploying.wait_for("] start: ")
            swarm.drain(node)
            drained_at = time.monotonic() - t0
            code = deploying.wait()
        load = total(loads)
        status = app.status()
        color = status["live_color"]
        print(
            f"\nnode 3 drained {drained_at:.1f}s after `start:`: deploy exit {code}; sent {load.sent} "
            f"failed {load.failed}; served {load.versions}; live {status['live_version']} on {color} "
            f"at {sorted(running_on(status, color))}\n{deploying.output}"
        )
        assert code == 0, deploying.output
        assert load.sent > 0 and load.failed == 0, load.errors
        assert status["live_version"] == version and status["in_sync"], status
        truthful(app, status)
        assert node.name not in running_on(status, color), status["colors"][color]
    finally:
        swarm.activate(node)
    recover(app, version)


# ------------------------------------------------------------------ 3. a node cut off


def task_addresses(swarm: Swarm, service: str, node: Node) -> list[str]:
    """The edge-network addresses of ``service``'s running tasks on ``node``."""
    found = []
    for task in swarm.running_tasks(service):
        if task.get("Node") != node.name:
            continue
        info = json.loads(swarm.manager.docker("inspect", task["ID"], check=True).stdout)[0]
        for attachment in info.get("NetworksAttachments") or []:
            if attachment["Network"]["Spec"]["Name"] == swarm.edge_network:
                found += [a.split("/")[0] for a in attachment.get("Addresses", [])]
    return found


def worker_running(swarm: Swarm, service: str, timeout: float = 30) -> Node:
    """A worker a task of ``service`` is placed on (two tasks on three nodes: one is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        placed = {t["Node"] for t in swarm.tasks(service) if t["DesiredState"] == "Running"}
        for node in swarm.nodes[1:]:
            if node.name in placed:
                return node
        time.sleep(0.2)
    raise AssertionError(f"no task of {service} on a worker: {swarm.tasks(service)}")


def wait_no_tasks(node: Node, timeout: float = 60) -> float:
    """Wait until ``node``'s dockerd runs no container of a stack (the tasks it ran while cut
    off, which Swarm re-placed, are stopped once it is back); when (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = node.docker("ps", "-q", "--filter", "label=com.docker.stack.namespace", check=True)
        if not out.stdout.strip():
            return time.monotonic()
        time.sleep(0.3)
    raise AssertionError(f"{node.name} still runs stack tasks: {node.docker('ps').stdout}")


def wait_replaced(swarm: Swarm, service: str, node: Node, timeout: float = 90) -> float:
    """Wait until ``service`` runs all its replicas off ``node``; when (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = swarm.running_tasks(service)
        if len(tasks) == REPLICAS and all(t.get("Node") != node.name for t in tasks):
            return time.monotonic()
        time.sleep(0.3)
    raise AssertionError(f"{service} not re-placed off {node.name}: {swarm.tasks(service)}")


def failure_seconds(load: LoadSummary) -> list[tuple[float, int]]:
    """(epoch second, failures recorded in it) of every second with a failure."""
    found = []
    for raw in load.raw["results"]:
        start = raw["started_epoch"]
        found += [(start + row["second"], row["failed"]) for row in raw["timeline"] if row["failed"]]
    return found


@pytest.mark.parametrize("when", ["health", "switched"])
def test_a_node_cut_off_during_the_deploy(app: SwarmApp, when: str) -> None:
    swarm = app.swarm
    before = app.status()
    old_color, version = before["live_color"], next_version(before["live_version"])
    new_color = "green" if old_color == "blue" else "blue"
    marker = "] health: " if when == "health" else "switch done in"
    timeline: dict[str, float] = {}
    node: Node | None = None
    try:
        with loaded(app) as loads:
            deploying = Deploying(app, "deploy", version)
            t0 = deploying.wait_for("] start: ")
            deploying.wait_for(marker)
            # a worker that runs a task of the new colour (two tasks on three nodes: one does)
            node = worker_running(swarm, f"{APP}-{new_color}_web")
            old_here = task_addresses(swarm, f"{APP}-{old_color}_web", node)
            new_here = task_addresses(swarm, f"{APP}-{new_color}_web", node)
            node.link("down")
            cut = time.monotonic()
            cut_epoch = time.time()
            timeline["cut"] = cut - t0
            timeline["down"] = timeline["cut"] + swarm.wait_node(node, "Down", timeout=60)
            code = deploying.wait()
            timeline["deploy exited"] = deploying.lines[-1][0] - t0
            status = app.status()
            live = status["live_color"]
            timeline[f"{live} re-placed"] = wait_replaced(swarm, f"{APP}-{live}_web", node) - t0
            node.link("up")  # still under load: the node's rejoin is part of the case
            timeline["link up"] = time.monotonic() - t0
            timeline["Ready"] = timeline["link up"] + swarm.wait_node(node, "Ready", timeout=90)
            timeline["its stale tasks gone"] = wait_no_tasks(node) - t0
            time.sleep(11)  # requests still waiting on the cut node time out (10 s) within the load
        load = total(loads)
        failed_at = failure_seconds(load)
        last_failure = max((s for s, _ in failed_at), default=None)
        if last_failure is not None:
            timeline["last failure"] = timeline["cut"] + last_failure + 1 - cut_epoch
        status = app.status()
        print(
            f"\nnode {node.name} cut at {when}: deploy {before['live_version']} -> {version} exit {code}; "
            f"sent {load.sent} failed {load.failed} {load.errors}; served {load.versions}; "
            f"its tasks: {old_color} {old_here}, {new_color} {new_here}\n"
            f"  timeline (s after `start:`): {json.dumps({k: round(v, 1) for k, v in timeline.items()})}\n"
            f"  failures per second after the cut: {[(round(s - cut_epoch), n) for s, n in failed_at]}\n"
            f"  status: live {status['live_version']} on {status['live_color']} "
            f"at {sorted(running_on(status, status['live_color']))}, in_sync {status['in_sync']}, "
            f"warnings {status['warnings']}\n{deploying.output}"
        )
        assert load.sent > 0
        truthful(app, status)
        assert node.name not in running_on(status, status["live_color"]), status
        # failures only while the cut node's tasks were still answered to: from the cut, and only
        # for the edge's requests that went to the live colour's task on that node
        if load.failed:
            served_there = old_here if (when == "health" or status["live_color"] == old_color) else new_here
            assert served_there, f"{load.failed} failed, but the live colour had no task on {node.name}"
            assert all(s >= cut_epoch - 1 for s, _ in failed_at), failed_at
        if code == 0:
            assert status["live_version"] == version, status
        else:
            assert status["live_color"] == old_color, status
    finally:
        if node is not None and "link up" not in timeline:
            node.link("up")
            swarm.wait_node(node, "Ready", timeout=90)
    recover(app, version)
