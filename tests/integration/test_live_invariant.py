"""One truth for what is live (issue 7), end to end on the real Docker engine, Compose, Caddy,
registry and Redis, each under a strict non-retrying keep-alive POST load through Caddy.

The app's route file (`.watcher/run/<app>.live`) names THE live colour; Caddy routes only there and tags
every response a colour's app served with `X-Watcher-Color`. A deploy always targets the other
colour and never touches the live one, and a broken new version fails fast and never answers
(both in tests/faults/test_versions_and_races.py); an
abort never leaves traffic on a dead colour (signals at each phase: tests/faults/test_signals.py);
every writer takes the host lock; the route file lost is refused; a moved tag is a new version; a
per-colour sidecar is part of the colour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import docker.errors
import httpx
import pytest

from tests.harness import images
from tests.harness.stack import REGISTRY, Stack
from tests.harness.traffic import Loads, Output, read_until, spawn, under_load
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration

FLAVOR_REPO = f"{REGISTRY}/watcher-test/flavored"


def deployed(stack: Stack, version: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = stack.watcher("deploy", version, **env)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def clean(loads: Loads, at_least: int = 300, context: str = "") -> None:
    """The load really ran, and not one request failed (`context`: e.g. watcher's output)."""
    assert loads.sent > at_least, loads.describe()
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    print(f"load: {test}: sent {loads.sent}, failed {loads.failed}")  # the closing note's figures (-s)
    if loads.failed:
        raise AssertionError(
            f"{loads.failed} request(s) failed: {loads.describe()}\n"
            f"addresses (for Caddy's errors): {addresses(loads.stack)}\n{context}"
        )


def addresses(stack: Stack) -> dict[str, str]:
    """Container name -> IP on the stack's network (left containers only)."""
    proc = subprocess.run(
        [
            "docker",
            "network",
            "inspect",
            f"{stack.name}_web",
            "--format",
            "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
        ],
        capture_output=True,
        text=True,
    )
    return dict(item.split("=", 1) for item in proc.stdout.split() if "=" in item)


def running(stack: Stack, color: str) -> dict[str, str]:
    """`color`'s containers by service name -> state, from `status --json`."""
    return {c["service"]: c["state"] for c in stack.status()["colors"][color]["containers"]}


def timed(out: Output) -> str:
    """watcher's output, each line prefixed with the wall-clock time it was read (as in Caddy's log)."""
    offset = time.time() - time.monotonic()
    return "".join(f"{t + offset:.2f} {line}" for t, line in out.lines)


# (b) situation A ---------------------------------------------------------------------------------


def test_host_cli_without_redis_is_refused_while_a_worker_deploys(
    stack: Stack, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker (REDIS_URL set) and the host CLI (no Redis in its config) share one project
    directory: the host lock, taken by every writer, keeps them from deploying at once."""
    from watcher.queue import DeployQueue
    from watcher.queue.connection import connect

    monkeypatch.delenv("REDIS_URL", raising=False)  # the host CLI must run without Redis
    deployed(stack, "v1")
    client = connect(redis_url)
    queue = DeployQueue(client, stack.name)
    log_path = stack.root / "worker.log"
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "watcher", "worker", "--name", "w1"],
            cwd=stack.root,
            env=stack.env(REDIS_URL=redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with under_load(stack) as loads:
            enqueued = stack.watcher("enqueue", "slowok", REDIS_URL=redis_url)
            assert enqueued.returncode == 0, enqueued.stderr
            job_id = enqueued.stdout.split()[0]
            wait_until(
                lambda: "health:" in log_path.read_text(),
                60,
                "the worker's deploy to wait for health",
                poll=0.1,
                detail=log_path.read_text,
            )
            refused = stack.watcher("deploy", "v2")
            job = wait_until(
                lambda: (j := queue.get(job_id)) and j.status.final and j,
                120,
                f"job {job_id} to end",
                poll=0.2,
                detail=log_path.read_text,
            )
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        for found in client.scan_iter(f"watcher:{stack.name}:*"):
            client.delete(found)
    worker_log = log_path.read_text()
    assert refused.returncode == 3, f"{refused.stdout}\n{refused.stderr}\n--- worker\n{worker_log}"
    assert "holds the deploy lock" in refused.stderr, refused.stderr
    assert job.status == "succeeded", f"{job.describe()}\n{worker_log}"
    clean(loads)
    assert loads.versions() <= {"v1", "slowok"}, loads.describe()
    assert stack.version() == "slowok"
    status = stack.status()
    assert (status["live_color"], status["live_version"]) == ("green", "slowok"), status
    assert stack.live_route() == "green"


# (c) situation B ---------------------------------------------------------------------------------


def test_verification_failing_after_the_old_colour_died_leaves_the_new_one_serving(stack: Stack) -> None:
    """`wrongver` is healthy but answers another version: verification fails after the switch.
    Meanwhile the old colour dies (docker stop), so switching back would send traffic nowhere.
    `status` says it serves unverified until a deploy replaces it, and `rollback` does not go
    back to it unless it is named.

    The stop waits 2 s after the switch: requests Caddy routed to blue just before it may still
    be connecting (busybox httpd's small listen backlog drops SYNs under this load, retried by
    TCP after 1 s; ListenOverflows counts them), and killing blue under them would fail them
    whatever watcher does. VERIFY_TIMEOUT 8 s leaves the stop (~1.5 s) done well before it."""
    deployed(stack, "v1")
    blue = stack.containers_of("blue")
    with under_load(stack) as loads:
        out = spawn(stack, "deploy", "wrongver", VERIFY_TIMEOUT="8s")
        out.wait_for("verify:")
        time.sleep(2)
        subprocess.run(["docker", "stop", "-t", "20", *blue], check=True, capture_output=True)
        stopped = time.monotonic()
        code = out.wait(timeout=150)
        time.sleep(1)
    aborted = out.find("aborting")
    assert aborted is not None and aborted[0] > stopped, (
        f"blue was not stopped before the abort:\n{timed(out)}"
    )
    assert code == 1, out.text
    assert "left serving" in out.text, out.text
    clean(loads, context=f"stopped blue at {stopped + time.time() - time.monotonic():.2f}\n{timed(out)}")
    assert loads.versions() <= {"v1", "wrongver"}, loads.describe()
    assert loads.results[0].last_versions[-5:] == ["wrongver"] * 5, loads.describe()
    assert stack.live_route() == "green"
    status = stack.status()
    assert (status["live_color"], status["live_version"]) == ("green", "wrongver"), status
    assert status["live_health"] == "healthy", status
    assert [c["state"] for c in status["colors"]["green"]["containers"]] == ["running"], "not removed"
    # It never passed verification, and status says so until a deploy replaces it (issue 20, defect 5).
    assert status["live_how"] == "left serving unverified" and status["in_sync"], status
    assert any("wrongver on green serves unverified" in w for w in status["warnings"]), status
    assert (
        "(healthy, since" in (text := stack.watcher("status").stdout) and "left serving unverified)" in text
    )
    deployed(stack, "v1")  # blue's stopped containers are v1's: resumed, verified
    status = stack.status()
    assert (status["live_version"], status["live_how"], status["warnings"]) == ("v1", "verified", []), status
    assert status["rollback"]["version"] == "wrongver" and status["rollback"]["unverified"], status
    assert (
        "rollback target: wrongver (instant: retained on green; unverified:" in stack.watcher("status").stdout
    )
    refused = stack.watcher("rollback")
    assert refused.returncode != 0 and "`watcher rollback --to wrongver`" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and stack.live_route() == "blue"


# (h) a moved tag ---------------------------------------------------------------------------------


def flavor(stack: Stack) -> str:
    response = httpx.get(f"{stack.url}/flavor", timeout=5)
    response.raise_for_status()
    return response.text.strip()


def test_same_tag_with_new_content_is_a_new_version_and_rolls_back(app_images: dict[str, str]) -> None:
    ref = f"{FLAVOR_REPO}:latest"
    stack = Stack.create(image=FLAVOR_REPO)
    try:
        first = images.push(images.build_app_image(ref, "latest", flavor="a"))
        deployed(stack, "latest")
        assert flavor(stack) == "a" and stack.live_route() == "blue"
        blue = stack.container_ids(f"{stack.name}-blue")

        second = images.push(images.build_app_image(ref, "latest", flavor="b"))
        assert second != first
        with under_load(stack) as loads:
            proc = deployed(stack, "latest")
            moved = flavor(stack)
        assert "already live" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        clean(loads)
        assert moved == "b" and stack.live_route() == "green"
        assert loads.colors() == {"blue", "green"}, loads.describe()
        status = stack.status()
        assert (status["live_color"], status["live_version"]) == ("green", "latest"), status
        rollback = status["rollback"]
        assert rollback is not None, status
        assert (rollback["version"], rollback["color"], rollback["way"]) == ("latest", "blue", "instant"), (
            rollback
        )
        assert rollback["digest"] in (first, None), rollback

        with under_load(stack) as loads:
            proc = stack.watcher("rollback")
            back = flavor(stack) if proc.returncode == 0 else None
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        clean(loads)
        assert back == "a" and stack.live_route() == "blue"
        assert stack.status()["live_how"] == "rolled back to"
        assert stack.container_ids(f"{stack.name}-blue") == blue, (
            "instant: the retained containers serve again"
        )
    finally:
        stack.destroy()
        remove_local_images(FLAVOR_REPO)


def remove_local_images(repository: str) -> None:
    """Every local image of `repository`, tagged or left untagged by a rebuild of its tag."""
    for image in images.client().images.list():
        names = image.tags + (image.attrs.get("RepoDigests") or [])
        if any(_repository_of(name) == repository for name in names):
            try:
                images.client().images.remove(image.id, force=True)
            except docker.errors.APIError as exc:
                print(f"could not remove {image.id[:19]} ({names}): {exc}")


def _repository_of(name: str) -> str:
    """`repo` of `repo:tag` or `repo@digest` (a registry's `host:port/` is part of the repo)."""
    if "@" in name:
        return name.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


# (i) a sidecar -----------------------------------------------------------------------------------


def test_a_per_colour_sidecar_keeps_redeploys_of_the_live_version_no_ops(stack: Stack) -> None:
    stack.add_sidecar()
    deployed(stack, "v1")
    assert running(stack, "blue") == {"web": "running", "sidecar": "running"}
    with under_load(stack) as loads:
        again = deployed(stack, "v1")
        status = stack.status()
        deployed(stack, "v2")
        after = stack.status()
        once_more = deployed(stack, "v2")
    clean(loads)
    assert "already live" in again.stdout, again.stdout + again.stderr
    assert not status["warnings"] and status["in_sync"], status
    assert status["colors"]["green"]["role"] == "absent", status
    assert status["live_health"] == "healthy", status

    assert (after["live_color"], after["live_version"]) == ("green", "v2"), after
    assert not after["warnings"] and after["in_sync"], after
    assert {c["service"]: c["state"] for c in after["colors"]["green"]["containers"]} == {
        "web": "running",
        "sidecar": "running",
    }, after
    assert {c["state"] for c in after["colors"]["blue"]["containers"]} == {"exited"}, after
    assert "already live" in once_more.stdout, once_more.stdout + once_more.stderr
    assert not stack.status()["warnings"]
    assert loads.colors() == {"blue", "green"}, loads.describe()


# (j) the route file lost -------------------------------------------------------------------------


def test_a_lost_route_file_is_refused_until_caddy_restarts(stack: Stack) -> None:
    deployed(stack, "v1")
    with under_load(stack) as loads:
        shutil.rmtree(stack.root / ".watcher" / "run")
        proc = stack.watcher("deploy", "v2")
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    assert "route file" in proc.stderr, proc.stderr
    assert "restart caddy" in proc.stderr.lower(), proc.stderr
    clean(loads)
    assert loads.versions() == {"v1"}, loads.describe()
    # Caddy still reads the deleted directory: its safety net (no colour header) serves blue.
    assert loads.colors() <= {"blue", ""}, loads.describe()
    assert stack.version() == "v1"
    green = stack.containers_of("green")
    assert all(stack.health(name) in ("absent", "exited", "created") for name in green), {
        name: stack.health(name) for name in green
    }


# cleanup never removes the last healthy colour -----------------------------------------------------


def test_cleanup_keeps_the_idle_colour_while_the_live_one_is_unhealthy(stack: Stack) -> None:
    """A deploy killed at drain leaves both colours running; if the live one then turns
    unhealthy, the running idle colour is the last healthy one: cleanup keeps it. Once the live
    one is healthy again, cleanup stops it (the rollback target, as the deploy would have left
    it), never removes it."""
    deployed(stack, "v1")
    proc = stack.spawn("deploy", "v2", DRAIN_TIMEOUT="30s")
    read_until(proc, "drain:")
    proc.kill()
    proc.wait(timeout=30)
    assert running(stack, "blue") == {"web": "running"} and stack.live_route() == "green"
    broken = stack.break_health("green")
    try:
        stack.wait_health("green", "unhealthy")
        with under_load(stack) as loads:
            proc = stack.watcher("cleanup")
        assert proc.returncode == 0, proc.stderr
        assert "keeping blue: it is healthy and the live colour is unhealthy" in proc.stderr, proc.stderr
        clean(loads)
        assert running(stack, "blue") == {"web": "running"}, "the last healthy colour was kept"
    finally:
        stack.restore_health(broken)
    stack.wait_health("green", "healthy")
    proc = stack.watcher("cleanup")
    assert proc.returncode == 0 and f"{stack.name}-blue" not in proc.stdout, proc.stdout + proc.stderr
    assert "keeping blue (v1): the rollback target, running" in proc.stderr, proc.stderr
    assert running(stack, "blue") == {"web": "exited"}, "stopped, kept for an instant rollback"
