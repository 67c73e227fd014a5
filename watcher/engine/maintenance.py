"""cleanup and reset: removing what no deploy needs, never what serves or what a rollback needs
(unless asked). Both run under the same lock as deploy, so they never remove a deploy in flight.
"""

from __future__ import annotations

from dataclasses import replace

from watcher.engine.color import Color
from watcher.engine.deployment import Deployment, Guard
from watcher.engine.drain import wait_drained


def cleanup(engine: Deployment, *, guard: Guard, include_rollback: bool = False) -> list[str]:
    """Remove failed or stray colours and unused app images; say what was removed."""
    view = engine.view()
    removed: list[str] = []
    live = view.live
    for color in Color:
        containers = view.observed.containers.get(color, [])
        if not containers or (live and color == live.color):
            continue
        retained = (view.previous is not None and view.previous.color == color
                    and engine.stacks.version(color, containers) == view.previous.version
                    and not any(c.running for c in containers))
        if retained and not include_rollback:
            engine.progress.say(f"keeping {color} ({view.previous.version}): the rollback target "
                                "(use --include-rollback to remove it)")
            continue
        if any(c.running for c in containers):
            upstreams = [s.upstream(color.value) for s in engine.config.services]
            wait_drained(engine.caddy, upstreams, timeout=engine.config.drain_timeout, progress=engine.progress)
        guard.check()
        engine.stacks.remove(color)
        removed.append(f"{engine.config.project(color.value)} ({', '.join(c.name for c in containers)})")

    keep = {live.version} if live else set()
    if view.previous and not include_rollback:
        keep.add(view.previous.version)
    for ref in engine.docker.images_of(engine.config.image):
        if ref.rsplit(":", 1)[1] not in keep and engine.docker.remove_image(ref):
            removed.append(ref)
    state = engine.store.load()
    if state.pending:
        with engine.fenced(guard):
            engine.store.save(replace(state, pending=None))
        removed.append(f"the trail of an interrupted {state.pending.kind} of {state.pending.version}")
    return removed


def reset(engine: Deployment, *, guard: Guard) -> list[str]:
    """Remove both colours, the route and the state. Shared services keep running."""
    guard.check()
    removed = []
    for color in Color:
        if engine.stacks.containers(color):
            engine.stacks.remove(color)
            removed.append(engine.config.project(color.value))
    with engine.fenced(guard):
        engine.switch.clear()
        engine.store.remove()
    removed.append("state")
    return removed
