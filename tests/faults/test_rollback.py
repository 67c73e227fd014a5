"""Rollback under process faults, and cleanup after a Docker engine restart, on one stack under
constant load through Caddy (test_signals.py's machinery).

- kill -9 (the worker and its job's processes) and SIGTERM (the worker alone) of a `rollback`
  job at each of its phases, instant (the retained colour resumed) or full (recreated from its
  local image): as for a deploy, the lock's next holder completes a killed rollback, an
  interrupted one unwinds and goes back to the queue before its record and is done after it.
  No request fails. Each signal meets each phase once; the two ways share the phases out, so
  that the phases where they differ (the start: resumed or recreated; the old colour: stopped or
  removed) meet both ways. The faults of a chain run in sequence: each rollback is the next job
  of the one before.
- cleanup with the rollback target's containers in each state a Docker engine restart leaves
  (running by their restart policy, restarting, created): it keeps them, stopped, and the
  rollback that follows is instant.

The bake's switch-back and the live colour lost in the health wait: test_switch_back.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.faults.conftest import QueuedStack, Watchers, other_version, redis_extra, running_colors
from tests.faults.test_signals import AFTER, PHASES, SETTLE, a_queued_deploy_works, report
from tests.harness.faults import crash
from tests.harness.invariants import assert_settled
from tests.harness.stack import Stack
from tests.harness.traffic import under_load
from tests.harness.waiting import wait_until
from watcher.backends.compose import ComposeProject
from watcher.backends.containers import Containers
from watcher.config import load_host
from watcher.platforms.color import Color
from watcher.platforms.compose import ComposeColor
from watcher.queue import Job, Status

pytestmark = pytest.mark.integration

#: The phases a rollback is faulted at. "old" is the old colour's stop (instant: retained for
#: the way back) or removal (full: `retain_old = false`).
ROLLBACK_PHASES = ("started", "switched", "verifying", "recorded", "old")
#: The chains: (signal, way) -> the phases its faults land at, in order. Every (signal, phase)
#: once; "started" and "old" with each way.
CHAINS = {
    ("kill9", "instant"): ("switched", "recorded", "old"),
    ("kill9", "full"): ("started", "verifying"),
    ("term", "instant"): ("started", "verifying"),
    ("term", "full"): ("switched", "recorded", "old"),
}
assert sorted(p for (sig, _), ps in CHAINS.items() for p in ps if sig == "kill9") == sorted(ROLLBACK_PHASES)
assert sorted(p for (sig, _), ps in CHAINS.items() for p in ps if sig == "term") == sorted(ROLLBACK_PHASES)


def marker(phase: str, way: str) -> str:
    if phase == "old":
        return "stop old:" if way == "instant" else "remove old:"
    return PHASES[phase]


@pytest.fixture
def way(request: pytest.FixtureRequest, queued_stack: QueuedStack, redis_url: str) -> Iterator[str]:
    """The module's stack set up for the way: `full` removes the old colour at each swap (no
    retained colour: every rollback recreates its colour from the local image)."""
    stack = queued_stack.stack
    full = request.param == "full"
    stack.write_config(retain_old=not full, extra=redis_extra(redis_url))
    try:
        yield request.param
    finally:
        stack.write_config(extra=redis_extra(redis_url))


def rollback_version(stack: Stack) -> str:
    previous = stack.status()["previous_version"]
    assert previous, "nothing to roll back to"
    return previous


def taken_by(queued: QueuedStack, victim: str, version: str, watchers: Watchers, source: str = "cli") -> Job:
    """Queue `version` once the victim waits for work; the job once the victim runs it."""
    watchers.started[victim].wait_for("started for")
    job = queued.queue.enqueue(version, source=source, requested_by="fault test").job
    wait_until(
        lambda: (j := queued.queue.get(job.id)) and j.worker == victim,
        30,
        f"{victim} to take the job",
        poll=0.02,
        detail=watchers.logs,
    )
    return job


def fault_a_rollback(
    queued: QueuedStack, watchers: Watchers, victim: str, heir: str, phase: str, way: str, signum: int
) -> None:
    """One rollback faulted at `phase`. The heir, idle afterwards, is the next one's victim."""
    stack, killed = queued.stack, signum == signal.SIGKILL
    back_to = rollback_version(stack)
    worker = watchers.started[victim]
    with under_load(stack, settle=SETTLE) as loads:
        worker.freeze_at(marker(phase, way), AFTER.get(phase, 0.0))
        job = taken_by(queued, victim, back_to, watchers, "rollback")
        watchers.worker(heir)  # boots while the victim works; the lock keeps it waiting
        printed = worker.frozen_output().partition(f"job {job.id} started")[2]  # a former heir's too
        worker.signal_frozen(signum)
        done = queued.final(job.id, 60, watchers)
    signalled = "kill -9" if killed else "SIGTERM"
    report(f"{signalled} of the {way} rollback at {phase}", f"after {worker.landed_at_freeze!r}", loads)
    assert f"rolling back to {back_to} (" in printed, printed
    recorded = "record:" in printed
    by = victim if (recorded and not killed) else heir
    assert done.status is Status.SUCCEEDED and done.worker == by, done.describe() + watchers.logs()
    status = assert_settled(stack, loads, client=queued.client, job_ids=[job.id])
    assert status["live_version"] == back_to, status


@pytest.mark.timeout(300)
@pytest.mark.parametrize("way", ["instant", "full"], indirect=True)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "term"])
def test_a_rollback_killed_or_interrupted_at_each_phase_is_completed(
    queued_stack: QueuedStack, watchers: Watchers, way: str, signum: int
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    phases = CHAINS["kill9" if signum == signal.SIGKILL else "term", way]
    stack.watcher("deploy", other_version(stack.version()), check=True)  # the way back, retained or not
    watchers.worker("w0")
    for n, phase in enumerate(phases, 1):
        fault_a_rollback(queued, watchers, f"w{n - 1}", f"w{n}", phase, way, signum)
    a_queued_deploy_works(queued, stack.version() or "", watchers)


# -- cleanup after a Docker engine restart (issue 20 #8) ---------------------------------------------


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def as_an_engine_restart_leaves(stack: Stack, color: str, state: str, version: str) -> None:
    """`color`'s web containers in `state`, as a Docker engine restart leaves them: running (their
    restart policy), restarting (a crash loop: the app made to exit 3 at start), created (a
    `compose up` cut short: recreated, never started)."""
    if state == "created":
        config = load_host(stack.config, stack.env()).app(None)
        colour = ComposeColor(config, Containers(), Color(color))
        files = (*config.compose_files, config.overlay(color), str(colour.generated))
        project = ComposeProject(colour.name, config.project_dir, files, ("*",))
        project.run(["create", "--force-recreate", *colour.services], colour.env(version))
        return
    for name in stack.containers_of(color):
        docker("start", name)
        if state == "restarting":
            docker("exec", name, "sh", "-c", CRASH_AT_START)
            with contextlib.suppress(AssertionError):  # ended by itself already: restarting too
                crash(name)
    wanted = "healthy" if state == "running" else state
    wait_until(
        lambda: {stack.health(name) for name in stack.containers_of(color)} == {wanted},
        30,
        f"{color} {wanted}",
        poll=0.1,
    )


#: The app's config made to exit 3 at start: Docker restart-loops it (between two restarts it is
#: `running` for the moment its interpreter starts).
CRASH_AT_START = 'sed -i \'s/"exit_at_start": null/"exit_at_start": 3/\' /etc/app/config.json'


@pytest.mark.timeout(180)
def test_cleanup_after_an_engine_restart_keeps_the_rollback_target_and_the_rollback_works(
    queued_stack: QueuedStack,
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    old = stack.version()
    stack.watcher("deploy", other_version(old), check=True)
    live = stack.live_route()
    color = "blue" if live == "green" else "green"
    assert old is not None and stack.status()["rollback"]["way"] == "instant"
    for state in ("running", "restarting", "created"):
        as_an_engine_restart_leaves(stack, color, state, old)
        proc = stack.watcher("cleanup")
        assert proc.returncode == 0, proc.stderr
        seen = ("restarting", "running") if state == "restarting" else (state,)
        assert any(f"keeping {color} ({old}): the rollback target, {s}" in proc.stderr for s in seen), (
            proc.stderr
        )
        assert {stack.health(name) for name in stack.containers_of(color)} <= {"exited", "created"}
        assert stack.status()["rollback"]["way"] == "instant", stack.status()
    with under_load(stack) as loads:
        proc = stack.watcher("rollback")
    report("rollback after cleanup after an engine restart", "", loads)
    assert proc.returncode == 0 and "reusing retained" in proc.stderr, proc.stderr
    status = assert_settled(stack, loads, client=queued.client)
    assert status["live_version"] == old and running_colors(stack) == {color}
