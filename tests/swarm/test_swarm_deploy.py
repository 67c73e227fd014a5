"""watcher on a real 3-node swarm (tests/harness/swarm.py): an app with `platform = "swarm"`,
three replicas spread over the nodes, behind the edge Caddy with the Caddyfile `watcher
caddyfile` prints, deployed v1 -> v2 -> v3 and rolled back by the real CLI, run (as on a
manager) in node 1's network namespace with DOCKER_HOST on its dockerd. Each swap is under
keep-alive POST load from inside that namespace; each asserts requests were sent and none failed.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.harness.stack import Stack
from tests.harness.swarm import LoadSummary, Swarm
from tests.harness.traffic import under_load as compose_load
from tests.swarm.conftest import APP, REPOSITORY, SWARM_APP, SwarmApp, swarm_app
from watcher.engine.receipt import LEAD

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(swarm3: Swarm, swarm_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SwarmApp:
    return swarm_app(swarm3, swarm_images, tmp_path_factory.mktemp("swarm-shop"), replicas=3, broken=True)


def under_load(app: SwarmApp, *args: str) -> tuple[dict, LoadSummary]:
    """`watcher <args> --json` while keep-alive POSTs (and 1 s ones) go through the edge; the
    receipt is checked against what the load was answered in its window (within 1 %)."""
    loads = [
        app.swarm.start_load("/cgi-bin/work", rate=100, duration=300, connections=8, answered=True),
        app.swarm.start_load("/cgi-bin/work?sleep=1", rate=4, duration=300, connections=8, answered=True),
    ]
    # The receipt's window opens LEAD s before the switch and closes as the command ends: the
    # load covers it all (and 2 s more), so answers a loaded host's load generator reads late
    # shift out of its end as many as into its start.
    time.sleep(LEAD)
    try:
        done = app.watcher(*args, "--json")
        time.sleep(2)
    finally:
        results = [load.stop() for load in loads]
    assert done.returncode == 0, (
        f"watcher {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    out = json.loads(done.stdout)
    sent, failed = sum(r.sent for r in results), sum(r.failed for r in results)
    receipt = out["receipt"]
    answered = sum(
        1 for r in results for at, _, _ in r.raw["answered"] if receipt["start"] <= at < receipt["end"]
    )
    print(
        f"\nswarm {' '.join(args)}: sent {sent} failed {failed}; receipt {receipt['requests']} "
        f"vs {answered} answered in its window ({(receipt['requests'] - answered) / max(answered, 1):+.2%}); "
        f"phases {json.dumps(out.get('phases'))}"
    )
    assert sent > 0 and failed == 0, [r.errors for r in results]
    assert answered > 0 and abs(receipt["requests"] - answered) <= 0.01 * answered, (receipt, answered)
    return out, LoadSummary(sent=sent, ok=sent - failed, failed=failed, errors={}, versions={}, raw={})


#: The swarm deploys' phase times, for the table beside Compose's.
SWARM_PHASES: dict[str, dict[str, float]] = {}


def spread(status: dict) -> dict[str, set[str]]:
    """Each colour's running tasks' nodes."""
    return {
        color: {c["node"] for c in info["containers"] if c["state"] == "running"}
        for color, info in status["colors"].items()
    }


def test_v1_then_v2_then_v3_then_a_rollback_fail_no_request(shop: SwarmApp) -> None:
    first = shop.deploy("deploy", "v1")
    assert "v1 is live on blue" in first, first
    for version, color in (("v2", "green"), ("v3", "blue")):
        out, _ = under_load(shop, "deploy", version)
        SWARM_PHASES[version] = out["phases"]
        assert (out["color"], out["version"]) == (color, version), out
        status = shop.status()
        assert status["live_version"] == version and status["in_sync"], status
        assert len(spread(status)[color]) == 3, status["colors"][color]
    out, _ = under_load(shop, "rollback")
    status = shop.status()
    assert status["live_version"] == "v2" and status["in_sync"], status


def failed_without_traffic(shop: SwarmApp, version: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`watcher deploy VERSION` under load, which must fail with no request failed, only the
    live version answering, and the live colour as it was, healthy and in sync; the deploy and
    how long it took."""
    before = shop.status()
    load = shop.swarm.start_load("/cgi-bin/work", rate=20, duration=120, connections=4)
    started = time.monotonic()
    done = shop.watcher("deploy", version)
    took = time.monotonic() - started
    result = load.stop()
    print(f"\nswarm deploy {version}: sent {result.sent} failed {result.failed}\n{done.stderr.strip()}")
    assert done.returncode != 0, done.stdout
    assert result.sent > 0 and result.failed == 0 and set(result.versions) == {before["live_version"]}, result
    status = shop.status()
    assert (status["live_version"], status["live_color"]) == (before["live_version"], before["live_color"])
    assert status["in_sync"] and status["colors"][before["live_color"]]["health"] == "healthy", status
    return done, took


@pytest.mark.parametrize("version", ["crash", "sick"])
def test_a_broken_version_never_takes_traffic_and_fails_within_a_few_intervals(
    shop: SwarmApp, version: str
) -> None:
    if shop.status()["live_version"] is None:  # run alone (-k): something must serve first
        shop.deploy("deploy", "v1")
    done, took = failed_without_traffic(shop, version)
    print(f"\nswarm deploy {version}: exit {done.returncode} after {took:.1f}s")
    assert "failed its health check" in done.stderr, done.stderr


def test_a_version_missing_on_one_node_never_takes_traffic_and_fails_at_once(
    shop: SwarmApp, swarm_images: dict[str, str]
) -> None:
    """Node 3 cannot reach the registry (its connections refused), so a version it never pulled
    is missing there, as an image built on one host or a registry one node cannot log in to:
    Swarm rejects that node's task ("No such image"), which ends the health wait at once."""
    from tests.harness import images

    if shop.status()["live_version"] is None:  # run alone (-k): something must serve first
        shop.deploy("deploy", "v1")
    with images.exclusive():
        lost = images.build_app_image(f"{SWARM_APP}:lost", "lost")
    shop.swarm.push(lost, REPOSITORY, "lost")
    node = shop.swarm.node(3)
    node.refuse(shop.swarm.registry)
    try:
        done, took = failed_without_traffic(shop, "lost")
    finally:
        node.refuse(shop.swarm.registry, refused=False)
    print(f"\nswarm deploy of a version missing on {node.name}: exit {done.returncode} after {took:.1f}s")
    assert "No such image" in done.stderr, done.stderr
    assert took < 30, took  # a few health intervals (1 s), not the health timeout (90 s)


def test_the_phase_times_beside_a_compose_deploy_of_the_same_app(stack: Stack) -> None:
    """The same test app, health interval and verification window on Compose (one engine), in
    the same run: where Swarm costs time."""
    assert stack.watcher("deploy", "v1").returncode == 0
    with compose_load(stack) as loads:
        done = stack.watcher("deploy", "v2", "--json")
    assert done.returncode == 0 and loads.failed == 0, (done.stderr, loads.describe())
    compose = json.loads(done.stdout)["phases"]
    swarm = SWARM_PHASES.get("v2") or {}
    print("\n| phase | swarm, 3 nodes (s) | compose (s) |\n|---|---|---|")
    for phase in compose:
        print(f"| {phase} | {swarm.get(phase, float('nan')):.2f} | {compose[phase]:.2f} |")
    print(f"| total | {sum(swarm.values()):.2f} | {sum(compose.values()):.2f} |")


def test_cleanup_removes_a_half_failed_stack_and_reset_removes_both(shop: SwarmApp) -> None:
    """Cleanup keeps the live colour and removes what a `stack deploy` that failed creating its
    services leaves: the stack's network (made here as `stack deploy` makes it). Reset removes
    both stacks and their networks; the edge then answers 503."""
    if shop.status()["live_version"] is None:  # run alone (-k): something must serve first
        shop.deploy("deploy", "v1")
    shop.deploy("cleanup", "--include-rollback")  # the idle colour: nothing of it left
    live = shop.status()["live_color"]
    idle = "green" if live == "blue" else "blue"
    swarm, namespace = shop.swarm, "com.docker.stack.namespace"

    def left(color: str, kind: str) -> list[str]:
        out = swarm.manager.docker(
            kind, "ls", "-q", "--filter", f"label={namespace}={APP}-{color}", check=True
        )
        return out.stdout.split()

    assert left(idle, "service") == [] and left(idle, "network") == []
    swarm.manager.docker(
        "network", "create", "--driver", "overlay", "--attachable", "--label",
        f"{namespace}={APP}-{idle}", f"{APP}-{idle}_default", check=True,
    )  # fmt: skip
    cleaned = shop.deploy("cleanup")
    print(f"\ncleanup: {cleaned.strip()}")
    assert f"{APP}-{idle} (network {APP}-{idle}_default: left by a start that failed half-way)" in cleaned
    assert left(idle, "network") == [] and len(left(live, "service")) == 1
    assert shop.status()["live_color"] == live
    shop.deploy("reset", "--force")
    for color in ("blue", "green"):
        assert left(color, "service") == [] and left(color, "network") == [], color
    assert shop.route_file.read_text().strip() == "none"
    answered = swarm.manager.exec(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{swarm.edge_url}/version"], check=True
    )
    assert answered.stdout == "503", answered.stdout
