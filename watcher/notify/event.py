"""What happened, as people and GitHub are told it: one `Event` per job start and end, pause,
resume, refused trigger and Redis that lost the queue.

Events are built from the job record the worker keeps and the outcome it records, never from
the engine, so a message says exactly what `watcher history` will say.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from watcher.queue.job import Audit, Job, JobKind, Status

#: The failing container's last health output, as HealthCheckFailed puts it in its message.
_HEALTH = re.compile(r"\(last health check: (.*?)\)(?=;|$)")

#: Each kind of event (as `[[notify.routes]] events` names them: NotifyEvent in config/schema.py) and its title.
_TITLES = {
    "started": "{app}: deploying {version}",
    "succeeded": "{app}: {version} is live",
    "failed": "{app}: deploy of {version} failed",
    "rolled_back": "{app}: {version} rolled back",
    "rollback_done": "{app}: rolled back to {version}",
    "paused": "{app}: deploys paused",
    "resumed": "{app}: deploys resumed",
    "refused": "{app}: {version} not deployed",
    "redis_lost": "{app}: Redis lost the deploy queue",
}


@dataclass(frozen=True)
class Event:
    kind: str
    app: str
    version: str | None = None
    job_id: str | None = None
    source: str | None = None  # who asked for the job: cli, webhook, poll, rollback, dashboard
    detail: str | None = None  # what the job did, why it failed, why it was refused or paused
    health: str | None = None  # the failing container's last health check output
    phases: dict[str, float] = field(default_factory=dict)
    duration: float | None = None
    by: str | None = None
    link: str | None = None  # the job's page on the dashboard
    repository: str | None = None  # the job's GitHub repository, when the webhook named one
    at: float = field(default_factory=time.time)

    @property
    def title(self) -> str:
        return _TITLES[self.kind].format(app=self.app, version=self.version or "")

    def body(self) -> str:
        """Plain text, one fact a line: what chat and e-mail show under the title."""
        lines = [self.detail] if self.detail else []
        if self.health:
            lines.append(f"last health check: {self.health}")
        if self.phases:
            lines.append("phases: " + ", ".join(f"{name} {took:.1f}s" for name, took in self.phases.items()))
        if self.duration is not None:
            lines.append(f"duration: {self.duration:.1f}s")
        if self.job_id:
            lines.append(
                f"job {self.job_id}"
                + (f" ({self.source}{' by ' + self.by if self.by else ''})" if self.source else "")
            )
        elif self.by:
            lines.append(f"by {self.by}")
        if self.link:
            lines.append(self.link)
        return "\n".join(lines) or self.title


def job_link(dashboard: str | None, app: str, job_id: str) -> str | None:
    """The dashboard's page of a job (`<url>/apps/<app>/jobs/<id>`), when its URL is configured."""
    return f"{dashboard}/apps/{app}/jobs/{job_id}" if dashboard else None


def started(job: Job, dashboard: str | None) -> Event:
    return Event(
        "started",
        job.app,
        job.version,
        job.id,
        job.source,
        by=job.requested_by,
        link=job_link(dashboard, job.app, job.id),
        repository=job.repository,
    )


def ended(job: Job, status: Status, detail: str, audit: Audit, dashboard: str | None) -> Event:
    """A job's outcome. A failure after the switch that put the old version back is `rolled_back`
    (traffic did move, and moved back); a succeeded rollback job is `rollback_done`."""
    if status is Status.SUCCEEDED:
        kind = "rollback_done" if job.kind is JobKind.ROLLBACK else "succeeded"
    elif (
        job.kind is JobKind.DEPLOY and "switch" in audit.phases and audit.after and audit.after != job.version
    ):
        kind = "rolled_back"
    else:
        kind = "failed"
    health = _HEALTH.search(detail) if status is Status.FAILED else None
    summary = audit.receipt.get("summary") if audit.receipt else None
    if summary and summary not in detail:
        detail = f"{detail}; {summary}"
    return Event(
        kind,
        job.app,
        job.version,
        job.id,
        job.source,
        detail,
        health.group(1) if health else None,
        dict(audit.phases),
        job.duration,
        job.requested_by,
        job_link(dashboard, job.app, job.id),
        job.repository,
    )


def paused(app: str, by: str, reason: str) -> Event:
    return Event("paused", app, detail=reason or None, by=by)


def resumed(app: str, by: str) -> Event:
    return Event("resumed", app, by=by)


def refused(app: str, tag: str, reason: str) -> Event:
    return Event("refused", app, tag, detail=reason)


def redis_lost(app: str, detail: str) -> Event:
    return Event("redis_lost", app, detail=detail)
