"""The background sender: notifications leave from here, never from the deploy's thread.

A slow or failing chat service or GitHub must never delay or fail a deploy (the bug of Keel
#822: a notifier blocking the deploy it reports). So `put` never blocks: the queue is bounded,
and an event that finds it full is dropped, logged and counted. One thread sends, in order (a
GitHub deployment's statuses must follow its creation). Each send runs in a thread of its own
that the sender waits on for at most `timeout`: a service that hangs past it costs one parked
thread until its socket times out, not the events behind it. `close(timeout)` at shutdown
sends what it can within the time and drops (and counts) the rest.

    watcher_notifications_total{channel, outcome}   sent | failed | timeout | dropped
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from prometheus_client import Counter

from watcher.activity import ACTIVITY
from watcher.notify.event import Event

log = logging.getLogger("watcher.notify")

NOTIFICATIONS = Counter(
    "watcher_notifications",
    "Notifications by channel (a URL's scheme, or github) and "
    "outcome: sent, failed, timeout, dropped (the outbox was full or closing).",
    ["channel", "outcome"],
    registry=ACTIVITY,
)


class Channel(Protocol):
    """Where events go: an apprise URL or GitHub. `name` is what logs and metrics call it (a
    URL's scheme: the URL itself holds a token and is never shown)."""

    name: str

    def wants(self, event: Event) -> bool: ...

    def send(self, event: Event, timeout: float) -> None:
        """Deliver, or raise: the outbox logs and counts the failure."""


_CLOSE = object()


class Outbox:
    def __init__(self, *, size: int = 100, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._queue: queue.Queue[tuple[Channel, Event] | object] = queue.Queue(maxsize=size)
        self._deadline: float | None = None  # set by close(): past it, what is left is dropped
        self._thread = threading.Thread(target=self._drain, name="notify-outbox", daemon=True)
        self._thread.start()

    def put(self, channel: Channel, event: Event) -> bool:
        """Queue one send; False (dropped, counted) when the queue is full or closed. Never blocks."""
        if self._deadline is None:
            try:
                self._queue.put_nowait((channel, event))
                return True
            except queue.Full:
                pass
        self._count(channel, event, "dropped", "the outbox is full" if self._deadline is None else "closing")
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued for at most `timeout` seconds, then drop the rest; returns by then."""
        if self._deadline is not None:
            return
        self._deadline = time.monotonic() + timeout
        try:
            self._queue.put(_CLOSE, timeout=timeout)
        except queue.Full:
            pass  # the sender stops at the deadline anyway
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.1)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            channel, event = item  # type: ignore[misc]
            left = self.timeout if self._deadline is None else self._deadline - time.monotonic()
            if left <= 0:
                self._count(channel, event, "dropped", "closing")
                continue
            self._send(channel, event, min(self.timeout, left))

    def _send(self, channel: Channel, event: Event, timeout: float) -> None:
        failure: list[BaseException] = []

        def attempt() -> None:
            try:
                channel.send(event, timeout)
            except Exception as exc:  # any failure of a channel is its own, never the sender's
                failure.append(exc)

        sender = threading.Thread(target=attempt, name=f"notify-{channel.name}", daemon=True)
        sender.start()
        sender.join(timeout)
        if sender.is_alive():
            self._count(channel, event, "timeout", f"no answer within {timeout:g}s")
        elif failure:
            self._count(channel, event, "failed", str(failure[0]) or type(failure[0]).__name__)
        else:
            self._count(channel, event, "sent", "")

    @staticmethod
    def _count(channel: Channel, event: Event, outcome: str, why: str) -> None:
        NOTIFICATIONS.labels(channel.name, outcome).inc()
        what = f"{event.kind} of {event.app}" + (f" (job {event.job_id})" if event.job_id else "")
        if outcome == "sent":
            log.debug("notify %s: %s sent", channel.name, what)
        else:
            log.warning("notify %s: %s %s: %s", channel.name, what, outcome, why)
