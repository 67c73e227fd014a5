"""The registry poller: for each app, on an interval, list its tags, pick the candidate under the
app's tag policy, and request a deploy when the candidate is neither live nor already requested.

APScheduler 3.11 (the stable line; field notes §7): a BackgroundScheduler with one interval job
per app, `[poll] interval` (default 60 s) with `jitter` so watchers do not hit a registry in
lockstep, `max_instances=1` (a slow registry never stacks polls of one app) and `coalesce=True`
(polls missed while the process was busy run once, not in a burst). The first poll runs within
`jitter` seconds of start-up.

Compared, per app:
- tag policies (semver, regex): the candidate *tag* against the live tag. A candidate older than
  what is live (a manual deploy of something newer) is left alone: the poller never downgrades;
- the digest policy (a mutable tag: latest, main): the tag's *digest* against the live digest;
- both against the last request any trigger made for the app (`watcher:<app>:trigger:last`), so
  a deploy that failed is not requested again every interval, and against what an operator
  rolled back from (the engine's record, `App.withheld`), whoever requested it. A new digest for
  the same tag is a new request.

Several watcher instances polling the same app: each may find the same candidate; the
(app, tag, digest) SET NX claim of `App.request` (watcher/host.py) lets exactly one enqueue it.

A registry that fails: the client retries with backoff and logs each retry; the poll then logs the
failure and enqueues nothing; the next interval tries again.
"""

from __future__ import annotations

import logging
import random
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from watcher import activity
from watcher.backends.registry import NotFound, RegistryClient, RegistryError
from watcher.host import App, Host
from watcher.policy import Decision, DigestPolicy, older
from watcher.queue.connection import REDIS_DOWN, RedisRefused

log = logging.getLogger("watcher.poller")


@dataclass(frozen=True)
class PollResult:
    app: str
    #: enqueued | duplicate | noop | up-to-date | requested | rolled-back | no-candidate | failed |
    #: would-enqueue
    status: str
    reason: str
    tag: str | None = None
    digest: str | None = None
    job_id: str | None = None
    decision: Decision | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "app": self.app,
            "status": self.status,
            "reason": self.reason,
            "tag": self.tag,
            "digest": self.digest,
            "job_id": self.job_id,
        }
        if self.decision is not None:
            data["policy"] = self.decision.to_dict()
        return data


def poll_client(app: App) -> RegistryClient:
    """Patient registry client for polls (nobody waits on a poll, unlike a webhook)."""
    config = app.config
    return RegistryClient(
        username=config.registry.username,
        password=config.registry.password,
        token_hosts=config.registry.token_hosts,
        plain_http=config.registry.plain_http,
        timeout=10.0,
        max_retries=3,
        backoff=1.0,
        on_attempt=activity.registry_request,
    )


class Poller:
    def __init__(
        self,
        host: Host,
        clients: dict[str, RegistryClient] | None = None,
        *,
        requested_by: str | None = None,
    ) -> None:
        self.host = host
        self.clients = (
            clients if clients is not None else {app.name: poll_client(app) for app in host.apps.values()}
        )
        self.requested_by = requested_by or f"poller on {socket.gethostname()}"
        self.scheduler: BackgroundScheduler | None = None

    # -- one poll -----------------------------------------------------------------------------

    def poll(self, app: App, *, dry_run: bool = False) -> PollResult:
        """Poll `app` once; with `dry_run`, decide everything but enqueue nothing."""
        try:
            result = self._poll(app, dry_run)
        except RegistryError as exc:
            result = PollResult(app.name, "failed", f"registry: {exc}; nothing enqueued, next poll retries")
        except REDIS_DOWN as exc:
            result = PollResult(
                app.name, "failed", f"Redis unreachable ({exc}); nothing enqueued, next poll retries"
            )
        except RedisRefused as exc:  # a wrong password: say so on every poll, no traceback
            result = PollResult(app.name, "failed", f"{exc}; nothing enqueued")
        self._log(result)
        if not dry_run:  # `check-tags` is a look, not a poll
            activity.poll(app.name, failed=result.status == "failed")
        return result

    def _poll(self, app: App, dry_run: bool) -> PollResult:
        client = self.clients[app.name]
        policy = app.policy
        decision: Decision | None = None
        try:
            if isinstance(policy, DigestPolicy):  # one tag: no need to list them all
                tag = policy.tag
                decision = Decision(tag, f"{tag} is the followed tag; it deploys when its digest changes")
            else:
                decision = policy.decide(client.list_tags(app.ref, page_size=app.config.poll.page_size))
                if decision.candidate is None:
                    return PollResult(app.name, "no-candidate", decision.reason, decision=decision)
                tag = decision.candidate
            digest = app.digest_of(tag, client=client)
        except NotFound as exc:
            return PollResult(app.name, "no-candidate", str(exc), decision=decision)

        def result(status: str, reason: str, job_id: str | None = None) -> PollResult:
            return PollResult(app.name, status, reason, tag, digest, job_id, decision)

        live = app.live()
        if live and live.version == tag and (not policy.mutable or live.digest == digest):
            return result("up-to-date", f"{tag} is live" + (f" ({digest[:19]})" if policy.mutable else ""))
        if live and older(policy, tag, live.version):
            return result(
                "up-to-date", f"the live {live.version} is newer than the candidate {tag}: not downgrading"
            )
        last = app.last()
        if last and last.get("tag") == tag and last.get("digest") == digest:
            return result(
                "requested",
                f"{tag}@{digest[:19]} was already requested (job {last.get('job')}, "
                f"{last.get('source')}); not again",
                str(last.get("job")),
            )
        stale = app.stale(tag)
        if stale:
            return result("up-to-date", stale)
        withheld = app.withheld(tag, digest)  # App.request refuses it too; `check-tags` says so
        if withheld is not None:
            return result(withheld.status, withheld.reason)
        if dry_run:
            return result(
                "would-enqueue",
                f"{tag}@{digest[:19]} differs from what is live"
                + (f" ({live.version})" if live else " (nothing recorded live)"),
            )
        outcome = app.request(tag, source="poll", by=self.requested_by, digest=digest)
        return result(outcome.status, outcome.reason, outcome.job_id)

    def _log(self, result: PollResult) -> None:
        if result.status == "failed":
            log.warning("poll %s: %s", result.app, result.reason)
        elif result.status in ("enqueued", "duplicate", "noop"):
            log.info(
                "poll %s: %s %s%s",
                result.app,
                result.status,
                result.reason,
                f" (job {result.job_id})" if result.job_id and result.job_id not in result.reason else "",
            )
        else:
            log.debug("poll %s: %s: %s", result.app, result.status, result.reason)

    # -- scheduling ----------------------------------------------------------------------------

    def start(self) -> None:
        """One interval job per app whose `[poll] enabled` is true."""
        scheduler = BackgroundScheduler(timezone=UTC)
        now = datetime.now(UTC)
        for app in self.host.apps.values():
            settings = app.config.poll
            if not settings.enabled:
                log.info("poll %s: disabled ([poll] enabled = false)", app.name)
                continue
            scheduler.add_job(
                self.poll,
                "interval",
                args=[app],
                id=f"poll:{app.name}",
                name=f"poll {app.name}",
                seconds=settings.interval,
                jitter=settings.jitter or None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(settings.interval)),
                next_run_time=now + timedelta(seconds=random.uniform(0, min(settings.jitter, 5.0))),
            )
            log.info(
                "poll %s: every %gs (jitter %gs) under %s, %s",
                app.name,
                settings.interval,
                settings.jitter,
                app.policy.describe(),
                app.ref,
            )
        scheduler.start()
        self.scheduler = scheduler

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for client in self.clients.values():
            client.close()
