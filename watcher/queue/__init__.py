"""The deploy queue: jobs in Redis, run one at a time by workers under a fenced distributed lock.

    connection.py  Redis from the config (REDIS_URL, REDIS_PASSWORD[_FILE]); backoff and logging
    job.py         a job and its statuses
    queue.py       DeployQueue: enqueue/coalesce, take (with recovery), fenced writes, history
    lock.py        DeployLock: SET NX PX + token, renewal thread, fencing counter; the engine's Guard
    suspension.py  pause / resume
    continuity.py  the marker by which a Redis that forgot the queue is noticed; the host's copies
    worker.py      the worker loop

Each app's owner (watcher/host.py `App`) builds its queue, pause and lock; nothing here parses
arguments or prints.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from watcher.freeze import moment
from watcher.queue.continuity import SHOWN_FOR
from watcher.queue.job import Job, JobKind, Status, field_text
from watcher.queue.lock import DeployLock, describe_holder, force_unlock, holder_of
from watcher.queue.queue import DeployQueue, Enqueued
from watcher.queue.suspension import Suspension, describe
from watcher.queue.worker import Worker

__all__ = [
    "DeployLock",
    "DeployQueue",
    "Enqueued",
    "Job",
    "JobKind",
    "Status",
    "Suspension",
    "Worker",
    "describe_holder",
    "force_unlock",
    "holder_of",
    "overview",
    "format_overview",
]


def overview(
    queue: DeployQueue, paused: dict[str, Any] | None, lock: dict[str, Any] | None
) -> dict[str, Any]:
    """What `status` adds when Redis is configured: paused, frozen (the scheduled freeze in
    force, and whether it holds the waiting job), queue, lock, last_job, and redis_lost (the last
    time Redis lost the queue, for a day after it)."""
    waiting, running, last = queue.waiting(), queue.running(), queue.last_job()
    hold = queue.freezes.hold()
    losses, loss = queue.continuity.last_loss() if queue.continuity else (0, None)
    return {
        "paused": paused,
        "frozen": {**hold.to_dict(), "holds_next": bool(waiting) and waiting[-1].kind is not JobKind.ROLLBACK}
        if hold
        else None,
        "queue": {
            "length": len(waiting),
            "next": waiting[-1].to_dict() if waiting else None,
            "running": running[0].to_dict() if running else None,
        },
        "lock": lock,
        "last_job": last.to_dict() if last else None,
        "redis_lost": {**asdict(loss), "losses": losses, "description": loss.describe(queue.app)}
        if loss and loss.at > time.time() - SHOWN_FOR
        else None,
    }


def format_overview(data: dict[str, Any]) -> str:
    paused, frozen = data["paused"], data.get("frozen")
    lines = [describe(paused).replace("paused ", "paused: ", 1) if paused else "paused: no"]
    if frozen:
        lines.append(frozen["description"].replace("frozen ", "frozen: ", 1))
    queue = data["queue"]
    if queue["running"]:
        lines.append(f"running: {Job.from_fields(_fields(queue['running'])).describe()}")
    held = f" (held by freeze until {moment(frozen['until_ts'])})" if frozen and frozen["holds_next"] else ""
    lines.append(
        f"queue: {queue['length']} waiting"
        + (f", next: {Job.from_fields(_fields(queue['next'])).describe()}{held}" if queue["next"] else "")
    )
    if data["last_job"]:
        lines.append(f"last job: {Job.from_fields(_fields(data['last_job'])).describe()}")
    if data.get("redis_lost"):
        lines.append(f"warning: {data['redis_lost']['description']}")
    return "\n".join(lines)


def _fields(job: dict[str, Any]) -> dict[str, str]:
    return {k: field_text(v) for k, v in job.items() if v is not None and k in Job.__dataclass_fields__}
