"""The one notifier of a process: turns what the worker, the triggers and pause/resume report
into events, and hands each to the outbox for every channel of its app that wants it.

Nothing here blocks or raises into its caller: the hooks in the worker, the webhook, the
dispatcher and the CLI are a line each, and a deploy goes exactly as it would without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from watcher.config import AppConfig
from watcher.notify import event as events
from watcher.notify.apprise_channel import AppriseChannel
from watcher.notify.event import Event
from watcher.notify.github import GithubDeployments
from watcher.notify.outbox import Channel, Outbox
from watcher.queue.job import Audit, Job, Status

log = logging.getLogger("watcher.notify")


class Notifier:
    def __init__(
        self, channels: dict[str, list[Channel]], outbox: Outbox, dashboards: dict[str, str | None]
    ) -> None:
        self.channels = channels
        self.outbox = outbox
        self.dashboards = dashboards

    def emit(self, build: Callable[[], Event]) -> None:
        """Build an event and queue it for each channel of its app that wants it. A bug here is
        logged, never raised: the caller is a worker that just recorded a job, or a request."""
        try:
            event = build()
            for channel in self.channels.get(event.app, ()):
                if channel.wants(event):
                    self.outbox.put(channel, event)
        except Exception:
            log.exception("notify: an event could not be built or queued; nothing sent")

    # -- the worker's observer (watcher/queue/worker.py) ---------------------------------------

    def job_started(self, job: Job) -> None:
        self.emit(lambda: events.started(job, self.dashboards.get(job.app)))

    def job_ended(self, job: Job, status: Status, detail: str, audit: Audit) -> None:
        if status in (Status.SUCCEEDED, Status.FAILED):
            self.emit(lambda: events.ended(job, status, detail, audit, self.dashboards.get(job.app)))

    # -- the queue's controls, its Redis and the triggers --------------------------------------

    def paused(self, app: str, by: str, reason: str = "") -> None:
        self.emit(lambda: events.paused(app, by, reason))

    def resumed(self, app: str, by: str) -> None:
        self.emit(lambda: events.resumed(app, by))

    def refused(self, app: str, tag: str, reason: str) -> None:
        self.emit(lambda: events.refused(app, tag, reason))

    def redis_lost(self, app: str, detail: str) -> None:
        self.emit(lambda: events.redis_lost(app, detail))

    def close(self, timeout: float = 5.0) -> None:
        self.outbox.close(timeout)


def notifier_for(configs: Iterable[AppConfig]) -> Notifier | None:
    """The notifier of these apps, or None when none has a URL or GitHub repository to tell
    (then the hooks cost nothing). Each process builds its own (a pool's child per job, too)."""
    configs = list(configs)
    channels: dict[str, list[Channel]] = {}
    for config in configs:
        own: list[Channel] = [AppriseChannel(route) for route in config.notify.routes]
        if config.github.token:
            own.append(GithubDeployments(config.github))
        if own:
            channels[config.name] = own
    if not channels:
        return None
    first = configs[0].notify  # [notify] timeout and queue are the host's, the same for every app
    return Notifier(
        channels,
        Outbox(size=first.queue, timeout=first.timeout),
        {config.name: config.dashboard_url for config in configs},
    )
