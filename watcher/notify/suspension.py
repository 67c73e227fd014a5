"""Pause and resume over HTTP (`POST /pause`, `/resume` and the dashboard's buttons), told to
the notifier: the receiver hands both the same Suspension, so one wrapper covers them."""

from __future__ import annotations

from typing import Any

from watcher.freeze import moment
from watcher.notify.notifier import Notifier
from watcher.triggers.sink import Suspension


class NotifyingSuspension:
    """A Suspension (triggers/sink.py) that tells the notifier of each pause, and of each resume
    that lifted one."""

    def __init__(self, suspension: Suspension, notifier: Notifier) -> None:
        self.suspension = suspension
        self.notifier = notifier

    def pause(self, app: str, *, by: str, reason: str, until: float | None = None) -> dict[str, Any]:
        info = self.suspension.pause(app, by=by, reason=reason, until=until)
        ends = f"until {moment(until)}" if until is not None else ""
        self.notifier.paused(app, by, ": ".join(part for part in (ends, reason) if part))
        return info

    def resume(self, app: str, *, by: str) -> dict[str, Any] | None:
        lifted = self.suspension.resume(app, by=by)
        if lifted:
            self.notifier.resumed(app, by)
        return lifted

    def state(self, app: str) -> dict[str, Any] | None:
        return self.suspension.state(app)
