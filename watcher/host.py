"""The owners: `Host`, one per process, and `App`, one per configured app.

Every face (the CLI, the GitHub and registry hooks, the control API, the poller, the dashboard)
parses its input, calls an `App` or the `Host`, and renders the answer. What it means to request a
deploy of an app (policy, staleness, the registry's word on the tag and the event's digest, an
operator's rollback, the one-push-one-job claim, the enqueue) is written once, in `App.request`;
the app's queue, pause, promotions and lock are built once, here, with the host's Redis client
and key namespace.

Why one claim key besides the queue's coalescing: the queue coalesces against what waits and what
is live, but once a job has run, a second copy of the same push would queue the same deploy again
(and once a deploy has failed, retry it). `watcher:<app>:trigger:seen:<tag>@<digest>` (SET NX EX,
one hour) makes "one push, one job" hold across events, sources and instances; the queue's rule
still catches the rest. `watcher:<app>:trigger:last` records the last request, which the poller
reads so that a failed deploy is not requested again every interval. What an operator rolled back
from is the engine's record (state.json, `rolled_back`), read here as what is live is: no
trigger requests it again, whoever requested it first, and however long ago.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import redis

from watcher import activity
from watcher.backends.caddy import Front, probe
from watcher.backends.manifests import members
from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError
from watcher.config import AppConfig, HostConfig, Retention
from watcher.engine.reconcile import served
from watcher.engine.state import DeployState, Release, StateStore
from watcher.engine.switch import TrafficSwitch
from watcher.errors import ConfigError
from watcher.freeze import FreezeSchedule, moment
from watcher.memory import LocalMemory, Memory, RedisMemory
from watcher.notify import Notifier, notifier_for
from watcher.policy import TagPolicy, build_policy, older
from watcher.queue.connection import connect, key
from watcher.queue.continuity import Continuity
from watcher.queue.lock import DeployLock, force_unlock, holder_of
from watcher.queue.promotion import Promotions
from watcher.queue.queue import DeployQueue
from watcher.queue.suspension import Suspension

log = logging.getLogger("watcher.triggers")

SEEN_TTL = 3600  # one push, one job: how long the (app, tag, digest) claim lasts
DELIVERY_TTL = 3 * 86400  # GitHub lets a delivery be redelivered for three days
EXISTS_WAIT = 2.0  # a just-pushed tag may take a moment to be readable (GHCR)

#: GitHub waits 10 s for an answer: short timeouts, one quick retry, and a 429 asking for more
#: than 2 s fails the delivery at once (503; the poller catches up) instead of waiting.
QUICK_REGISTRY: dict[str, Any] = {"timeout": 2.5, "max_retries": 1, "backoff": 0.2, "max_retry_after": 2.0}


@dataclass(frozen=True)
class Outcome:
    """What became of one request for one app."""

    app: str | None
    #: enqueued | duplicate | noop | ignored | not-found | unavailable | refused | stale | rolled-back
    status: str
    reason: str
    tag: str | None = None
    digest: str | None = None
    job_id: str | None = None

    @property
    def created(self) -> bool:
        return self.status == "enqueued"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Checks:
    """What `App.request` checks before it enqueues, by who asks."""

    policy: bool  # the app's tag policy accepts the tag (an operator at the CLI may deploy any)
    stale: bool  # not older than what is live or waits (a late event must not supersede)
    registry: bool  # the registry has the tag: its digest is the job's
    claim: bool  # one push, one job, however many events and instances ask
    rollback: bool  # what an operator rolled back from is not requested again (only they may)


CHECKS = {
    "webhook": Checks(policy=True, stale=True, registry=True, claim=True, rollback=True),
    "poll": Checks(policy=False, stale=False, registry=False, claim=True, rollback=True),  # it decided
    "dashboard": Checks(policy=True, stale=False, registry=True, claim=False, rollback=False),
    "cli": Checks(policy=False, stale=False, registry=True, claim=False, rollback=False),
    "rollback": Checks(policy=False, stale=False, registry=False, claim=False, rollback=False),
}
TRIGGERS = ("webhook", "poll")


class App:
    """One configured app: its settings, queue, pause, promotions, lock, live release, policy and
    registry, and the one way to request a deploy of it."""

    def __init__(
        self,
        host: Host,
        config: AppConfig,
        *,
        policy: TagPolicy | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.name = config.name
        self.ref = ImageRef.parse(config.image)
        self.policy = policy or build_policy(config.policy)
        if registry is not None:
            self.registry = registry

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    @cached_property
    def registry(self) -> RegistryClient:
        return RegistryClient(
            username=self.config.registry.username,
            password=self.config.registry.password,
            token_hosts=self.config.registry.token_hosts,
            plain_http=self.config.registry.plain_http,
            on_attempt=activity.registry_request,
            **self.host.registry_options,
        )

    @cached_property
    def freezes(self) -> FreezeSchedule:
        return FreezeSchedule(self.config.freezes)

    @cached_property
    def continuity(self) -> Continuity:
        """What this host keeps of the app's queue, so that a Redis that forgot it is noticed."""
        host = self.host
        told = host.notifier.redis_lost if host.notifier is not None else None
        return Continuity(
            host.client,
            self.name,
            self.config.state.dir,
            prefix=host.prefix,
            on_loss=(lambda loss: told(self.name, loss.describe(self.name))) if told else None,
        )

    @cached_property
    def queue(self) -> DeployQueue:
        host = self.host
        return DeployQueue(
            host.client,
            self.name,
            prefix=host.prefix,
            retention=host.retention,
            freezes=self.freezes,
            continuity=self.continuity,
        )

    @cached_property
    def suspension(self) -> Suspension:
        return Suspension(self.host.client, self.name, self.host.prefix, self.continuity)

    @property
    def promotions(self) -> Promotions:
        return Promotions(self.queue)

    def lock(self, purpose: str) -> DeployLock:
        return DeployLock(
            self.host.client, self.name, ttl=self.host.lock_ttl, purpose=purpose, prefix=self.host.prefix
        )

    def lock_holder(self) -> dict[str, Any] | None:
        return holder_of(self.host.client, self.name, self.host.prefix)

    def force_unlock(self) -> dict[str, Any] | None:
        """Remove the deploy lock whoever holds it; returns who did."""
        return force_unlock(self.host.client, self.name, self.host.prefix)

    # -- what is live and what waits -----------------------------------------------------------

    def recorded(self) -> DeployState:
        """The engine's record on this host (state.json), read as it is."""
        return StateStore(self.config.state.dir, self.config.state.deployment_color_file).load()

    def live(self) -> Release | None:
        """What serves, from the engine's one source (the route file and the state beside it),
        never a copy in Redis; None when nothing (or an unknown version) serves."""
        release = served(self.recorded(), TrafficSwitch(self.config.caddy.route_file).current())
        return None if release is None or release.version == "unknown" else release

    def proxy(self) -> Front:
        """Whether Caddy serves the app (its site takes connections) and its admin API answers."""
        return probe(self.config.caddy.admin, self.config.verify.url)

    def withheld(self, tag: str, digest: str) -> Outcome | None:
        """The refusal of a trigger's request for what an operator rolled back from: a replayed
        event or the next poll must not undo the rollback, a new digest of the tag may."""
        rolled = self.recorded().withheld(tag, digest)
        if rolled is None:
            return None
        reason = (
            f"{tag}@{digest[:19]} was rolled back from at {rolled.at}: no trigger deploys it again "
            f"until its tag names a new digest; an operator can (`watcher deploy {tag}`)"
        )
        return Outcome(self.name, "rolled-back", reason, tag, digest)

    def waiting(self) -> str | None:
        """The version of the newest waiting job, if any."""
        if self.host.offline:
            return None
        jobs = self.queue.waiting()
        return jobs[-1].version if jobs else None

    def stale(self, tag: str) -> str | None:
        """Why requesting `tag` would go backwards: older than live or than what waits."""
        live = self.live()
        if live and older(self.policy, tag, live.version):
            return (
                f"{tag} is older than the live {live.version} under {self.policy.describe()}: not downgrading"
            )
        waiting = self.waiting()
        if waiting and older(self.policy, tag, waiting):
            return f"{tag} is older than {waiting}, which is already queued"
        return None

    def digest_of(self, tag: str, wait: float = 0.0, client: RegistryClient | None = None) -> str:
        """The tag's digest from the app's own registry (never a host a payload names); a tag
        missing now gets `wait` seconds to appear. NotFound, RegistryError. `client`: the
        poller's own, patient one."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return (client or self.registry).manifest_digest(self.ref, tag)
            except NotFound:
                if time.monotonic() + 0.5 > deadline:
                    raise
                time.sleep(0.5)

    # -- asking --------------------------------------------------------------------------------

    def request(
        self,
        version: str,
        *,
        source: str,
        by: str,
        digest: str | None = None,
        repository: str | None = None,
    ) -> Outcome:
        """Request a deploy of `version`, checked as CHECKS says for `source`: every face asks here."""
        checks = CHECKS[source]
        if checks.policy:
            refusal = self.policy.refusal(version)
            if refusal:
                reason = f"{version or 'no version'}: {refusal} ({self.policy.describe()}); nothing queued"
                return Outcome(self.name, "ignored", reason, tag=version)
        if checks.stale:
            stale = self.stale(version)
            if stale:
                return Outcome(self.name, "ignored", stale, tag=version)
        if checks.registry:
            found = self._checked(version, digest, trigger=source in TRIGGERS)
            if isinstance(found, Outcome):
                return found
            digest = found
        if checks.rollback:
            assert digest is not None
            withheld = self.withheld(version, digest)
            if withheld is not None:
                return withheld
        if not checks.claim:
            return self.enqueue(version, source=source, by=by, digest=digest, repository=repository)
        assert digest is not None
        return self.enqueue_once(version, digest, source=source, by=by, repository=repository)

    def _checked(self, tag: str, digest: str | None, *, trigger: bool) -> str | Outcome:
        """The registry's digest of `tag`, or the refusal: a tag the registry lacks is refused
        now, not later in a worker, and so is an event whose digest the tag no longer names (a
        replay, with a new delivery id, of a push since overwritten). The registry is asked with
        the app's client: short timeouts for a webhook (QUICK_REGISTRY), unreachable -> 503."""
        try:
            found = self.digest_of(tag, self.host.exists_wait if trigger else 0.0)
            named = not digest or digest == found or (trigger and digest in self._members(found))
        except NotFound:
            refused = Outcome(
                self.name,
                "not-found",
                f"{self.ref}:{tag} does not exist in the registry: "
                + ("not deployed" if trigger else "nothing queued"),
                tag=tag,
            )
            if trigger:
                self.host.tell_refused(refused)
            return refused
        except RegistryError as exc:
            reason = (
                f"cannot check {self.ref}:{tag} in the registry: {exc}"
                if trigger
                else f"cannot check {self.ref}:{tag} in the registry ({exc}): nothing queued"
            )
            return Outcome(self.name, "unavailable", reason, tag=tag)
        if named:
            return found
        if not trigger:
            reason = f"{self.ref}:{tag} is {found} in the registry, not {digest}: nothing queued"
            return Outcome(self.name, "refused", reason, tag=tag)
        assert digest is not None
        reason = (
            f"stale event: {self.ref}:{tag} is {found[:19]} in the registry now, not the event's "
            f"{digest[:19]} (the tag moved since): nothing queued"
        )
        return Outcome(self.name, "stale", reason, tag=tag, digest=found)

    def _members(self, digest: str) -> frozenset[str]:
        """The platform manifests of the index at `digest`: each names the tag in an event of one
        multi-arch push (GHCR). RegistryError."""
        return members(self.registry.manifest(self.ref, digest))

    def enqueue_once(
        self, tag: str, digest: str, *, source: str, by: str, repository: str | None = None
    ) -> Outcome:
        """Enqueue `tag`@`digest` once, however many events and instances ask."""
        live = self.live()
        if live and live.version == tag and live.digest == digest:
            return Outcome(self.name, "noop", f"{tag} ({digest[:19]}) is already live", tag, digest)
        holder = self.claim_push(tag, digest)
        if holder is not None:
            job = None if holder == "pending" else holder
            return Outcome(
                self.name,
                "duplicate",
                f"{tag}@{digest[:19]} was already requested"
                + (f" (job {job})" if job else " (being enqueued)"),
                tag,
                digest,
                job,
            )
        try:
            done = self.enqueue(tag, source=source, by=by, digest=digest, repository=repository)
        except BaseException:
            self.release_push(tag, digest)
            raise
        assert done.job_id is not None
        self.settle_push(tag, digest, done.job_id)
        self.set_last(tag, digest, done.job_id, source)
        return done

    def enqueue(
        self, version: str, *, source: str, by: str, digest: str | None, repository: str | None = None
    ) -> Outcome:
        """Into the queue, with what is live for its no-op rule (UsageError: a bad request). A
        release left serving unverified is no reason to skip its version: deployed again, it is
        verified on the other colour."""
        live = self.live()
        done = self.queue.enqueue(
            version,
            source=source,
            requested_by=by,
            digest=digest,
            live=None if live is not None and live.unverified else live,
            repository=repository,
        )
        status = "noop" if done.noop else "enqueued"
        return Outcome(self.name, status, done.message, version, digest, done.job.id)

    def act(self, action: str, *, by: str) -> Outcome:
        """Queue a promote or abort of the job awaiting promotion (UsageError: nothing to act on)."""
        asked = self.promotions.ask(action, requested_by=by)
        assert asked.job is not None
        status = "enqueued" if asked.outcome == "queued" else "noop"
        return Outcome(self.name, status, asked.message, asked.job.version, job_id=asked.job.id)

    def pause(self, *, by: str, reason: str = "", until: float | None = None) -> dict[str, Any]:
        """Workers start no new job of the app; told to the notifier."""
        info = self.suspension.pause(by=by, reason=reason, until=until)
        if self.host.notifier is not None:
            ends = f"until {moment(until)}" if until is not None else ""
            self.host.notifier.paused(self.name, info["by"], ": ".join(p for p in (ends, reason) if p))
        return info

    def resume(self, *, by: str) -> dict[str, Any] | None:
        """Lift the pause; the notifier hears of a pause lifted, not of a resume that lifted none."""
        lifted = self.suspension.resume()
        if lifted and self.host.notifier is not None:
            self.host.notifier.resumed(self.name, by)
        return lifted

    def paused(self) -> dict[str, Any] | None:
        return self.suspension.paused()

    # -- the triggers' memory ------------------------------------------------------------------

    def _seen(self, tag: str, digest: str) -> str:
        return key(self.name, "trigger", "seen", f"{tag}@{digest}", prefix=self.host.prefix)

    def claim_push(self, tag: str, digest: str) -> str | None:
        """None when claimed now; else what holds the claim (a job id, or "pending")."""
        name = self._seen(tag, digest)
        if self.host.client.set(name, "pending", nx=True, ex=SEEN_TTL):
            return None
        return self.host.client.get(name) or "pending"

    def settle_push(self, tag: str, digest: str, job_id: str) -> None:
        self.host.client.set(self._seen(tag, digest), job_id, xx=True, keepttl=True)

    def release_push(self, tag: str, digest: str) -> None:
        self.host.client.delete(self._seen(tag, digest))

    def last(self) -> dict[str, Any] | None:
        """The last request a trigger made for the app."""
        if self.host.offline:
            return None
        raw = self.host.client.get(key(self.name, "trigger", "last", prefix=self.host.prefix))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def set_last(self, tag: str, digest: str, job_id: str, source: str) -> None:
        self.host.client.set(
            key(self.name, "trigger", "last", prefix=self.host.prefix),
            json.dumps({"tag": tag, "digest": digest, "job": job_id, "source": source, "at": time.time()}),
        )


class Host:
    """One per process: the Redis client and key namespace, the notifier, and the apps."""

    def __init__(
        self,
        config: HostConfig,
        *,
        client: redis.Redis | None = None,
        registry_options: dict[str, Any] | None = None,
        exists_wait: float = EXISTS_WAIT,
    ) -> None:
        self.config = config
        self.prefix = config.redis.prefix
        self.retention: Retention = config.history
        self.lock_ttl = config.redis.lock_ttl
        self.registry_options = registry_options or {}
        self.exists_wait = exists_wait
        self.offline = False  # a dry run without Redis: nothing waits, nothing was requested
        if client is not None:
            self.client = client
        self.apps: dict[str, App] = {name: App(self, app) for name, app in config.apps.items()}

    @property
    def redis(self) -> bool:
        """Whether Redis is configured (without it, the queue commands are off)."""
        return bool(self.config.redis.url) or "client" in self.__dict__

    @cached_property
    def client(self) -> redis.Redis:
        if not self.config.redis.url:
            raise ConfigError(f"{self.config.source}: the queue needs Redis: set [redis] url or REDIS_URL")
        return connect(self.config.redis.url, self.config.redis.password)

    @cached_property
    def memory(self) -> Memory:
        """What the receiver remembers for minutes (throttle, nonces, sessions): in Redis when it
        is configured, so every process shares it, else in this process."""
        return RedisMemory(self.client) if self.redis else LocalMemory()

    @cached_property
    def notifier(self) -> Notifier | None:
        return notifier_for(app.config for app in self.apps.values())

    def app(self, name: str | None) -> App:
        """One app by name; without a name, the only one (several: the user must say which)."""
        return self.apps[self.config.app(name).name]

    def chosen(self, name: str | None) -> list[App]:
        """`--app NAME`: that app; no name: every app."""
        return [self.app(name)] if name else list(self.apps.values())

    def tell_refused(self, outcome: Outcome) -> Outcome:
        """A refusal an operator must see (a tag newer than live, yet refused; a tag missing)."""
        if self.notifier is not None and outcome.app and outcome.tag:
            self.notifier.refused(outcome.app, outcome.tag, outcome.reason)
        return outcome

    # -- delivery ids seen (the hooks) ---------------------------------------------------------

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

    def close(self) -> None:
        """The registry clients, and the notifier (what is still queued gets a few seconds)."""
        for app in self.apps.values():
            if "registry" in app.__dict__:
                app.registry.close()
        if self.__dict__.get("notifier") is not None:
            self.notifier.close()
