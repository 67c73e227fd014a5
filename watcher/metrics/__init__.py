"""Prometheus metrics, served at `GET /metrics` by the receiver (triggers/probes.py).

    history.py   deploys, their durations and phases, the last success: tallied from the queue's
                 job history in Redis at scrape time
    queue.py     queue length, running job, paused (until), frozen (until), lock: read from Redis
                 and the config at scrape time
    live.py      the live colour, version and digest: read from the route file and state

The in-process counters of what the serving process itself does (webhook deliveries, polls,
registry requests) are watcher/activity.py, a leaf: the host and notify count into it from below,
while these collectors read the apps from above.

Why read at scrape time: jobs run in the worker, often another process than the receiver (`watcher
worker`, or the pool's child per job), so an in-process counter there would never reach /metrics.
Redis and the route file are the truth every process writes; the collectors only read them, and
nothing in the engine or the queue knows metrics exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from watcher.activity import ACTIVITY
from watcher.metrics.history import HistoryCollector
from watcher.metrics.live import LiveCollector
from watcher.metrics.queue import QueueCollector

if TYPE_CHECKING:
    from watcher.host import App

__all__ = ["registry_for"]


def registry_for(apps: Sequence[App]) -> CollectorRegistry:
    """One receiver's registry: the process-wide activity counters and the scrape-time readers of
    these apps (a registry per receiver, so tests and `watcher run` never register twice)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ACTIVITY)
    registry.register(HistoryCollector(apps))
    registry.register(QueueCollector(apps))
    registry.register(LiveCollector(apps))
    return registry
