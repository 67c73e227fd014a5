"""The deploy queue: jobs in Redis, run one at a time by workers under a fenced distributed lock.

    connection.py  Redis from the config (REDIS_URL, REDIS_PASSWORD[_FILE]); backoff and logging
    job.py         a job and its statuses
    queue.py       DeployQueue: enqueue/coalesce, take (with recovery), fenced writes, history
    lock.py        DeployLock: SET NX PX + token, renewal thread, fencing counter; the engine's Guard
    suspension.py  pause / resume
    worker.py      the worker loop

The CLI and (later) the webhook receiver call these; nothing here parses arguments or prints.
"""

from __future__ import annotations

from typing import Any

import redis

from watcher.queue.job import Job, Status, field_text
from watcher.queue.lock import DeployLock, describe_holder, force_unlock, holder_of
from watcher.queue.queue import DeployQueue, Enqueued, Live
from watcher.queue.suspension import Suspension
from watcher.queue.worker import Worker

__all__ = ["DeployLock", "DeployQueue", "Enqueued", "Job", "Live", "Status", "Suspension", "Worker",
           "describe_holder", "force_unlock", "holder_of", "overview", "format_overview"]


def overview(client: redis.Redis, app: str, prefix: str = "") -> dict[str, Any]:
    """What `status` adds when Redis is configured: paused, queue, lock, last_job."""
    queue = DeployQueue(client, app, prefix=prefix)
    waiting, running, last = queue.waiting(), queue.running(), queue.last_job()
    return {
        "paused": Suspension(client, app, prefix).paused(),
        "queue": {"length": len(waiting), "next": waiting[-1].to_dict() if waiting else None,
                  "running": running[0].to_dict() if running else None},
        "lock": holder_of(client, app, prefix),
        "last_job": last.to_dict() if last else None,
    }


def format_overview(data: dict[str, Any]) -> str:
    paused = data["paused"]
    lines = [f"paused: by {paused.get('by')} since {paused.get('since')}"
             + (f": {paused['reason']}" if paused.get("reason") else "") if paused else "paused: no"]
    queue = data["queue"]
    if queue["running"]:
        lines.append(f"running: {Job.from_fields(_fields(queue['running'])).describe()}")
    lines.append(f"queue: {queue['length']} waiting"
                 + (f", next: {Job.from_fields(_fields(queue['next'])).describe()}" if queue["next"] else ""))
    if data["last_job"]:
        lines.append(f"last job: {Job.from_fields(_fields(data['last_job'])).describe()}")
    return "\n".join(lines)


def _fields(job: dict[str, Any]) -> dict[str, str]:
    return {k: field_text(v) for k, v in job.items() if v is not None and k in Job.__dataclass_fields__}
