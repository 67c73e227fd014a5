"""From "this tag was pushed" (a webhook) or "this tag is the candidate" (the poller) to one job.

Shared by both triggers, so a webhook and a poll racing over the same push make one job:

1. map the pushed image to the configured apps (registry and repository, lowercased);
2. apply the app's tag policy, and refuse a tag older than what is live or already waiting (a
   late event for 1.2.3 must not supersede a queued 1.2.4);
3. ask the app's own registry (never a host the payload names) that the tag exists, and for its
   digest: for a multi-arch push every event resolves to the same index digest;
4. claim `watcher:<app>:trigger:seen:<tag>@<digest>` with SET NX EX (one hour): the first of
   several events or watcher instances to claim it enqueues, the others answer "duplicate";
5. enqueue; record the request as the app's last (`watcher:<app>:trigger:last`), which the poller
   reads so that a failed or rolled-back deploy is not requested again every interval.

Why our own SET NX key and not only the queue's coalescing: the queue coalesces against what
waits and what is live, but once a job has run, a second copy of the same event would queue the
same deploy again (and once a deploy has failed, retry it). The key makes "one push, one job"
hold across events, sources and instances; the queue's rule still catches the rest.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError
from watcher.config import Config
from watcher.metrics import activity
from watcher.notify import Notifier
from watcher.queue.connection import key
from watcher.triggers.payloads import Push
from watcher.triggers.policy import TagPolicy, build_policy, older
from watcher.triggers.sink import Enqueuer

log = logging.getLogger("watcher.triggers")

SEEN_TTL = 3600  # one push, one job: how long the (app, tag, digest) claim lasts
DELIVERY_TTL = 3 * 86400  # GitHub lets a delivery be redelivered for three days
EXISTS_WAIT = 2.0  # a just-pushed tag may take a moment to be readable (GHCR)


@dataclass
class App:
    """One configured app as the triggers see it."""

    config: Config
    ref: ImageRef
    policy: TagPolicy
    registry: RegistryClient  # short timeouts: a webhook must answer within GitHub's 10 s

    @property
    def name(self) -> str:
        return self.config.app

    @classmethod
    def from_config(cls, config: Config, registry: RegistryClient | None = None) -> App:
        # GitHub waits 10 s for an answer: short timeouts, one quick retry, and a 429 asking for
        # more than 2 s fails the delivery at once (503; the poller catches up) instead of waiting.
        registry = registry or RegistryClient(
            username=config.registry_username,
            password=config.registry_password,
            timeout=2.5,
            max_retries=1,
            backoff=0.2,
            max_retry_after=2.0,
            on_attempt=activity.registry_request,
        )
        return cls(config, ImageRef.parse(config.image), build_policy(config.policy), registry)


@dataclass(frozen=True)
class Outcome:
    """What became of one push for one app."""

    app: str | None
    status: str  # enqueued | duplicate | noop | ignored | not-found | unavailable
    reason: str
    tag: str | None = None
    digest: str | None = None
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Memory:
    """The triggers' Redis keys: delivery ids seen, pushes claimed, the last request per app."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix

    def _delivery(self, kind: str, delivery: str) -> str:
        # "_deliveries" cannot be an app name (app names start with a letter or digit).
        return key("_deliveries", kind, delivery, prefix=self.prefix)

    def claim_delivery(self, kind: str, delivery: str) -> bool:
        return bool(
            self.client.set(self._delivery(kind, delivery), str(time.time()), nx=True, ex=DELIVERY_TTL)
        )

    def release_delivery(self, kind: str, delivery: str) -> None:
        """Forget a delivery that failed for a passing reason, so its redelivery is processed."""
        self.client.delete(self._delivery(kind, delivery))

    def _seen(self, app: str, tag: str, digest: str) -> str:
        return key(app, "trigger", "seen", f"{tag}@{digest}", prefix=self.prefix)

    def claim_push(self, app: str, tag: str, digest: str) -> str | None:
        """None when claimed now; else what holds the claim (a job id, or "pending")."""
        name = self._seen(app, tag, digest)
        if self.client.set(name, "pending", nx=True, ex=SEEN_TTL):
            return None
        return self.client.get(name) or "pending"

    def settle_push(self, app: str, tag: str, digest: str, job_id: str) -> None:
        self.client.set(self._seen(app, tag, digest), job_id, xx=True, keepttl=True)

    def release_push(self, app: str, tag: str, digest: str) -> None:
        self.client.delete(self._seen(app, tag, digest))

    def last(self, app: str) -> dict[str, Any] | None:
        raw = self.client.get(key(app, "trigger", "last", prefix=self.prefix))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def set_last(self, app: str, tag: str, digest: str, job_id: str, source: str) -> None:
        self.client.set(
            key(app, "trigger", "last", prefix=self.prefix),
            json.dumps({"tag": tag, "digest": digest, "job": job_id, "source": source, "at": time.time()}),
        )


class Triggers:
    def __init__(
        self,
        apps: list[App],
        sink: Enqueuer,
        memory: Memory,
        *,
        exists_wait: float = EXISTS_WAIT,
        notifier: Notifier | None = None,
    ) -> None:
        self.apps = apps
        self.sink = sink
        self.memory = memory
        self.exists_wait = exists_wait
        self.notifier = notifier  # told of the refusals an operator must see

    def app(self, name: str) -> App | None:
        return next((app for app in self.apps if app.name == name), None)

    def apps_for(self, registry: str, repository: str) -> list[App]:
        return [
            app
            for app in self.apps
            if (app.ref.registry, app.ref.repository) == (registry.lower(), repository.lower())
        ]

    def push(
        self, push: Push, *, source: str, requested_by: str, repository: str | None = None
    ) -> list[Outcome]:
        """A push a webhook reported: one outcome per configured app it concerns. `repository`:
        the GitHub repository the payload named, kept on the job."""
        apps = self.apps_for(push.registry, push.repository)
        if not apps:
            return [Outcome(None, "ignored", f"no configured app deploys {push.image}")]
        return [
            self._push_one(app, push, source=source, requested_by=requested_by, repository=repository)
            for app in apps
        ]

    def _push_one(
        self, app: App, push: Push, *, source: str, requested_by: str, repository: str | None
    ) -> Outcome:
        refusals = {tag: app.policy.refusal(tag) for tag in push.tags}
        accepted = [tag for tag, why in refusals.items() if why is None]
        if not accepted:
            tag, why = next(iter(refusals.items()))
            refused = Outcome(app.name, "ignored", f"tag {tag}: {why} ({app.policy.describe()})", tag=tag)
            live = self.sink.live(app.name)
            if live and older(app.policy, live.version, tag):  # newer than live, yet refused: say so
                self._tell_refused(refused)
            return refused
        # Several tags in one event (the legacy registry): the highest the policy accepts.
        tag = accepted[0] if len(accepted) == 1 else max(accepted, key=lambda t: (app.policy.order(t), t))
        stale = self.stale(app, tag)
        if stale:
            return Outcome(app.name, "ignored", stale, tag=tag)
        try:
            digest = self._resolve(app, tag)
        except NotFound:
            return self._tell_refused(
                Outcome(
                    app.name,
                    "not-found",
                    f"{app.ref}:{tag} does not exist in the registry: not deployed",
                    tag=tag,
                )
            )
        except RegistryError as exc:
            return Outcome(
                app.name, "unavailable", f"cannot check {app.ref}:{tag} in the registry: {exc}", tag=tag
            )
        if push.digest and push.digest != digest:
            log.debug(
                "%s: %s:%s resolves to %s; the event named %s (a platform manifest of a multi-arch push?)",
                app.name,
                app.ref,
                tag,
                digest,
                push.digest,
            )
        return self.request(app, tag, digest, source=source, requested_by=requested_by, repository=repository)

    def _tell_refused(self, outcome: Outcome) -> Outcome:
        if self.notifier is not None and outcome.app and outcome.tag:
            self.notifier.refused(outcome.app, outcome.tag, outcome.reason)
        return outcome

    def stale(self, app: App, tag: str) -> str | None:
        """Why requesting `tag` would go backwards: older than live or than what waits."""
        live = self.sink.live(app.name)
        if live and older(app.policy, tag, live.version):
            return (
                f"{tag} is older than the live {live.version} under {app.policy.describe()}: not downgrading"
            )
        waiting = self.sink.waiting(app.name)
        if waiting and older(app.policy, tag, waiting):
            return f"{tag} is older than {waiting}, which is already queued"
        return None

    def _resolve(self, app: App, tag: str) -> str:
        """The tag's digest from the app's registry; a missing tag gets a short grace period."""
        deadline = time.monotonic() + self.exists_wait
        while True:
            try:
                return app.registry.manifest_digest(app.ref, tag)
            except NotFound:
                if time.monotonic() + 0.5 > deadline:
                    raise
                time.sleep(0.5)

    def request(
        self,
        app: App,
        tag: str,
        digest: str,
        *,
        source: str,
        requested_by: str,
        repository: str | None = None,
    ) -> Outcome:
        """Enqueue `tag`@`digest` for `app` once, however many events and instances ask."""
        live = self.sink.live(app.name)
        if live and live.version == tag and live.digest == digest:
            return Outcome(app.name, "noop", f"{tag} ({digest[:19]}) is already live", tag, digest)
        holder = self.memory.claim_push(app.name, tag, digest)
        if holder is not None:
            job = None if holder == "pending" else holder
            return Outcome(
                app.name,
                "duplicate",
                f"{tag}@{digest[:19]} was already requested"
                + (f" (job {job})" if job else " (being enqueued)"),
                tag,
                digest,
                job,
            )
        try:
            done = self.sink.enqueue(
                app.name, tag, source=source, requested_by=requested_by, digest=digest, repository=repository
            )
        except BaseException:
            self.memory.release_push(app.name, tag, digest)
            raise
        self.memory.settle_push(app.name, tag, digest, done.job_id)
        self.memory.set_last(app.name, tag, digest, done.job_id, source)
        status = "enqueued" if done.created else "noop"
        return Outcome(app.name, status, done.reason, tag, digest, done.job_id)
