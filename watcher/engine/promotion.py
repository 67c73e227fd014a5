"""Manual promotion (`[promote] mode = "manual"`): a deploy stops before the switch, its colour
healthy, smoke-tested and previewable, and the state's pending note says so (phase AWAITING,
with the digest and image it runs and the moment the wait expires). `Deployment.promote` then
switches to it; `Deployment.abort_waiting` removes it, never touching the live colour. A newer
deploy targets the same idle colour and removes the waiting containers as its leftovers.

Why the wait lives in the state file and not in the queue: the engine knows nothing of queues,
and `watcher promote` without Redis must find the waiting colour all the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.engine.color import Color
from watcher.engine.smoke import Preview
from watcher.engine.state import Pending

#: The pending note's phase while a deploy waits for `watcher promote`.
AWAITING = "awaiting promotion"


def awaiting(pending: Pending | None) -> bool:
    return pending is not None and pending.phase == AWAITING


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
