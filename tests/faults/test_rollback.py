"""Rollback and the bake's switch-back under process faults, and cleanup after a Docker engine
restart, on one stack under constant load through Caddy (test_signals.py's machinery).

- kill -9 (the worker and its job's processes) and SIGTERM (the worker alone) of a `rollback`
  job, instant (the retained colour resumed) and full (recreated from its local image), at its
  phases: as for a deploy, the lock's next holder completes a killed rollback, an interrupted
  one unwinds and goes back to the queue before its record and is done after it. No request
  fails. The faults of one way run in sequence: each rollback is the next job of the one before.
- kill -9 and SIGTERM of the bake's switch-back (err5 answers 500 to 5 % of requests, so the
  bake sends traffic back to the old colour): the rejected version never ends live, whoever
  finishes the job. The only failed requests are err5's own 500s.
- cleanup with the rollback target's containers in each state a Docker engine restart leaves
  (running by their restart policy, restarting, created): it keeps them, stopped, and the
  rollback that follows is instant.
- the live colour killed (or downed) while the new one waits for its health: only the dead
  colour's requests fail, as Caddy's access log attributes them (issue 20 #6).

CI runs one fault per path of the code (EVERY_FAULT below); `WATCHER_EVERY_FAULT=1` runs all.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import QueuedStack, Watchers, other_version, redis_extra, running_colors
from tests.faults.test_signals import AFTER, PHASES, SETTLE, a_queued_deploy_works, report
from tests.harness.invariants import assert_settled
from tests.harness.stack import Stack
from tests.harness.traffic import spawn, under_load
from tests.harness.waiting import wait_until
from watcher.backends.access_log import AccessLog
from watcher.backends.compose import ComposeProject
from watcher.backends.containers import Containers
from watcher.config import load_host
from watcher.platforms.color import Color
from watcher.platforms.compose import ComposeColor
from watcher.queue import Job, Status

pytestmark = pytest.mark.integration

#: Every fault of the matrix when set (about 45 s a fault on a busy 2-core host); else the
#: cases CI runs, one per path of the code (before the switch, between it and the record, after
#: the record), within the suite's time budget.
EVERY_FAULT = os.environ.get("WATCHER_EVERY_FAULT") == "1"

#: The phases a rollback is faulted at, in the order a chain visits them. "old" is the old
#: colour's stop (instant: retained for the way back) or removal (full: `retain_old = false`).
ROLLBACK_PHASES = ("started", "switched", "verifying", "recorded", "old")
#: The chains CI runs: (signal, way) -> phases.
CI_ROLLBACK = {("kill9", "instant"): ("switched", "recorded"), ("term", "full"): ("started", "verifying")}


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
        if killed:
            os.killpg(worker.pid, signal.SIGKILL)
        else:
            worker.proc.send_signal(signal.SIGTERM)
            worker.thaw()
            assert worker.wait(60) == 0, worker.text
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
    name = "kill9" if signum == signal.SIGKILL else "term"
    phases = ROLLBACK_PHASES if EVERY_FAULT else CI_ROLLBACK.get((name, way), ())
    if not phases:
        pytest.skip("WATCHER_EVERY_FAULT=1 runs this chain")
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
            os.kill(int(docker("inspect", "-f", "{{.State.Pid}}", name)), signal.SIGKILL)
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


# -- the bake's switch-back ---------------------------------------------------------------------------

#: The switch-back's steps (unwind.py), by the line that shows it has reached each.
SWITCH_BACK = {
    "aborting": "aborting: bake:",
    "switching-back": "switching traffic back to",
    "removing": "  removing ",
}
#: The steps CI runs, by signal: the one where traffic is still on the rejected version.
CI_SWITCH_BACK = {signal.SIGKILL: ("aborting",), signal.SIGTERM: ()}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "term"])
def test_the_bakes_switch_back_killed_or_interrupted_never_leaves_the_rejected_version_live(
    queued_stack: QueuedStack, watchers: Watchers, signum: int
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    steps = (
        SWITCH_BACK if EVERY_FAULT else {k: v for k, v in SWITCH_BACK.items() if k in CI_SWITCH_BACK[signum]}
    )
    if not steps:
        pytest.skip("WATCHER_EVERY_FAULT=1 runs this case")
    victim = "baker"
    watchers.worker(victim)
    for n, (step, line) in enumerate(steps.items()):
        old, heir = stack.version(), f"heir{n}"
        worker = watchers.started[victim]
        with under_load(stack, settle=SETTLE) as loads:
            worker.freeze_at(line)
            job = taken_by(queued, victim, "err5", watchers)
            watchers.worker(heir)
            printed = worker.frozen_output().partition(f"job {job.id} started")[2]
            if signum == signal.SIGKILL:
                os.killpg(worker.pid, signal.SIGKILL)
            else:
                worker.proc.send_signal(signal.SIGTERM)
                worker.thaw()
                assert worker.wait(60) == 0, worker.text
            done = queued.final(job.id, 90, watchers)
        report(
            f"{signal.Signals(signum).name} of the bake's switch-back at {step}",
            f"after {worker.landed_at_freeze!r}",
            loads,
        )
        assert "bake: " in printed, printed
        assert set(loads.results[0].errors) | set(loads.results[1].errors) <= {"status 500"}, loads.describe()
        assert done.status is Status.FAILED and "bake: " in (done.reason or ""), (
            done.describe() + watchers.logs()
        )
        status = assert_settled(stack, client=queued.client, job_ids=[job.id])
        assert status["live_version"] == old and stack.version() == old, status
        assert running_colors(stack) == {stack.live_route()}
        victim = heir  # idle now: the next step's victim


# -- the live colour killed during the new colour's health wait (issue 20 #6) -------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "how",
    [
        "kill",
        pytest.param("down", marks=pytest.mark.skipif(not EVERY_FAULT, reason="WATCHER_EVERY_FAULT=1")),
    ],
)
def test_the_live_colour_killed_in_the_health_wait_fails_only_its_own_requests(
    queued_stack: QueuedStack, how: str
) -> None:
    """`docker kill` (or `compose down`) of the live colour while the new one (slowok: 4 s to boot)
    waits for its health. Caddy's access log says which colour block took each request: every
    failure is the dead colour's (in flight on it, or held for it by `lb_try_duration` until
    Caddy gives up: a 502), none the new colour's, and the client saw nothing but those 502s."""
    stack = queued_stack.stack
    if stack.version() == "slowok":
        stack.watcher("deploy", "v1", check=True)
    dead = stack.live_route() or ""
    names = stack.containers_of(dead)
    log = AccessLog(load_host(stack.config, stack.env()).app(None).caddy.access_log or Path())
    with under_load(stack) as loads:
        began = time.time()
        deploy = spawn(stack, "deploy", "slowok")
        deploy.wait_for("] health:")
        if how == "kill":
            docker("kill", *names)
        else:
            stack.compose("down", project=f"{stack.name}-{dead}")
        killed = time.time()
        code = deploy.wait()
    served = [s for s in log.served(stack.name, began, time.time() + 5) if not s.probe]
    failed = [s for s in served if s.status >= 500 or s.status == 0]
    by_colour = collections.Counter(s.color for s in failed)
    held = max((s.duration for s in failed), default=0.0)
    report(
        f"live colour removed ({how}) in the health wait",
        f"{killed - began:.1f}s in; caddy: answered {dict(collections.Counter(s.color for s in served))}, "
        f"failed {dict(by_colour)}, longest failed request {held:.1f}s",
        loads,
    )
    assert code == 0 and "switch done in" in deploy.text, deploy.text
    assert set(by_colour) <= {dead}, by_colour
    errors = set(loads.results[0].errors) | set(loads.results[1].errors)
    assert errors <= {"status 502"} and loads.failed == len(failed), loads.describe()
    assert_settled(queued_stack.stack, client=queued_stack.client)
