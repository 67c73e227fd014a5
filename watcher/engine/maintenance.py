"""cleanup and reset: removing what no deploy needs, never what serves or what a rollback needs
(unless asked). Both run under the same locks as deploy, so they never remove a deploy in flight.

cleanup never touches the live colour (the route file's) nor a colour awaiting promotion, never
removes the rollback target's image, and never removes the other colour while it is the only
healthy one. Only `reset` removes everything.
"""

from __future__ import annotations

from dataclasses import replace

from watcher.engine.deployment import Deployment
from watcher.engine.drain import wait_drained
from watcher.engine.reconcile import View
from watcher.engine.rollback import RollbackTarget
from watcher.engine.run import Guard
from watcher.engine.state import Pending, awaiting
from watcher.platforms.color import Color


def cleanup(engine: Deployment, *, guard: Guard, include_rollback: bool = False) -> list[str]:
    """Remove failed or stray colours and unused app images; say what was removed."""
    view = engine.view()
    say = engine.progress.say
    target = engine.rollback_target(view)
    removed: list[str] = []
    waiting = view.recorded.pending if awaiting(view.recorded.pending) else None
    for color in Color:
        stack, containers = engine.platform.color(color), view.observed.of(color)
        if not containers or color == view.route or view.route_lost:
            continue
        if waiting is not None and waiting.color == color:
            say(f"keeping {color} ({waiting.version}): it awaits promotion (`watcher abort` removes it)")
            continue
        if (
            target is not None
            and target.way == "instant"
            and target.release.color == color
            and not include_rollback
        ):
            say(
                f"keeping {color} ({target.release.version}): the rollback target "
                "(use --include-rollback to remove it)"
            )
            continue
        if stack.health(containers).healthy and not view.live_health.healthy:
            say(f"keeping {color}: it is healthy and the live colour is {view.live_health}")
            continue
        if any(c.running for c in containers):
            wait_drained(
                engine.caddy, stack.upstreams(), timeout=engine.config.drain.timeout, progress=engine.progress
            )
        guard.check()
        stack.remove()
        removed.append(f"{stack.name} ({', '.join(c.name for c in containers)})")

    removed += _remove_images(engine, view, target, waiting)
    state = engine.store.load()
    if state.pending and not awaiting(state.pending):
        with engine.ledger.fenced(guard):
            engine.store.save(replace(state, pending=None))
        removed.append(f"the trail of an interrupted {state.pending.kind} of {state.pending.version}")
    return removed


def _remove_images(
    engine: Deployment, view: View, target: RollbackTarget | None, waiting: Pending | None
) -> list[str]:
    """The app's local images that neither serve, wait for promotion nor are the rollback target."""
    keep_versions = {view.live.version} if view.live else set()
    keep_images = {view.live.image} if view.live and view.live.image else set()
    if waiting is not None:
        keep_versions.add(waiting.version)
    if target is not None:
        keep_versions.add(target.release.version)
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
