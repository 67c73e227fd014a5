"""cleanup and reset: removing what no deploy needs, never what serves or what a rollback needs
(unless asked). Both run under the same locks as deploy, so they never remove a deploy in flight.

cleanup never touches the live colour (the route file's) nor a colour awaiting promotion, never
removes the recorded rollback target (its containers, whatever state a Docker engine restart left
them in, and its image), and never removes the other colour while it is the only healthy one.
Only `reset` removes everything.
"""

from __future__ import annotations

from dataclasses import replace

from watcher.engine.deployment import Deployment
from watcher.engine.drain import wait_drained
from watcher.engine.reconcile import View
from watcher.engine.rollback import RollbackTarget, holds, recorded_target
from watcher.engine.run import Guard
from watcher.engine.state import Pending, Release, awaiting
from watcher.platforms.base import ColorStack
from watcher.platforms.color import Color


def cleanup(engine: Deployment, *, guard: Guard, include_rollback: bool = False) -> list[str]:
    """Remove failed or stray colours and unused app images; say what was removed."""
    view = engine.view()
    recorded = recorded_target(view)
    waiting = view.recorded.pending if awaiting(view.recorded.pending) else None
    removed: list[str] = []
    for color in Color:
        stack, containers = engine.platform.color(color), view.observed.of(color)
        if color == view.route or view.route_lost:
            continue
        if not containers:
            if left := stack.leftovers():
                guard.check()
                stack.remove()
                removed.append(f"{stack.name} ({', '.join(left)}: left by a start that failed half-way)")
            continue
        if _kept(engine, view, color, waiting, None if include_rollback else recorded, guard):
            continue
        if any(c.running for c in containers):
            _drain(engine, stack)
        guard.check()
        stack.remove()
        removed.append(f"{stack.name} ({', '.join(c.name for c in containers)})")

    removed += _remove_images(engine, view, recorded, engine.rollback_target(view), waiting)
    state = engine.store.load()
    if state.pending and not awaiting(state.pending):
        with engine.ledger.fenced(guard):
            engine.store.save(replace(state, pending=None))
        removed.append(f"the trail of an interrupted {state.pending.kind} of {state.pending.version}")
    return removed


def _kept(
    engine: Deployment,
    view: View,
    color: Color,
    waiting: Pending | None,
    target: Release | None,
    guard: Guard,
) -> bool:
    """True when the colour stays: it awaits promotion, is the last healthy one, or holds the
    rollback target. That one is stopped if it runs (a deploy interrupted before it stopped
    it, a Docker engine restart): kept as a deploy leaves it, for an instant rollback."""
    say, stack, containers = engine.progress.say, engine.platform.color(color), view.observed.of(color)
    if waiting is not None and waiting.color == color:
        say(f"keeping {color} ({waiting.version}): it awaits promotion (`watcher abort` removes it)")
        return True
    if stack.health(containers).healthy and not view.live_health.healthy:
        say(f"keeping {color}: it is healthy and the live colour is {view.live_health}")
        return True
    if target is None or target.color != color or not holds(view, target):
        return False
    states = ", ".join(sorted({c.state for c in containers}))
    say(
        f"keeping {color} ({target.version}): the rollback target, {states} "
        "(use --include-rollback to remove it)"
    )
    if any(c.state in ("running", "restarting") for c in containers):
        _drain(engine, stack)
        guard.check()
        stack.stop()
        say(f"  stopped {stack.name}")
    return True


def _drain(engine: Deployment, stack: ColorStack) -> None:
    wait_drained(
        engine.caddy, stack.upstreams(), timeout=engine.config.drain.timeout, progress=engine.progress
    )


def _remove_images(
    engine: Deployment,
    view: View,
    recorded: Release | None,
    target: RollbackTarget | None,
    waiting: Pending | None,
) -> list[str]:
    """The app's local images that neither serve, wait for promotion nor are the rollback target
    (`recorded`, reachable or not; `target`, the image its retained containers run)."""
    keep_versions = {view.live.version} if view.live else set()
    keep_images = {view.live.image} if view.live and view.live.image else set()
    if waiting is not None:
        keep_versions.add(waiting.version)
    if recorded is not None:
        keep_versions.add(recorded.version)
        keep_images.add(recorded.image or "")
    if target is not None:
        keep_images.add(target.image or "")
    images, removed = engine.platform.images, []
    for ref in images.images_of(engine.config.image):
        if ref.rsplit(":", 1)[1] in keep_versions or images.image_id(ref) in keep_images:
            continue
        if images.remove_image(ref):
            removed.append(ref)
    return removed


def reset(engine: Deployment, *, guard: Guard) -> list[str]:
    """Remove both colours and the state; Caddy answers 503 until the next deploy. Shared
    services keep running."""
    guard.check()
    removed = []
    for color in Color:
        stack = engine.platform.color(color)
        had = stack.instances()
        stack.remove()  # with no container left, still its network and watcher's overlay
        if had:
            removed.append(stack.name)
    with engine.ledger.fenced(guard):
        engine.switch.close()
        engine.store.remove()
    removed.append("state")
    return removed
