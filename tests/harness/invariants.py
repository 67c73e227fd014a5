"""What must hold after any fault, checked the same way by every fault case (tests/faults/).

After a fault and the recovery the design promises, `assert_settled` checks, in this order:
the load really ran on every route, no request failed beyond the stated bound, exactly one
colour is live and healthy, the recorded state equals Docker and the route file, no job is
lost (every job is final or still waiting), and the app's lock is free. `assert_next_deploy_works`
then deploys the other version and checks the same again.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tests.harness.stack import Stack
from tests.harness.traffic import Loads
from watcher.queue import DeployQueue, Status, holder_of


def assert_load_ran(loads: dict[str, Loads] | Loads, *, max_failed: int = 0) -> None:
    """Requests were really sent on every route (fast and slow), and at most `max_failed` failed."""
    each = loads if isinstance(loads, dict) else {"": loads}
    for path, load in each.items():
        assert load.results, f"the load on {path or '/'} was never stopped"
        for kind, result in zip(("fast", "slow"), load.results):
            assert result.sent > 0, f"the {kind} load on {path or '/'} sent nothing: {load.describe()}"
        assert load.failed <= max_failed, (
            f"{load.failed} failed on {path or '/'} (bound {max_failed}): {load.describe()}"
        )


def assert_one_healthy_live(stack: Stack) -> dict[str, Any]:
    """Exactly one colour is live, all its containers running and healthy; the recorded state,
    the route file and Docker agree; no warning. Returns `watcher status --json`."""
    status = stack.status()
    shown = json.dumps(status, indent=2)
    live = status["live_color"]
    assert live in ("blue", "green"), shown
    assert stack.live_route() == live, f"route file says {stack.live_route()!r}:\n{shown}"
    assert status["in_sync"] and not status["warnings"], shown
    assert status["recorded"]["pending"] is None, shown
    roles = {color: info["role"] for color, info in status["colors"].items()}
    assert list(roles.values()).count("live") == 1, shown
    containers = status["colors"][live]["containers"]
    assert containers and all(
        c["state"] == "running" and c["health"] in (None, "healthy") for c in containers
    ), shown
    served = stack.version()
    assert served == status["live_version"], f"Caddy serves {served!r}:\n{shown}"
    return status


def assert_no_job_lost(client: redis.Redis, app: str, job_ids: list[str], *, prefix: str = "") -> None:
    """Every job asked for is still known, and final or waiting; none is left running."""
    queue = DeployQueue(client, app, prefix=prefix)
    for job_id in job_ids:
        job = queue.get(job_id)
        assert job is not None, f"job {job_id} of {app} is lost"
        assert job.status.final or job.status == Status.QUEUED, f"job {job_id} is left {job.status}: {job}"
    assert not queue.running(), f"jobs left running: {queue.running()}"


def assert_lock_free(client: redis.Redis, app: str, *, prefix: str = "") -> None:
    holder = holder_of(client, app, prefix)
    assert holder is None, f"the lock of {app} is still held: {holder}"


def assert_settled(
    stack: Stack,
    loads: dict[str, Loads] | Loads | None = None,
    *,
    max_failed: int = 0,
    client: redis.Redis | None = None,
    job_ids: list[str] | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Every invariant of the module doc, but the next deploy; returns the final status."""
    if loads is not None:
        assert_load_ran(loads, max_failed=max_failed)
    status = assert_one_healthy_live(stack)
    if client is not None:
        assert_no_job_lost(client, stack.name, job_ids or [], prefix=prefix)
        assert_lock_free(client, stack.name, prefix=prefix)
    return status


def assert_next_deploy_works(stack: Stack, versions: tuple[str, str] = ("v1", "v2")) -> None:
    """A following deploy (to whichever of `versions` is not live) succeeds and settles."""
    live = stack.status()["live_version"]
    target = versions[1] if live == versions[0] else versions[0]
    proc = stack.watcher("deploy", target)
    assert proc.returncode == 0, f"the next deploy ({target}) failed:\n{proc.stdout}\n{proc.stderr}"
    status = assert_one_healthy_live(stack)
    assert status["live_version"] == target, status
