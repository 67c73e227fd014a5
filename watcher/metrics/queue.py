"""The queue's state per app, read from Redis at scrape time: waiting jobs, the running job,
the pause (and when a timed one lifts), the scheduled freeze in force (from the config and the
clock) and the deploy lock. Gauges of the present, true whichever process runs the jobs; and how
many times Redis lost the queue (and when last), from the host's record (continuity.py).

Redis unreachable: `watcher_redis_up 0` and no queue gauges (an absent series is honest; a
zero would claim an empty queue).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher.queue.connection import REDIS_DOWN
from watcher.queue.suspension import until_of

if TYPE_CHECKING:
    from watcher.host import App

REDIS_UP = "1 when Redis answered this scrape."


def lock_age(holder: dict[str, Any]) -> float | None:
    """Seconds since the holder took the lock (its `since`, ISO 8601); None if unreadable."""
    try:
        return max(0.0, time.time() - datetime.fromisoformat(str(holder["since"])).timestamp())
    except (KeyError, ValueError):
        return None


class QueueCollector(Collector):
    def __init__(self, apps: Sequence[App]) -> None:
        self.apps = apps

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {
            name: GaugeMetricFamily(f"watcher_{name}", text, labels=["app"])
            for name, text in (
                ("queue_length", "Jobs waiting."),
                ("job_running", "1 while a job runs."),
                ("job_running_seconds", "How long the running job has run."),
                ("paused", "1 while the queue is paused."),
                (
                    "paused_until_timestamp_seconds",
                    "When a timed pause lifts by itself (Unix time); absent for a pause until resumed.",
                ),
                (
                    "frozen",
                    "1 while a scheduled freeze ([[freeze]]) holds the app's deploys (rollbacks still run).",
                ),
                ("frozen_until_timestamp_seconds", "When the scheduled freeze in force ends (Unix time)."),
                ("lock_held", "1 while someone holds the deploy lock (a worker, deploy, rollback...)."),
                ("lock_age_seconds", "How long the deploy lock has been held."),
            )
        }
        lost = CounterMetricFamily(
            "watcher_redis_data_lost",
            "Times Redis lost the app's queue (noticed by this host).",
            labels=["app"],
        )
        gauges["redis_data_lost_timestamp_seconds"] = GaugeMetricFamily(
            "watcher_redis_data_lost_timestamp_seconds",
            "When Redis last lost the app's queue (Unix time).",
            labels=["app"],
        )
        try:
            for app in self.apps:
                self._read(app, gauges, lost)
        except REDIS_DOWN:
            yield GaugeMetricFamily("watcher_redis_up", REDIS_UP, value=0)
            return
        yield GaugeMetricFamily("watcher_redis_up", REDIS_UP, value=1)
        yield lost
        yield from gauges.values()

    def _read(self, owner: App, gauges: dict[str, GaugeMetricFamily], lost: CounterMetricFamily) -> None:
        app, queue = owner.name, owner.queue
        owner.continuity.check()  # a Redis that forgot the queue is noticed before it is read
        losses, loss = owner.continuity.last_loss()
        lost.add_metric([app], losses)
        if loss is not None:
            gauges["redis_data_lost_timestamp_seconds"].add_metric([app], loss.at)
        running = queue.running()
        holder = owner.lock_holder()
        gauges["queue_length"].add_metric([app], len(queue.waiting()))
        gauges["job_running"].add_metric([app], 1 if running else 0)
        if running and running[0].duration is not None:
            gauges["job_running_seconds"].add_metric([app], running[0].duration)
        paused = owner.paused()
        gauges["paused"].add_metric([app], 1 if paused else 0)
        ends = until_of(paused) if paused else None
        if ends is not None:
            gauges["paused_until_timestamp_seconds"].add_metric([app], ends)
        hold = owner.freezes.hold()
        gauges["frozen"].add_metric([app], 1 if hold else 0)
        if hold is not None:
            gauges["frozen_until_timestamp_seconds"].add_metric([app], hold.until)
        gauges["lock_held"].add_metric([app], 1 if holder else 0)
        age = lock_age(holder) if holder else None
        if age is not None:
            gauges["lock_age_seconds"].add_metric([app], age)
