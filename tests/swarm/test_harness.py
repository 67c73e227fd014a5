"""The swarm harness itself: three Ready nodes, a dnsrr service pinned by digest from the swarm's
registry spread over them, the edge Caddy answering through `dynamic a tasks.<service>` under
load from inside a node's namespace, the partition and drain helpers, and a teardown (also of a
killed run) that leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.harness.swarm import REPO, Swarm, leftovers, sweep

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration

SERVICE = "web"
EDGE_SITE = f"""
reverse_proxy {{
	dynamic a tasks.{SERVICE} 8080 {{
		refresh 1s
	}}
}}
"""


def test_three_ready_nodes(swarm3: Swarm) -> None:
    status = swarm3.nodes_status()
    assert sorted(n["Hostname"] for n in status) == [node.name for node in swarm3.nodes]
    assert all(n["Status"] == "Ready" and n["Availability"] == "Active" for n in status), status
    assert [n.get("ManagerStatus") for n in sorted(status, key=lambda n: n["Hostname"])] == ["Leader", "", ""]
    for node in swarm3.nodes:  # each dockerd lives in its own namespace, at its own address
        addresses = node.exec(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
        assert f"inet {node.address}/24" in addresses
        assert node.docker("info", "--format", "{{.Name}}", check=True).stdout.strip() == node.name


def test_pinned_dnsrr_service_spreads_and_the_edge_answers(
    swarm3: Swarm, swarm_images: dict[str, str]
) -> None:
    pinned = swarm3.push(swarm_images["v1"], "watcher-test/app", "v1")
    assert pinned.startswith(f"{swarm3.registry}/watcher-test/app@sha256:")
    swarm3.manager.docker(
        "service",
        "create",
        "--detach",
        "--name",
        SERVICE,
        "--endpoint-mode",
        "dnsrr",
        "--replicas",
        "3",
        "--replicas-max-per-node",
        "1",
        "--stop-grace-period",
        "2s",
        "--network",
        swarm3.edge_network,
        pinned,
        check=True,
    )
    tasks = swarm3.wait_running(SERVICE, 3)
    assert sorted(t["Node"] for t in tasks) == [node.name for node in swarm3.nodes]
    spec = swarm3.manager.docker(
        "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", SERVICE, check=True
    )
    assert spec.stdout.strip() == pinned

    swarm3.start_edge(Swarm.caddyfile(EDGE_SITE))
    result = swarm3.load("/work", rate=30, duration=4)
    print("load through the edge:", json.dumps(result.raw))
    assert result.sent > 0
    assert result.failed == 0, result.errors
    assert result.ok == result.sent
    assert result.versions == {"v1": result.ok}

    # Caddy resolved every task (dnsrr: tasks.<service> answers the tasks' own addresses).
    lookup = swarm3.manager.docker("exec", swarm3.edge_container, "nslookup", f"tasks.{SERVICE}", check=True)
    task_ips = {
        line.split()[-1]
        for line in lookup.stdout.splitlines()
        if line.startswith("Address") and "127.0.0.11" not in line
    }
    assert len(task_ips) == 3, lookup.stdout
    seen = {u["address"].rpartition(":")[0] for u in swarm3.upstreams()}
    assert task_ips <= seen, (task_ips, seen)


ROUTED_SITE = f"""
vars live {{file./run/watcher/{SERVICE}.live}}
@on vars {{vars.live}} on
handle @on {{
	reverse_proxy {{
		dynamic a tasks.{SERVICE} 8080 {{
			refresh 1s
		}}
	}}
}}
handle {{
	respond "off" 503
}}
"""


def test_route_files_and_reload_reach_the_edge(swarm3: Swarm) -> None:
    """The edge reads route files from the host's run directory per request, and
    `caddy_reload` loads a changed Caddyfile; loads both through docker-proxy and directly."""
    (swarm3.edge_run_dir / f"{SERVICE}.live").write_text("on")
    swarm3.caddy_reload(Swarm.caddyfile(ROUTED_SITE))
    on = swarm3.load("/work", rate=20, duration=2, direct=True)
    assert on.sent > 0 and on.failed == 0, on.errors
    (swarm3.edge_run_dir / f"{SERVICE}.live").write_text("off")
    off = swarm3.load("/work", rate=20, duration=1)
    assert off.sent > 0 and off.errors == {"status 503": off.sent}
    swarm3.caddy_reload(Swarm.caddyfile(EDGE_SITE))
    back = swarm3.load("/work", rate=20, duration=1)
    assert back.sent > 0 and back.failed == 0, back.errors


STACK = """
services:
  web:
    image: {image}
    networks: [edge]
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
networks:
  edge:
    external: true
    name: {network}
"""


def test_a_stack_on_the_edge_network_answers(swarm3: Swarm, swarm_images: dict[str, str]) -> None:
    """`docker stack deploy` of a dnsrr service on the external edge network: the edge reaches
    it as tasks.<stack>_<service>."""
    pinned = swarm3.push(swarm_images["v2"], "watcher-test/app", "v2")
    swarm3.stack_deploy("shop-blue", STACK.format(image=pinned, network=swarm3.edge_network))
    swarm3.wait_running("shop-blue_web", 2)
    swarm3.caddy_reload(Swarm.caddyfile(EDGE_SITE.replace(f"tasks.{SERVICE}", "tasks.shop-blue_web")))
    result = swarm3.load("/work", rate=20, duration=2)
    assert result.sent > 0 and result.failed == 0, result.errors
    assert result.versions == {"v2": result.ok}
    swarm3.caddy_reload(Swarm.caddyfile(EDGE_SITE))
    swarm3.stack_rm("shop-blue")


def test_link_down_cuts_a_node_off_and_up_restores_it(swarm3: Swarm) -> None:
    node = swarm3.nodes[2]
    url = f"http://{swarm3.registry}/v2/"
    probe = ["curl", "-fsS", "-o", "/dev/null", "--max-time", "1", url]
    assert node.exec(probe).returncode == 0
    node.link("down")
    try:
        assert node.exec(probe).returncode != 0
    finally:
        node.link("up")
    deadline = time.monotonic() + 10
    while node.exec(probe).returncode != 0:
        assert time.monotonic() < deadline, "node 3 did not reach node 1 again after link up"
        time.sleep(0.2)
    swarm3.wait_node(node, "Ready", timeout=30)


def test_drain_moves_the_tasks_off_a_node(swarm3: Swarm) -> None:
    node = swarm3.nodes[2]
    swarm3.drain(node)
    try:
        deadline = time.monotonic() + 30
        while any(t["Node"] == node.name for t in swarm3.running_tasks(SERVICE)):
            assert time.monotonic() < deadline, swarm3.tasks(SERVICE)
            time.sleep(0.3)
        # max one per node, two nodes left: two run, the third waits for a node
        assert len(swarm3.running_tasks(SERVICE)) == 2
        result = swarm3.load("/work", rate=20, duration=2)
        assert result.sent > 0 and result.failed == 0, result.errors
    finally:
        swarm3.activate(node)
    swarm3.wait_running(SERVICE, 3)


def test_teardown_leaves_nothing(swarm3: Swarm) -> None:
    """Closes the module's swarm (the fixture's own close is then a no-op): no namespace, mount,
    process, cgroup or directory of it remains."""
    swarm_id = swarm3.id
    swarm3.close()
    print(f"swarm {swarm_id} timings: {json.dumps({k: round(v, 2) for k, v in swarm3.timings.items()})}")
    assert leftovers(swarm_id) == []


KILLED_OWNER = """
import sys, time
from tests.harness.swarm import Swarm
swarm = Swarm(1, edge_network=None)
swarm.start()
print(swarm.id, flush=True)
time.sleep(600)
"""


def test_a_killed_runs_swarm_is_swept() -> None:
    """A process that made a swarm is killed (-9: no teardown, no atexit); the next sweep
    removes all of that swarm."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        swarm_id = proc.stdout.readline().strip()
        assert swarm_id.startswith("wsw"), proc.stderr.read() if proc.stderr else ""
        assert leftovers(swarm_id)  # it is up
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert swarm_id in sweep()
    assert leftovers(swarm_id) == []
