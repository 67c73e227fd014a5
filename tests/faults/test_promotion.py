"""Manual promotion under process faults: the real `watcher worker` running a promote, an abort
or the expiry of a waiting colour is killed (`kill -9` of its process group, as `docker kill`)
or stopped (SIGTERM, as `docker stop`) at each of their phases, under constant load through
Caddy. Issue 20, defects 1, 2 and 7.

The module's stack runs `[promote] mode = "manual"`: each case has its victim worker deploy the
other version (its job then awaits promotion, the new colour healthy beside the live one), then
freezes the victim (SIGSTOP) the instant the line of the phase aimed at is read, sends the real
signal, and a second worker (the heir) does what is left. What each fault promises:

- a promote, killed or stopped before its record: the promote is finished (the heir takes the
  killed one's job over and finishes it from the state's note, verifying again traffic that had
  moved; a stopped one unwinds to the live colour, its colour awaits promotion again and the job
  goes back to the queue for the heir). After its record: the job succeeded (stopped), or the
  heir finds it promoted and stops the old colour (killed). Either way the deploy that waited
  ends "succeeded" (promoted), and no job is left to fail;
- an abort or an expiry removes the waiting colour under a shield: stopped, it finishes first;
  killed halfway, the heir removes the rest. The waiting job ends cancelled (abort) or failed
  (expired); the live colour is never touched.

Then the invariants of tests/harness/invariants.py. Each case starts with a new deploy of the
other version: the following job after the previous case's fault.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.faults.conftest import (
    VERSIONS,
    Followed,
    QueuedStack,
    Watchers,
    forget_app,
    quick_healthcheck,
    redis_extra,
    running_colors,
    view_of,
)
from tests.faults.test_signals import SETTLE, old_and_new, report
from tests.harness.invariants import assert_settled
from tests.harness.stack import Stack
from tests.harness.traffic import under_load
from tests.harness.waiting import wait_until
from watcher.config import load_host
from watcher.engine.deployment import Deployment
from watcher.engine.status import status
from watcher.host_lock import HostLock
from watcher.queue import DeployQueue, Job, Status
from watcher.queue.connection import connect
from watcher.queue.promotion import Promotions

pytestmark = pytest.mark.integration

#: The phase of a promote a fault aims at -> the line that shows the worker has just reached it.
#: "promoting": the note is taken over, nothing switched yet; inside the verification window
#: nothing is printed, so that fault lands 1 s after "verify:" (the window is 2 s).
PROMOTE_AT = {
    "before-switch": "promoting ",
    "switch": "switch:",
    "verify": "verify:",
    "stop-old": "stop old:",
}
AFTER = {"verify": 1.0}
#: The line an abort and an expiry print as their removal starts.
REMOVING = ", awaiting promotion)"
SIGNALS = ("kill9", "term")


def manual(redis_url: str, timeout: str = "1h") -> str:
    return redis_extra(redis_url) + f'\n[promote]\nmode = "manual"\ntimeout = "{timeout}"\n'


@pytest.fixture(scope="module")
def queued_stack(app_images: dict[str, str], redis_url: str) -> Iterator[QueuedStack]:
    """v1 live (deployed before promotion turned manual), then every deploy waits for `promote`."""
    stack = Stack.create(extra=redis_extra(redis_url))
    quick_healthcheck(stack)
    client = connect(redis_url)
    try:
        stack.watcher("deploy", VERSIONS[0], check=True)
        stack.write_config(**{**stack.settings, "extra": manual(redis_url)})
        yield QueuedStack(stack, client, DeployQueue(client, stack.name))
    finally:
        stack.destroy()
        forget_app(client, stack.name)


def awaiting(queued: QueuedStack, victim: Followed, version: str, watchers: Watchers) -> Job:
    """The victim's deploy of `version`, once it awaits promotion."""
    victim.wait_for("started for")
    job = queued.enqueue(version)
    wait_until(
        lambda: (j := queued.queue.get(job.id)) and j.status is Status.AWAITING,
        60,
        f"job {job.id} to await promotion",
        poll=0.1,
        detail=watchers.logs,
    )
    return job


def settled(queued: QueuedStack, deploy: Job, watchers: Watchers) -> Job:
    """The deploy that awaited promotion, once its wait has ended."""
    return wait_until(
        lambda: (
            (j := queued.queue.get(deploy.id)) and j.status not in (Status.AWAITING, Status.RUNNING) and j
        ),
        60,
        f"the wait of job {deploy.id} to end",
        poll=0.1,
        detail=watchers.logs,
    )


def asked(queued: QueuedStack, action: str, victim: str, watchers: Watchers) -> Job:
    """A promote or abort job, once the victim runs it."""
    job = Promotions(queued.queue).ask(action, requested_by="fault test").job
    assert job is not None
    wait_until(
        lambda: (j := queued.queue.get(job.id)) and j.worker == victim,
        30,
        f"{victim} to take the {action}",
        poll=0.02,
        detail=watchers.logs,
    )
    return job


def second_writers_are_refused(stack: Stack) -> None:
    """A host `watcher deploy` or `watcher rollback` while the promote holds the locks: exit 3."""
    for argv in (("deploy", "v3"), ("rollback",)):
        refused = stack.watcher(*argv)
        assert refused.returncode == 3 and "holds the deploy lock" in refused.stderr, (argv, refused.stderr)


def promote_shown_running(stack: Stack, victim: Followed, phase: str) -> None:
    """`status` while the promote's worker lives (frozen, still holding the host lock) names the
    promote and that worker, not an interrupted deploy (defect 7)."""
    config = load_host(stack.config, stack.env()).app(stack.name)
    warnings = status(Deployment(config), HostLock(config.state.dir / "lock").holder())["warnings"]
    running = [w for w in warnings if w.startswith("a promote of") and f"pid {victim.pid} " in w]
    assert running and running[0].endswith(f"is running, in phase '{phase}'"), warnings
    assert not [w for w in warnings if "was interrupted" in w], warnings


def promote_shown_interrupted(stack: Stack, printed: str) -> None:
    """Right after a kill before the record: `status` shows the interrupted promote."""
    warnings = [w for w in view_of(stack).warnings if "was interrupted" in w]
    if "record:" not in printed:
        assert warnings and warnings[0].startswith("a promote of"), warnings


def waits_again(queued: QueuedStack, victim: Followed, heir: Followed, old: str, new: str) -> None:
    """A promote stopped before its record: traffic back on the live colour, the new colour
    still running and awaiting promotion again, the job back in the queue. The heir, booted
    before the signal, may take the job again at once: what is read after it started is its
    promote's, so the state is judged only when the heir had not started by the end of the reads."""
    stack = queued.stack
    assert f"{new} on " in victim.text and "awaits promotion again" in victim.text, victim.text
    assert "is back in the queue" in victim.text, victim.text
    view, live, running = view_of(stack), stack.version(), running_colors(stack)
    if "started: promote" in heir.text:
        return
    pending = view.recorded.pending
    assert pending is not None and pending.phase == "awaiting promotion" and pending.version == new, view
    assert live == old and view.live is not None and view.live.version == old, (live, view)
    assert running == {"blue", "green"}, "the waiting colour was removed"


# -- promote ----------------------------------------------------------------------------------------


#: (phase, fault) of each promote case: every phase, both signals.
PROMOTE_CASES = [(p, f) for p in PROMOTE_AT for f in SIGNALS]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("phase", "fault"), PROMOTE_CASES, ids=[f"{f}-{p}" for p, f in PROMOTE_CASES])
def test_a_promote_killed_or_stopped_at_each_phase_is_finished(
    queued_stack: QueuedStack, watchers: Watchers, phase: str, fault: str
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    old, new = old_and_new(queued)
    probing = (phase, fault) == ("verify", "term")  # a long window: time to read `status` first
    victim = watchers.worker("victim", **({"VERIFY_WINDOW": "30s"} if probing else {}))
    with under_load(stack, settle=SETTLE) as loads:
        deploy = awaiting(queued, victim, new, watchers)
        if not probing:
            victim.freeze_at(PROMOTE_AT[phase], AFTER.get(phase, 0.0))
        promote = asked(queued, "promote", "victim", watchers)
        heir = watchers.worker("heir")  # boots meanwhile; the lock keeps it waiting
        if probing:
            victim.wait_for(PROMOTE_AT[phase])
            promote_shown_running(stack, victim, "verify")
            victim.freeze()
        printed = victim.frozen_output()
        recorded = "record:" in printed
        if fault == "kill9":
            if phase == "switch":
                second_writers_are_refused(stack)
            victim.signal_frozen(signal.SIGKILL)
            promote_shown_interrupted(stack, printed)
        else:
            victim.signal_frozen(signal.SIGTERM)
            recorded = recorded or "record done in" in victim.text
            if not recorded and not victim.lease_lost:
                waits_again(queued, victim, heir, old, new)
        done = queued.final(promote.id, 60, watchers)
    lost = " (its lease lapsed while frozen: the heir took over)" if victim.lease_lost else ""
    report(f"promote, {fault} at {phase}", f"after {victim.landed_at_freeze!r}{lost}", loads)
    by_victim = fault == "term" and recorded and not victim.lease_lost
    assert done.status is Status.SUCCEEDED, done.describe()
    assert done.worker == ("victim" if by_victim else "heir"), done.describe()
    if fault == "kill9" or victim.lease_lost:
        assert "taking it over: its worker victim stopped during" in heir.text, heir.text
    waited = settled(queued, deploy, watchers)
    assert waited.status is Status.SUCCEEDED, waited.describe()
    assert (waited.message or "").startswith(f"promoted by job {promote.id}"), waited.describe()
    status = assert_settled(stack, loads, client=queued.client, job_ids=[deploy.id, promote.id])
    assert status["live_version"] == new, status
    if not by_victim:  # the heir finished it, the old colour's stop included
        assert running_colors(stack) == {stack.live_route()}


# -- abort and expiry -------------------------------------------------------------------------------


@pytest.mark.timeout(150)
@pytest.mark.parametrize("fault", SIGNALS)
@pytest.mark.parametrize("action", ["abort", "expiry"])
def test_an_abort_or_expiry_killed_or_stopped_while_removing_is_finished(
    queued_stack: QueuedStack, watchers: Watchers, redis_url: str, action: str, fault: str
) -> None:
    queued, stack = queued_stack, queued_stack.stack
    old, new = old_and_new(queued)
    if action == "expiry":
        stack.write_config(**{**stack.settings, "extra": manual(redis_url, timeout="3s")})
    try:
        victim = watchers.worker("victim")  # reads the short wait, if any, as it starts
        victim.wait_for("started for")
    finally:
        stack.write_config(**{**stack.settings, "extra": manual(redis_url)})
    with under_load(stack, settle=SETTLE) as loads:
        deploy = awaiting(queued, victim, new, watchers)
        victim.freeze_at(REMOVING)
        abort = asked(queued, "abort", "victim", watchers) if action == "abort" else None
        printed = victim.frozen_output(60)
        victim.signal_frozen(signal.SIGKILL if fault == "kill9" else signal.SIGTERM)
        if fault == "kill9":
            watchers.worker("heir")
        # else the removal finished first: nothing is left for another worker
        waited = settled(queued, deploy, watchers)
        if abort is not None:
            done = queued.final(abort.id, 60, watchers)
            assert done.status is Status.SUCCEEDED, done.describe()
            assert done.worker == ("heir" if fault == "kill9" else "victim"), done.describe()
    report(f"{action}, {fault} while removing", f"at {REMOVING.strip(', )')!r}'s removal line", loads)
    assert REMOVING in printed
    if action == "abort":
        assert waited.status is Status.CANCELLED, waited.describe()
    else:
        reason = waited.reason or ""
        assert waited.status is Status.FAILED and ("expired at" in reason or "ended at" in reason), reason
    jobs = [deploy.id] + ([abort.id] if abort else [])
    status = assert_settled(stack, loads, client=queued.client, job_ids=jobs)
    assert status["live_version"] == old and status["colors"][status["live_color"]]["role"] == "live"
    assert running_colors(stack) == {stack.live_route()}, "the waiting colour was not removed"
    assert not queued.queue.waiting(), queued.queue.waiting()
