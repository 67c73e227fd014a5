"""Pause and resume the deploy queue of one app, for good or until a time.

While paused, workers finish the job in flight (and take over one whose worker died) but start
no new one; new requests keep arriving and coalescing, so resume runs only the newest. The
pause is a Redis hash (`watcher:<app>:paused`: by, since, reason, and until when timed),
persisted like the queue, so it survives worker and Redis restarts. A timed pause is the same
hash with a Redis expiry at `until`: Redis itself lifts it then, so no process has to be up at
that moment, and every reader (worker, status, dashboard, /metrics) sees it gone at once; the
workers' next look at the queue (within their poll) runs the newest waiting job. Nobody is
notified of a lift by expiry: the pause notification said when it would end. A copy is kept on
the host (continuity.py), so a Redis that forgot the queue gets the pause back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import redis

from watcher.config.values import parse_duration
from watcher.engine.state import now_iso
from watcher.freeze import moment
from watcher.queue.connection import AppKeys
from watcher.queue.continuity import Continuity

#: The last second `datetime` can show (9999-12-31T23:59:59 UTC).
_LAST = 253402300799.0


class Suspension:
    def __init__(
        self, client: redis.Redis, app: str, prefix: str = "", continuity: Continuity | None = None
    ) -> None:
        self.client = client
        self.app = app
        self.continuity = continuity
        keys = AppKeys(app, prefix)
        self.key = keys.paused
        self.wake = keys.wake

    def pause(self, *, by: str, reason: str = "", until: float | None = None) -> dict[str, Any]:
        """Pause (again: the newest reason, author and end win), until the Unix time `until`
        or until resumed; returns the pause."""
        info = {"by": by, "since": now_iso(), "reason": reason}
        if until is not None:
            info["until"] = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key).hset(self.key, mapping=info)
            if until is not None:
                pipe.pexpireat(self.key, int(until * 1000))
            pipe.execute()
        if self.continuity is not None:
            self.continuity.keep_pause(info, until)
        return info

    def resume(self) -> dict[str, Any] | None:
        """Lift the pause and wake an idle worker; returns the pause lifted (None if none)."""
        with self.client.pipeline(transaction=True) as pipe:
            info, _, _, _ = (
                pipe.hgetall(self.key)
                .delete(self.key)
                .lpush(self.wake, "resume")
                .ltrim(self.wake, 0, 0)
                .execute()
            )
        if self.continuity is not None:
            self.continuity.keep_pause(None)
        return info or None

    def paused(self) -> dict[str, Any] | None:
        """The pause in force (by, since, reason, until), or None (a timed pause past its end is gone)."""
        return self.client.hgetall(self.key) or None


def until_of(info: dict[str, Any]) -> float | None:
    """When a pause ends by itself (Unix time), or None: until resumed."""
    try:
        return datetime.fromisoformat(str(info["until"])).timestamp()
    except (KeyError, ValueError):
        return None


def describe(info: dict[str, Any]) -> str:
    """`paused until 2026-12-04 08:00 UTC (by ann@host since ...): reason`, or without the end."""
    ends = until_of(info)
    text = (
        f"paused until {moment(ends)} (by {info.get('by')} since {info.get('since')})"
        if ends is not None
        else f"paused by {info.get('by')} since {info.get('since')}"
    )
    return text + (f": {info['reason']}" if info.get("reason") else "")


def parse_until(text: str, now: float | None = None) -> float:
    """`--until` (and /pause's `until`): a span ahead with its unit (`30m`, `2h`, `1d`, as the
    config's durations) or an ISO 8601 date or date-time, UTC unless it names an offset
    (`2026-12-04T08:00`, `2026-12-04T08:00+01:00`, `...Z`), as `history --since`. ValueError for
    junk and for a time not in the future."""
    now = time.time() if now is None else now
    value = text.strip()
    stamp: float | None = None
    if re.fullmatch(r"[\d.]+\s*[a-z]+", value):
        try:
            stamp = now + parse_duration(value)
        except ValueError:
            stamp = None
    if stamp is None:
        try:
            when = datetime.fromisoformat(value)
            stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            stamp = None
    if stamp is None or stamp > _LAST:
        raise ValueError(
            f"expected a span like 30m or 2h, or a date-time like 2026-12-04T08:00 (UTC unless it "
            f"names an offset such as +01:00), got {text!r}"
        )
    if stamp <= now:
        raise ValueError(f"{moment(stamp)} is in the past (it is {moment(now)} now)")
    return stamp
