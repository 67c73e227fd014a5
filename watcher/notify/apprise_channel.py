"""One apprise URL (Slack, Discord, Matrix, ntfy, e-mail, a JSON webhook...) as a channel.

The URL holds the service's token, so it is never logged, not even by apprise: its logger is
kept quiet (it names hosts and paths when a request fails), and a failure is reported by the
URL's scheme only.
"""

from __future__ import annotations

import logging

import apprise

from watcher.config import NotifyRoute
from watcher.notify.event import Event

logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)

_TYPES = {
    "succeeded": apprise.NotifyType.SUCCESS,
    "rollback_done": apprise.NotifyType.SUCCESS,
    "failed": apprise.NotifyType.FAILURE,
    "rolled_back": apprise.NotifyType.FAILURE,
    "refused": apprise.NotifyType.WARNING,
    "paused": apprise.NotifyType.WARNING,
}

_ASSET = apprise.AppriseAsset(app_id="watcher", app_desc="watcher blue-green deploys")


class AppriseChannel:
    def __init__(self, route: NotifyRoute) -> None:
        self.name = route.channel
        self.events = route.events
        self._apprise = apprise.Apprise(asset=_ASSET)
        if not self._apprise.add(route.url):  # the config checked it already; never show it
            raise ValueError(f"apprise cannot send to this {self.name}:// URL")

    def wants(self, event: Event) -> bool:
        return self.events is None or event.kind in self.events

    def send(self, event: Event, timeout: float) -> None:
        # `timeout` bounds the whole send in the outbox; apprise's own socket timeouts (the URL's
        # cto/rto, 4 s by default) end the request behind it.
        sent = self._apprise.notify(
            body=event.body(), title=event.title, notify_type=_TYPES.get(event.kind, apprise.NotifyType.INFO)
        )
        if not sent:
            raise RuntimeError(f"the {self.name} service did not accept the notification")
