"""The deploy lock in Redis: one colour swap at a time for one app, across every worker, every
`watcher deploy|rollback|cleanup|reset` and every host that shares the Redis.

Scope: one lock per app (`watcher:<app>:lock`, app = `app.name`), covering the whole
deployment: every service, both colours, the pre-deploy hook, cleanup and reset. Different
apps in the same Redis do not wait for each other.

Mechanism (each step an operation of scripts/lock.lua):
- grant: `SET key <holder> NX PX ttl`, where the holder (JSON) carries a random token, host,
  pid, purpose, job and since; in the same atomic call a counter (`watcher:<app>:fence`) is
  INCRed, so each grant gets a **fencing token** larger than every earlier one;
- renewal: a daemon thread (not thread-local: the engine runs in the main thread) extends the
  key every ttl/3 if it still holds our token and fence; a renewal that finds the key gone or
  someone else's marks the lock lost;
- `check()` (the engine's Guard, called right before the switch and before every state write)
  asks Redis, in one call, whether the key still holds our token *and* the fence counter
  is still ours; anything else raises GuardLost, and the engine aborts touching nothing.

Redis unreachable during `check()` (or failing over, or full: whatever watcher/retry.py calls
transient): we cannot prove ownership, so we never switch on faith. But a blip should not abort
a healthy deploy, so `check()` retries with backoff for as long as our **lease** lasts: the
time of the last renewal we sent plus ttl minus a margin, measured on this process's monotonic
clock. Until then nobody else can have been granted the lock; after it, GuardLost. A process
that was paused (SIGSTOP, a frozen VM) past its lease fails `check()` at once, before even
asking Redis. Any other answer (a refused password, an error reply) proves nothing either:
GuardLost too, so the engine aborts touching nothing. After the switch the same rule applies to
the state write: the new version then keeps serving, unrecorded, and the next holder reconciles
it. The renewal thread rides out the same failures for as long as the lock is held; one that
no retry can fix marks the lock lost.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis

from watcher.engine.state import now_iso
from watcher.errors import GuardLost, LockBusy, RedisUnavailable
from watcher.queue.connection import REDIS_DOWN, AppKeys, RedisRefused
from watcher.queue.scripts import script
from watcher.retry import reason, retry_redis

log = logging.getLogger("watcher.lock")


class DeployLock:
    """A fenced, self-renewing Redis lock; also the engine's Guard."""

    def __init__(
        self,
        client: redis.Redis,
        app: str,
        *,
        ttl: float,
        purpose: str,
        job: str | None = None,
        prefix: str = "",
    ) -> None:
        self.client = client
        self.app = app
        self.ttl = ttl
        self.purpose = purpose
        self.job = job
        self.token = secrets.token_hex(16)
        self.fence: int | None = None
        self.keys = AppKeys(app, prefix)
        # The lease ends before the key can expire in Redis: renewal round trips and clock-rate
        # differences come off the margin.
        self._lease = ttl - max(0.1 * ttl, 0.2)
        self._lease_until = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- taking and giving back -------------------------------------------------------------

    def try_acquire(self) -> bool:
        """One attempt; True when granted (the renewal thread then runs until release)."""
        holder = {
            "token": self.token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "purpose": self.purpose,
            "job": self.job,
            "since": now_iso(),
        }
        sent = time.monotonic()
        fence = self._script("grant", json.dumps(holder), int(self.ttl * 1000))
        if not fence:
            return False
        self.fence = int(fence)
        self._lease_until = sent + self._lease
        self._lost = None
        self._stop.clear()
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"lock-renew-{self.fence}", daemon=True
        )
        self._renewer.start()
        return True

    def acquire(self, wait: float = 0.0) -> DeployLock:
        """Take the lock, waiting up to `wait` seconds; LockBusy names the holder.

        An unreachable Redis is retried for at least a few seconds before RedisUnavailable.
        """
        deadline = time.monotonic() + wait
        redis_deadline = time.monotonic() + max(wait, 5.0)

        def attempt() -> bool:
            if self.try_acquire():
                return True
            if time.monotonic() >= deadline:
                raise LockBusy(
                    f"{describe_holder(_holder(self.client, self.keys.lock))} holds the deploy lock "
                    f"(Redis key {self.keys.lock}); wait for it to finish or use --wait-lock SECONDS"
                )
            return False

        while not retry_redis(
            attempt,
            "taking the deploy lock",
            deadline=lambda: redis_deadline,
            give_up=lambda exc: RedisUnavailable(
                f"cannot take the deploy lock: Redis is unavailable ({reason(exc)})"
            ),
        ):
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return self

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours (a lost lock is left alone)."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        if self.fence is None:
            return
        try:
            self._script("release", self.token, str(self.fence))
        except REDIS_DOWN as exc:
            log.warning(
                "redis: could not release the deploy lock (%s); it expires by itself within %.0fs",
                exc,
                self.ttl,
            )
        self.fence = None

    def note_job(self, job: str, purpose: str) -> None:
        """Record in the holder which job runs, for `status` and LockBusy messages: for humans,
        so Redis failing here does not stop the job (the guard decides about the switch)."""
        self.job, self.purpose = job, purpose
        try:
            self._script("note", self.token, str(self.fence), job, purpose)
        except REDIS_DOWN as exc:
            log.warning("redis: could not note job %s in the deploy lock (%s); carrying on", job, reason(exc))

    def _script(self, op: str, *args: object) -> Any:
        return _run(self.client, self.keys, op, *args)

    def __enter__(self) -> DeployLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- the guard -----------------------------------------------------------------------------

    def check(self) -> None:
        """Prove, in Redis, that this grant still holds the lock; else GuardLost, the only error
        it raises (the engine's abort path counts on that)."""
        if self.fence is None:
            raise GuardLost("the deploy lock is not held")
        if self._lost:
            raise GuardLost(self._lost)

        def attempt() -> object:
            if self._lease_until <= time.monotonic():
                raise self._lease_over()
            return self._script("check", self.token, str(self.fence))

        try:
            held = retry_redis(
                attempt,
                f"checking the deploy lock (fence {self.fence})",
                deadline=lambda: self._lease_until,
                give_up=lambda exc: self._lease_over(),
                initial=0.2,
                maximum=2.0,
            )
        except (redis.exceptions.RedisError, RedisRefused) as exc:
            raise GuardLost(f"the deploy lock (fence {self.fence}) cannot be proved: {reason(exc)}") from None
        if not held:
            self._lost = self._lost_reason()
            raise GuardLost(self._lost)

    def _lease_over(self) -> GuardLost:
        return GuardLost(
            f"the deploy lock (fence {self.fence}) could not be renewed within its "
            f"{self.ttl:g}s lease (this process was paused or Redis was unreachable); "
            "it may belong to someone else now"
        )

    def _lost_reason(self) -> str:
        try:
            now = _holder(self.client, self.keys.lock)
        except (*REDIS_DOWN, RedisRefused):
            now = None
        return (
            f"the deploy lock (fence {self.fence}) was lost; "
            f"{describe_holder(now) + ' holds it now' if now else 'it is free now'}"
        )

    def _renew_loop(self) -> None:
        """Every ttl/3, extend the key; transient failures are retried until the lock is released
        (a renewal that lands before the key expires revives the lease). Anything else ends it."""
        every = self.ttl / 3
        what = f"renewing the deploy lock (fence {self.fence})"
        while not self._stop.wait(every):
            try:
                renewed = retry_redis(self._renew, what, initial=0.2, maximum=every, sleep=self._stop.wait)
            except _Released:
                return
            except Exception as exc:  # a refused password, a script error: no retry will renew it
                self._lost = f"the deploy lock (fence {self.fence}) could not be renewed: {reason(exc)}"
                log.error("lock: %s; this process will not switch traffic or record anything", self._lost)
                return
            if not renewed:
                self._lost = self._lost_reason()
                log.error("lock: %s; this process will not switch traffic or record anything", self._lost)
                return

    def _renew(self) -> bool:
        """One renewal; the lease runs from when it was sent. _Released once release() began."""
        if self._stop.is_set():
            raise _Released
        sent = time.monotonic()
        renewed = bool(self._script("renew", self.token, str(self.fence), int(self.ttl * 1000)))
        if renewed:
            self._lease_until = sent + self._lease
        return renewed


class _Released(Exception):
    """Ends the renewal retries: the lock is being released."""


def holder_of(client: redis.Redis, app: str, prefix: str = "") -> dict[str, Any] | None:
    """Who holds the app's lock (token left out), with `expires_in` seconds; None when free."""
    return _holder(client, AppKeys(app, prefix).lock)


def force_unlock(client: redis.Redis, app: str, prefix: str = "") -> dict[str, Any] | None:
    """Delete the lock whoever holds it; returns who held it. The holder, if alive, fails its
    next check and aborts without switching, but finishes the step it is in."""
    return _public(_run(client, AppKeys(app, prefix), "force"), None)


def _holder(client: redis.Redis, lock: str) -> dict[str, Any] | None:
    with client.pipeline(transaction=True) as pipe:
        raw, ttl_ms = pipe.get(lock).pttl(lock).execute()
    return _public(raw, ttl_ms)


def _run(client: redis.Redis, keys: AppKeys, op: str, *args: object) -> Any:
    """Operation `op` of lock.lua."""
    return script(client, "lock")(keys=(keys.lock, keys.fence, keys.waiting, keys.wake), args=(op, *args))


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "nobody"
    return (
        f"{holder.get('purpose') or 'a command'} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"fence {holder.get('fence', '?')}, since {holder.get('since', '?')})"
    )


def _public(raw: str | None, ttl_ms: int | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        return {"purpose": "unreadable lock value", "raw": raw[:200]}
    holder.pop("token", None)
    if holder.get("fence") is not None:
        holder["fence"] = int(holder["fence"])
    if ttl_ms is not None and ttl_ms >= 0:
        holder["expires_in"] = round(ttl_ms / 1000, 1)
    return holder
