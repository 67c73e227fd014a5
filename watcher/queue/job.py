"""A deploy job: what was asked (version, digest, source, by whom, when) and what became of it.

Life: queued -> running (phase, worker, started) -> succeeded | failed (reason) | superseded |
cancelled. A job is a Redis hash of strings (`watcher:<app>:job:<id>`); times are Unix
seconds, so latencies and durations can be computed across hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    AWAITING = "awaiting promotion"  # manual promotion: healthy beside the live colour (promotion.py)

    @property
    def final(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class JobKind(StrEnum):
    """What a job does, which its source decides (`Job.kind`); a plain string in JSON and logs."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"  # the engine's rollback (instant when the version's colour is retained)
    PROMOTE = "promote"  # switch to the job awaiting promotion (queue/promotion.py)
    ABORT = "abort"  # remove the job awaiting promotion


#: Who may ask for a deploy. A `rollback` job runs the engine's rollback; the others run a deploy.
SOURCES = ("cli", "webhook", "poll", "rollback", "dashboard")
#: Jobs that act on the job awaiting promotion (queue/promotion.py), not on a version: their
#: source is their kind.
ACTIONS = (JobKind.PROMOTE, JobKind.ABORT)


@dataclass
class Job:
    id: str
    app: str
    version: str
    source: str
    requested_by: str
    created: float
    digest: str | None = None
    status: Status = Status.QUEUED
    phase: str | None = None
    worker: str | None = None
    started: float | None = None
    finished: float | None = None
    reason: str | None = None  # why it failed, was superseded or cancelled
    message: str | None = None  # what a succeeded job did
    attempts: int = 0  # how many times a worker took it (a dead worker's job is retaken)
    fence: int | None = None  # the lock grant it runs under; every write about it compares this
    phases: dict[str, float] = field(default_factory=dict)  # seconds per engine phase, kept at its end
    before: str | None = None  # the version live before it ran
    after: str | None = None  # the version live once it ended
    repository: str | None = None  # the GitHub repository a webhook's payload named (deployment statuses)
    receipt: dict[str, Any] | None = None  # what Caddy served during the run (engine/receipt.py)
    until: str | None = None  # awaiting promotion: when the wait expires (ISO)
    awaits: str | None = None  # a promote or abort job: the id of the job it acts on

    @property
    def kind(self) -> JobKind:
        if self.source in (JobKind.ROLLBACK, *ACTIONS):
            return JobKind(self.source)
        return JobKind.DEPLOY

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or to now while it runs)."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def to_fields(self) -> dict[str, str]:
        """The Redis hash; absent values are left out."""
        return {
            f.name: field_text(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> Job:
        def num(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        return cls(
            id=raw["id"],
            app=raw.get("app", ""),
            version=raw.get("version", ""),
            source=raw.get("source", "cli"),
            requested_by=raw.get("requested_by", ""),
            created=float(raw.get("created", 0)),
            digest=raw.get("digest") or None,
            status=Status(raw.get("status", "queued")),
            phase=raw.get("phase") or None,
            worker=raw.get("worker") or None,
            started=num("started"),
            finished=num("finished"),
            reason=raw.get("reason") or None,
            message=raw.get("message") or None,
            attempts=int(raw.get("attempts") or 0),
            fence=int(raw["fence"]) if raw.get("fence") else None,
            phases=json.loads(raw["phases"]) if raw.get("phases") else {},
            before=raw.get("before") or None,
            after=raw.get("after") or None,
            repository=raw.get("repository") or None,
            receipt=json.loads(raw["receipt"]) if raw.get("receipt") else None,
            until=raw.get("until") or None,
            awaits=raw.get("awaits") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON view: ISO times and the duration next to the raw fields."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        data["kind"] = self.kind
        for name in ("created", "started", "finished"):
            data[f"{name}_at"] = iso(getattr(self, name))
        duration = self.duration
        data["duration"] = round(duration, 3) if duration is not None else None
        return data

    def describe(self) -> str:
        """One line for humans: `17 deploy v2 (cli by ann@box) succeeded in 21.4s: v2 is live on green`."""
        asked = f"{self.source} by {self.requested_by}" if self.requested_by else self.source
        line = f"{self.id} {self.kind} {self.version}" + (f"@{self.digest[:19]}" if self.digest else "")
        line += f" ({asked}, {iso(self.created)}) {self.status.value}"
        if self.status is Status.RUNNING:
            line += f" on {self.worker}, phase {self.phase or 'starting'}"
        duration = self.duration
        if duration is not None:
            line += f" {'for' if self.status is Status.RUNNING else 'in'} {duration:.1f}s"
        detail = self.reason or self.message
        return line + (f": {detail}" if detail else "")


@dataclass(frozen=True)
class Audit:
    """What a job's end records beside its outcome: the seconds each engine phase took, the
    versions live before and after it ran, the digest it deployed (when the pull said) and the
    traffic receipt of the run (when it moved traffic or unwound)."""

    phases: dict[str, float] = field(default_factory=dict)
    before: str | None = None
    after: str | None = None
    digest: str | None = None
    receipt: dict[str, Any] | None = None

    def fields(self) -> dict[str, str]:
        """The job hash's fields this sets; absent values are left as they were."""
        return {f.name: field_text(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}


def field_text(value: object) -> str:
    """A value as its Redis hash field holds it (`phases` and `receipt` as JSON, the rest as text)."""
    return json.dumps(value) if isinstance(value, dict) else str(value)


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
