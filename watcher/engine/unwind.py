"""What a run that failed, or was interrupted, before its record step undoes: leave one healthy
colour serving. Never interrupted itself.

Traffic goes back to the colour that was live if it is still healthy; if it is not, a healthy new
colour is left serving (and recorded), never removed; if neither is healthy, nothing is touched.
Not at all when the guard is lost: another holder may already be deploying over these very
containers. Every unwind ends with a receipt of what users were served meanwhile (`run.receipt`).
"""

from __future__ import annotations

import time

from watcher.backends.compose import ComposeError
from watcher.engine import receipt as receipts
from watcher.engine.drain import wait_drained
from watcher.engine.parts import Engine
from watcher.engine.run import Run
from watcher.engine.state import DeployState, Release
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
    engine.ledger.clear_pending()
    progress.say(f"{live.version} is still live on {live.color}" if live else "nothing is live")
    return ""


def _leave_serving(engine: Engine, run: Run, why: str) -> str:
    """The old colour is not healthy any more: the new one keeps the traffic if it is healthy
    (recorded as live, never removed); if it is not, nothing is touched."""
    assert run.plan is not None
    target, live = run.plan.target, run.plan.live
    health = target.health()
    if not health.healthy:
        engine.ledger.clear_pending()
        return (
            f"{why}, and {target.color} is {health} too: traffic stays on {target.color}, nothing was "
            "removed (see `watcher status`)"
        )
    release = Release(target.color, run.version, digest=run.digest, image=run.plan.image or target.image_id())
    engine.store.discard()
    rolled_back = engine.store.load().going_live(release, rolled_back_from=run.rolled_back_from)
    engine.ledger.save(DeployState(release, live, None, rolled_back=rolled_back))
    return (
        f"{why}, so {run.version} is left serving on {target.color}; "
        f"{live.color if live else 'the old colour'} is kept as it is"
    )


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
