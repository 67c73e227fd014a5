"""Manual promotion (`[promote] mode = "manual"`): a deploy stops before the switch, its colour
healthy, smoke-tested and previewable, and the state's pending note says so (phase AWAITING,
with the digest and image it runs and the moment the wait expires). `promote` then switches to
it (the second half of that deploy); `abort_awaited` removes it, never touching the live colour.
A newer deploy targets the same idle colour and removes the waiting containers as its leftovers.

Why the wait lives in the state file and not in the queue: the engine knows nothing of queues,
and `watcher promote` without Redis must find the waiting colour all the same.

Crashes. A promote takes the note over before it acts (kind PROMOTE, its own pid; the wait's
image and deadline kept) and marks its phases on it, so whoever runs the next promote (the
worker that takes the dead one's job over, or `watcher promote`) finishes it from there: traffic
already moved is verified again, then recorded. Unwound (a failed verification, SIGTERM), it
goes back to the live colour and the note waits again: only an abort, the expiry or a newer
deploy removes the waiting colour. An abort or an expiry removes it under `shielded()`; killed
halfway, the note still waits and the next abort, expiry or deploy removes the rest.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.config.smoke import PREVIEW_HEADER
from watcher.engine import unwind
from watcher.engine.parts import Engine
from watcher.engine.reconcile import View
from watcher.engine.run import DeployResult, Plan, Run
from watcher.engine.smoke import Preview, clear_preview
from watcher.engine.state import AWAITING, PROMOTE, Pending, awaiting, waiting_again
from watcher.engine.verification import check_route
from watcher.errors import DeployFailed, UsageError, WatcherError
from watcher.interrupts import shielded
from watcher.platforms.base import ColorStack
from watcher.platforms.color import Color


def deadline(seconds: float, now: datetime | None = None) -> str:
    """When a wait that starts `now` expires, as the pending note keeps it (ISO, UTC)."""
    start = now or datetime.now(UTC)
    return (start + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def expired(pending: Pending, now: datetime | None = None) -> bool:
    return past(pending.until, now)


def past(until: str | None, now: datetime | None = None) -> bool:
    """Whether the ISO moment `until` has come. An unreadable one has: nobody can say how long
    the wait was meant to last."""
    try:
        moment = datetime.fromisoformat(until or "")
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) >= moment


def describe(pending: Pending) -> str:
    return f"{pending.version} on {pending.color} awaits promotion (since {pending.started}, until {pending.until})"


def keep_preview(path: Path, color: Color) -> None:
    """Open the waiting colour to a new preview secret until it is promoted or removed (the
    smoke phase's preview closed with its phase)."""
    Preview(path, color).__enter__()


def await_promotion(engine: Engine, run: Run) -> DeployResult:
    """Stop before the switch: the target runs the version, healthy, smoke-tested and open to the
    preview header; traffic stays where it is until `promote` (or `abort_awaited`)."""
    assert run.plan is not None
    config, target = engine.config, run.plan.target
    pending = Pending(
        "deploy",
        run.version,
        target.color,
        AWAITING,
        until=deadline(config.promote.timeout),
        digest=run.digest,
        image=run.plan.image or target.image_id(),
    )
    try:
        keep_preview(config.preview_file, target.color)
        engine.ledger.save(replace(engine.store.load(), pending=pending))
    except (OSError, WatcherError) as failure:
        unwind.fail(engine, run, failure)
        raise
    message = (
        f"{run.version} is healthy on {target.color}, awaiting promotion until {pending.until}: `watcher "
        f"promote` switches to it, `watcher abort` removes it (preview it at {config.preview_url} with "
        f"the {PREVIEW_HEADER} header set to the secret in {config.preview_file})"
    )
    engine.progress.say(message)
    return run.result(
        engine.progress, target.color, run.plan.live, message, awaiting=True, until=pending.until
    )


def promote(engine: Engine, run: Run, asked: str | None = None) -> DeployResult:
    """Switch to the colour a manual deploy left waiting, if it still runs what waited, healthy.
    A promote the state shows in flight (its worker died) is taken over from where its note
    says it got to; one that already recorded the promoted version (`asked`) live is finished."""
    view = engine.view()
    pending = view.recorded.pending
    if pending is None and asked is not None and (done := promoted(engine, run, view, asked)):
        return done
    if pending is not None and pending.kind == PROMOTE:
        engine.progress.say(
            f"  taking over the promote of {pending.version} on {pending.color} "
            f"(its run stopped during '{pending.phase}')"
        )
    else:
        pending = awaited(engine, view, "promote")
        if expired(pending):
            removed = remove_awaited(engine, view, pending)
            raise DeployFailed(
                f"the wait of {pending.version} on {pending.color} expired at {pending.until}: "
                f"not promoted, nothing was switched; {removed}"
            )
    target = engine.platform.color(pending.color)
    switched = view.route == target.color  # by the promote taken over: its verification is redone
    live = view.previous if switched else view.live
    if not switched:
        ready(engine, view, target, pending)
    clear_preview(engine.config.preview_file)
    run.version, run.digest = pending.version, pending.digest
    run.plan = Plan(live, target, pending.image, False)
    run.switched = switched
    try:  # from the note on, a failure or an interrupt unwinds: the colour waits again
        engine.ledger.save(replace(view.recorded, pending=promoting(pending)))
        engine.progress.say(f"promoting {pending.version} on {target.color}")
    except BaseException as failure:
        unwind.fail(engine, run, failure)
        raise
    return engine.go_live(run, view)


def ready(engine: Engine, view: View, target: ColorStack, pending: Pending) -> None:
    """The waiting colour still runs what waited, healthy, and Caddy answers from the live one;
    else DeployFailed with nothing switched (the colour still waits)."""
    instances = target.instances()
    health = target.health(instances)
    if (
        not health.healthy
        or target.version(instances) != pending.version
        or (pending.image and target.image_id(instances) != pending.image)
    ):
        if pending.kind == PROMOTE:
            engine.ledger.save(replace(view.recorded, pending=waiting_again(pending)))
        raise DeployFailed(
            f"{target.color} is {health} (running {target.version(instances) or 'nothing'}), so "
            f"{pending.version} was not promoted and nothing was switched: `watcher abort` "
            "removes it, a new deploy replaces it"
        )
    if view.live is not None and view.live_health.healthy:
        check_route(engine.config, view.live.color)


def promoting(pending: Pending) -> Pending:
    """The note a promote keeps while it runs, written before it acts: the waiting note's
    version, colour, image and deadline, with this process as its runner."""
    return replace(pending, kind=PROMOTE, phase="promote", pid=os.getpid(), host=socket.gethostname())


def promoted(engine: Engine, run: Run, view: View, version: str) -> DeployResult | None:
    """A promote whose earlier attempt recorded `version` live and stopped before the old colour
    did: the old colour is retired now. None when `version` is not what serves."""
    live = view.live
    if live is None or live.version != version or not view.in_sync:
        return None
    new, old = engine.platform.color(live.color), engine.platform.color(live.color.other)
    engine.progress.say(f"  {version} was promoted on {live.color} by an earlier attempt")
    drained = engine.retire(old, new) if any(c.running for c in old.instances()) else True
    run.version, run.digest = version, live.digest
    message = f"{version} is live on {live.color} (promoted; the attempt that switched it was stopped)"
    return run.result(engine.progress, live.color, view.previous, message, noop=True, drained=drained)


def undo(engine: Engine, view: View, note: Pending) -> View:
    """An abort or expiry that finds a promote its worker left halfway (note PROMOTE) first
    unwinds it as the worker would have: traffic back to the live colour, the colour waiting
    again, to be removed. DeployFailed when the live colour is no longer healthy (then the
    promoted one is left serving, never removed)."""
    target = engine.platform.color(note.color)
    switched = view.route == target.color
    run = Run(
        "abort", note.version, Plan(view.previous if switched else view.live, target, note.image, False)
    )
    run.switched = switched
    unwind.fail(engine, run, DeployFailed(f"the promote of {note.version} on {note.color} was left halfway"))
    return engine.view()


def awaited(engine: Engine, view: View, verb: str) -> Pending:
    """The pending note of the deploy that awaits promotion; UsageError when none does."""
    pending = view.recorded.pending
    if pending is None or not awaiting(pending):
        doing = f"; a {pending.kind} of {pending.version} is in phase {pending.phase!r}" if pending else ""
        raise UsageError(
            f"nothing awaits promotion for {engine.config.name}{doing}: nothing to {verb} (`watcher status`)"
        )
    if view.route == pending.color:
        raise DeployFailed(
            f"Caddy routes to {pending.color} although {pending.version} awaits promotion "
            "there; nothing was changed (`watcher status`)"
        )
    return pending


def remove_awaited(engine: Engine, view: View, pending: Pending) -> str:
    """Remove the waiting colour and its note, under the guard (never interrupted halfway)."""
    target = engine.platform.color(pending.color)
    assert engine.ledger.guard is not None
    engine.ledger.guard.check()
    with shielded():
        clear_preview(engine.config.preview_file)
        engine.progress.say(f"  removing {target.name} ({pending.version}, awaiting promotion)")
        target.remove()
        engine.ledger.clear_pending()
    live = view.live
    return f"removed {target.name} ({pending.version}); " + (
        f"{live.version} is still live on {live.color}" if live else "nothing is live"
    )
