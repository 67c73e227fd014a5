"""The bake's switch-back under process faults, and the live colour lost while the new one waits
for its health, on one stack under constant load through Caddy (test_signals.py's machinery).

- kill -9 and SIGTERM of the worker at each step of the bake's switch-back (err5 answers 500 to
  5 % of requests, so the bake sends traffic back to the old colour): before it, while
  switching back, while removing the rejected colour. The rejected version never ends live,
  whoever finishes the job; the only failed requests are err5's own 500s.
- the live colour killed (or downed) while the new one waits for its health: only the dead
  colour's requests fail, as Caddy's access log attributes them (issue 20 #6).
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import QueuedStack, Watchers, running_colors
from tests.faults.test_rollback import docker, taken_by
from tests.faults.test_signals import SETTLE, report
from tests.harness.invariants import assert_settled
from tests.harness.traffic import spawn, under_load
from watcher.backends.access_log import AccessLog
from watcher.config import load_host
from watcher.queue import Status

pytestmark = pytest.mark.integration

# -- the bake's switch-back ---------------------------------------------------------------------------

#: The switch-back's steps (unwind.py), by the line that shows it has reached each.
SWITCH_BACK = {
    "aborting": "aborting: bake:",
    "switching-back": "switching traffic back to",
    "removing": "  removing ",
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "term"])
def test_the_bakes_switch_back_killed_or_interrupted_never_leaves_the_rejected_version_live(
    queued_stack: QueuedStack, watchers: Watchers, signum: int
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    victim = "baker"
    watchers.worker(victim)
    for n, (step, line) in enumerate(SWITCH_BACK.items()):
        old, heir = stack.version(), f"heir{n}"
        worker = watchers.started[victim]
        with under_load(stack, settle=SETTLE) as loads:
            worker.freeze_at(line)
            job = taken_by(queued, victim, "err5", watchers)
            watchers.worker(heir)
            printed = worker.frozen_output().partition(f"job {job.id} started")[2]
            worker.signal_frozen(signum)
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
        "down",
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
