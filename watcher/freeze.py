"""Scheduled freezes: per-app windows, from a cron `start` to a cron `end` (5 fields, in the
window's timezone, e.g. Friday 16:00 to Monday 08:00), in which workers hold the app's deploys.

A window is in force at t iff its next end after t comes before its next start after t. That is
a function of the config and the clock alone: no state, no scheduler, so the worker, `status`,
the dashboard and /metrics all compute the same answer, and nothing has to run at the moment a
window opens or closes. Windows are half-open: frozen at exactly `start`, free at exactly `end`.

What a freeze holds: queued deploys (a webhook's, the poller's, `watcher enqueue`'s, the
dashboard's) and `watcher deploy` (which refuses, naming `--ignore-freeze`). What it never holds:
rollbacks, the way back when the live version misbehaves during the freeze.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # imported when a window is read: most commands never need APScheduler
    from apscheduler.triggers.cron import CronTrigger

#: Chained windows (one ends as the next is in force) are followed this far, then given up on:
#: a schedule whose windows cover all time is frozen "until" the last one looked at.
_CHAIN = 64


def moment(stamp: float) -> str:
    """`2026-12-04 08:00 UTC`: a time as the messages, status and dashboard show it."""
    when = datetime.fromtimestamp(stamp, UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC" if when.second else "%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class FreezeWindow:
    """One `[[freeze]]` entry of an app."""

    start: str
    end: str
    timezone: str = "UTC"
    reason: str = ""

    @cached_property
    def _triggers(self) -> tuple[CronTrigger, CronTrigger]:
        from apscheduler.triggers.cron import CronTrigger

        zone = ZoneInfo(self.timezone)
        return CronTrigger.from_crontab(self.start, timezone=zone), CronTrigger.from_crontab(
            self.end, timezone=zone
        )

    def ends_after(self, at: datetime) -> datetime | None:
        """When this window ends, if it is in force at `at` (timezone-aware); else None."""
        start, end = self._triggers
        after = at + timedelta(microseconds=1)  # APScheduler's next fire time is >= now: make it > at
        next_end = end.get_next_fire_time(None, after)
        next_start = start.get_next_fire_time(None, after)
        if next_end is None or (next_start is not None and next_start <= next_end):
            return None
        return next_end

    def describe(self) -> str:
        return f'freeze "{self.start}" to "{self.end}" {self.timezone}' + (
            f": {self.reason}" if self.reason else ""
        )

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start, "end": self.end, "timezone": self.timezone, "reason": self.reason}


def window(start: str, end: str, zone: str = "UTC", reason: str = "") -> FreezeWindow:
    """A checked window; ValueError naming the key ("start", "end" or "timezone") and the problem."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: not a timezone name like UTC or Europe/Berlin, got {zone!r}") from None
    for key, expression in (("start", start), ("end", end)):
        fields = expression.split()
        if len(fields) == 5 and re.search(r"\d", fields[4]):
            raise ValueError(
                f"{key}: name the weekdays (mon, tue, ... sun), got {fields[4]!r} in {expression!r}: "
                "cron counts days from Sunday = 0 and APScheduler from Monday = 0, so a number "
                "would mean a day you did not intend"
            )
        try:
            trigger = CronTrigger.from_crontab(expression, timezone=ZoneInfo(zone))
        except ValueError as exc:
            raise ValueError(
                f'{key}: not a 5-field cron expression like "0 16 * * fri" '
                f"(minute hour day month weekday): {exc}, got {expression!r}"
            ) from None
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise ValueError(f"{key}: {expression!r} never fires")
    if start.split() == end.split():
        raise ValueError("end: is the same as start: the window would never be in force")
    return FreezeWindow(start, end, zone, reason)


@dataclass(frozen=True)
class Hold:
    """A freeze in force: the window holding the app, and when the app is free again (Unix time;
    past the end of this window when another one follows on)."""

    window: FreezeWindow
    until: float

    def describe(self) -> str:
        return f"frozen until {moment(self.until)} ({self.window.describe()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "until": datetime.fromtimestamp(self.until, UTC).isoformat(timespec="seconds"),
            "until_ts": self.until,
            **self.window.to_dict(),
            "description": self.describe(),
        }


class FreezeSchedule:
    """An app's windows and the clock they are read against (injectable, for tests)."""

    def __init__(
        self, windows: tuple[FreezeWindow, ...] = (), clock: Callable[[], float] = time.time
    ) -> None:
        self.windows = windows
        self.clock = clock

    def __bool__(self) -> bool:
        return bool(self.windows)

    def hold(self, at: float | None = None) -> Hold | None:
        """The freeze in force at `at` (default: now), or None."""
        if not self.windows:
            return None
        point = datetime.fromtimestamp(self.clock() if at is None else at, UTC)
        first: FreezeWindow | None = None
        for _ in range(_CHAIN):
            ends = [(end, each) for each in self.windows if (end := each.ends_after(point)) is not None]
            if not ends:
                break
            point, holder = max(ends, key=lambda pair: pair[0])
            first = first or holder
        return None if first is None else Hold(first, point.timestamp())
