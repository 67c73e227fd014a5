"""One apprise URL (Slack, Discord, Matrix, ntfy, e-mail, a JSON webhook...) as a channel.

The URL holds the service's token, so it is never logged, not even by apprise: its logger is
kept quiet (it names hosts and paths when a request fails), and a failure is reported by the
URL's scheme only.
"""

from __future__ import annotations

import logging

from watcher.config import NotifyRoute
from watcher.notify.event import Event

#: apprise's notify types (its NotifyType values) by event; any other event is "info".
_TYPES = {
    "succeeded": "success",
    "rollback_done": "success",
    "failed": "failure",
    "rolled_back": "failure",
    "refused": "warning",
    "paused": "warning",
    "redis_lost": "failure",
}


class AppriseChannel:
    def __init__(self, route: NotifyRoute) -> None:
        # Imported here: apprise is ~17 MB, and most processes (and hosts) never send a notification.
        import apprise

        logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
        self.name = route.channel
        self.events = route.events
        self._apprise = apprise.Apprise(
            asset=apprise.AppriseAsset(app_id="watcher", app_desc="watcher blue-green deploys")
        )
        if not self._apprise.add(route.url):  # the config checked it already; never show it
            raise ValueError(f"apprise cannot send to this {self.name}:// URL")

    def wants(self, event: Event) -> bool:
        return self.events is None or event.kind in self.events

    def send(self, event: Event, timeout: float) -> None:
        # `timeout` bounds the whole send in the outbox; apprise's own socket timeouts (the URL's
        # cto/rto, 4 s by default) end the request behind it.
        sent = self._apprise.notify(
            body=event.body(), title=event.title, notify_type=_TYPES.get(event.kind, "info")
        )
        if not sent:
            raise RuntimeError(f"the {self.name} service did not accept the notification")
