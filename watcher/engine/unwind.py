"""What a run that failed, or was interrupted, before its record step undoes: leave one healthy
colour serving. Never interrupted itself.

Traffic goes back to the colour that was live if it is still healthy; if it is not, a healthy new
colour is left serving (and recorded), never removed; if neither is healthy, nothing is touched.
Not at all when the guard is lost: another holder may already be deploying over these very
containers. Every unwind ends with a receipt of what users were served meanwhile (`run.receipt`).

A run killed between its switch and its record (kill -9: nothing unwinds) left traffic on a
colour nobody verified, or that its verification or bake was rejecting. The next run undoes it
first, from the pending note (`undo_unverified`), then does its own work from a clean view.
"""

from __future__ import annotations

import time

from watcher.backends.compose import ComposeError
from watcher.engine import receipt as receipts
from watcher.engine.drain import wait_drained
from watcher.engine.parts import Engine
from watcher.engine.run import Run
from watcher.engine.state import UNVERIFIED, DeployState, Release
from watcher.engine.switch import TargetNotHealthy
from watcher.errors import DeployFailed, DockerUnavailable, GuardLost, WatcherError
from watcher.interrupts import shielded
from watcher.platforms.health_check import HealthCheckFailed

#: How long an unwind waits for a Docker engine that went away (a restart) to remove what the
#: deploy started: dockerd restarts every running container by its restart policy, so what is
#: not removed comes back beside the live colour.
DOCKER_WAIT = 120.0


def fail(engine: Engine, run: Run, failure: BaseException) -> None:
    """Unwind, and take the receipt of what was served meanwhile; the caller re-raises."""
    failed_at = time.time()
    try:
        _abort(engine, run, failure)
    finally:
        run.receipt = receipts.take(engine.config, engine.access_log, "abort", run.moved_at or failed_at)


def _abort(engine: Engine, run: Run, failure: BaseException) -> None:
    """The guard is checked first whatever the failure: a holder that was paused past its lock's
    lease may wake up to a failed health check or verification caused by the new holder's work,
    and must not undo it."""
    say = engine.progress.say
    if not isinstance(failure, GuardLost) and engine.ledger.guard is not None:
        try:
            engine.ledger.guard.check()
        except GuardLost as lost:
            failure = lost
    if isinstance(failure, GuardLost):
        say(f"aborting without touching anything: {failure}")
        return
    with shielded():
        say(f"aborting: {failure}")
        if isinstance(failure, HealthCheckFailed) and failure.details:
            say(failure.details)
        try:
            try:
                kept = _unwind(engine, run)
            except (DockerUnavailable, ComposeError):
                if not came_back(engine):
                    raise
                kept = _unwind(engine, run)
        except WatcherError as exc:  # report, and leave the trail in state for `status`
            say(f"  abort step failed: {exc}; run `watcher status`")
            return
    if kept:
        raise DeployFailed(f"{failure}; {kept}") from failure


def _unwind(engine: Engine, run: Run) -> str:
    """Undo what the run did; returns why something was kept instead ("" when undone)."""
    assert run.plan is not None
    progress, target, live = engine.progress, run.plan.target, run.plan.live
    if run.switched and live is not None:
        old = engine.platform.color(live.color)
        try:
            progress.say(f"  switching traffic back to {old.color} ({live.version})")
            with engine.ledger.fenced():
                engine.switch.move_to(old)
        except TargetNotHealthy as refused:
            return _leave_serving(engine, run, str(refused))
    elif run.switched:
        with engine.ledger.fenced():
            engine.switch.close()
    if run.switched:
        wait_drained(engine.caddy, target.upstreams(), timeout=engine.config.drain.timeout, progress=progress)
    if run.started:
        progress.say(f"  {'stopping' if run.plan.reuse else 'removing'} {target.name}")
        (target.stop if run.plan.reuse else target.remove)()
    engine.store.discard()
    if (waiting := engine.ledger.unwound()) is not None:
        progress.say(f"  {waiting.version} on {waiting.color} awaits promotion again (until {waiting.until})")
    progress.say(f"{live.version} is still live on {live.color}" if live else "nothing is live")
    return ""


def _leave_serving(engine: Engine, run: Run, why: str) -> str:
    """The old colour is not healthy any more: traffic stays on the new one, recorded as live but
    unverified (never removed; a rollback to it must be asked for by name), healthy or not."""
    assert run.plan is not None
    target, live = run.plan.target, run.plan.live
    health = target.health()
    release = Release(
        target.color,
        run.version,
        digest=run.digest,
        image=run.plan.image or target.image_id(),
        how=UNVERIFIED,
    )
    engine.store.discard()
    rolled_back = engine.store.load().going_live(release, rolled_back_from=run.rolled_back_from)
    engine.ledger.save(DeployState(release, live, None, rolled_back=rolled_back))
    if not health.healthy:
        return (
            f"{why}, and {target.color} is {health} too: traffic stays on {target.color} "
            f"({run.version}, unverified), nothing was removed (see `watcher status`)"
        )
    return (
        f"{why}, so {run.version} is left serving on {target.color}, unverified (it never passed "
        f"verification); {live.color if live else 'the old colour'} is kept as it is"
    )


#: The phases of a pending note in which traffic may be on its colour, unverified.
SWITCHED_PHASES = ("switch", "verify")


def undo_unverified(engine: Engine) -> None:
    """Switch back from the colour a killed run switched to before its record, when the recorded
    live colour is healthy: stopped if a rollback's (it is the way back again), else removed.
    If the recorded colour is not healthy, the other one keeps serving (the run finds it live)."""
    view, say = engine.view(), engine.progress.say
    pending, recorded = view.recorded.pending, view.recorded.live
    if (
        pending is None
        or pending.phase not in SWITCHED_PHASES
        or pending.kind not in ("deploy", "rollback")
        or recorded is None
        or view.route != pending.color
        or recorded.color == pending.color
    ):
        return
    old, new = engine.platform.color(recorded.color), engine.platform.color(pending.color)
    say(
        f"undoing a {pending.kind} of {pending.version} interrupted during '{pending.phase}', "
        f"before its record: traffic on {new.color} was never verified"
    )
    with shielded():
        try:
            with engine.ledger.fenced():
                engine.switch.move_to(old)
        except TargetNotHealthy as refused:
            say(f"  {refused}: {pending.version} keeps serving on {new.color}")
            return
        say(f"  switched traffic back to {old.color} ({recorded.version})")
        wait_drained(
            engine.caddy, new.upstreams(), timeout=engine.config.drain.timeout, progress=engine.progress
        )
        say(f"  {'stopping' if pending.kind == 'rollback' else 'removing'} {new.name}")
        (new.stop if pending.kind == "rollback" else new.remove)()
        engine.store.discard()
        engine.ledger.clear_pending()


def came_back(engine: Engine) -> bool:
    """After an unwind step failed: False if the platform answers (it was not its absence);
    else wait up to DOCKER_WAIT for it, True once it answers again."""
    platform, say = engine.platform, engine.progress.say
    if platform.answers():
        return False
    say(f"  Docker is not answering; waiting up to {DOCKER_WAIT:g}s for it to finish the abort")
    deadline = time.monotonic() + DOCKER_WAIT
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if platform.answers():
            say("  Docker answers again")
            return True
    return False
