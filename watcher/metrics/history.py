"""Deploys, their durations and phases, and the last success, tallied from the job history.

The worker records each job's end in Redis (queue.py: outcome, start, end, phases); this
collector reads the history list at scrape time and adds each job it has not seen to its own
prometheus_client metrics once. The list is trimmed (newest first, `history_limit` long), so
counting what it holds would make counters fall; tallying what is new since the last scrape
keeps them monotonic for the life of the process, and a restart is an ordinary counter reset
that starts again from the history Redis still holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from watcher.queue.connection import REDIS_DOWN
from watcher.queue.job import Job, Status

if TYPE_CHECKING:
    from watcher.host import App

DEPLOY_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
PHASE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def outcome(job: Job) -> str:
    """The job's status; a success that never started is `noop` (the version was already live)."""
    return "noop" if job.status is Status.SUCCEEDED and job.started is None else job.status.value


class HistoryCollector(Collector):
    def __init__(self, apps: Sequence[App]) -> None:
        self.queues = {app.name: app.queue for app in apps}
        self.seen: dict[str, str | None] = dict.fromkeys(self.queues)  # the history's head at the last scrape
        self.latest: dict[str, float] = {}  # the newest success seen, per app
        self._scraping = threading.Lock()  # waitress serves scrapes on several threads: add each job once
        self.tally = CollectorRegistry()
        self.deploys = Counter(
            "watcher_deploys",
            "Jobs finished, by kind (deploy, rollback) and outcome.",
            ["app", "kind", "outcome"],
            registry=self.tally,
        )
        self.durations = Histogram(
            "watcher_deploy_duration_seconds",
            "Jobs from start to end, by kind and outcome.",
            ["app", "kind", "outcome"],
            buckets=DEPLOY_BUCKETS,
            registry=self.tally,
        )
        self.phases = Histogram(
            "watcher_deploy_phase_duration_seconds",
            "Seconds the engine spent in each phase.",
            ["app", "phase"],
            buckets=PHASE_BUCKETS,
            registry=self.tally,
        )
        self.requests = Counter(
            "watcher_deploy_requests",
            "Requests Caddy served during deploys, rollbacks and "
            "aborts (their traffic receipts), by colour and response class.",
            ["app", "color", "class"],
            registry=self.tally,
        )
        self.last_success = Gauge(
            "watcher_last_success_timestamp_seconds",
            "When the last successful job ended (Unix time).",
            ["app"],
            registry=self.tally,
        )

    def collect(self) -> Iterator[Metric]:
        with self._scraping:
            for app in self.queues:
                try:
                    self._catch_up(app)
                except REDIS_DOWN:
                    pass  # what was tallied still stands; the queue collector reports Redis down
            families = list(self.tally.collect())
        yield from families

    def _catch_up(self, app: str) -> None:
        """Add the jobs finished since the last scrape, oldest first."""
        jobs = self.queues[app].finished_after(self.seen[app])
        for job in reversed(jobs):
            self._add(app, job)
        if jobs:
            self.seen[app] = jobs[0].id

    def _add(self, app: str, job: Job) -> None:
        result = outcome(job)
        self.deploys.labels(app, job.kind, result).inc()
        if job.started is not None and job.finished is not None:
            self.durations.labels(app, job.kind, result).observe(job.finished - job.started)
        for phase, seconds in job.phases.items():
            self.phases.labels(app, phase).observe(seconds)
        for color, tally in ((job.receipt or {}).get("colors") or {}).items():
            for kind, count in (tally.get("classes") or {}).items():
                self.requests.labels(app, color, kind).inc(count)
        if result == Status.SUCCEEDED.value and job.finished is not None:
            self.latest[app] = max(job.finished, self.latest.get(app, 0.0))
            self.last_success.labels(app).set(self.latest[app])
