"""The Redis connection: from `redis.url` / REDIS_URL (redis://, rediss:// for TLS, unix://) with
REDIS_PASSWORD or REDIS_PASSWORD_FILE when the URL carries none, key names, and the retry
helpers every caller uses so that losing Redis reads the same in every log. Which failures are
retried and how long to wait is decided in one place, watcher/retry.py.

Why our own backoff rather than redis-py's: an operator watching a worker during a Redis
restart must see one clear line when Redis goes, one per retry, and one when it is back; and
callers holding the deploy lock must bound their retries by the lock's lease, which only they
know.

A wrong password is no outage: redis-py raises AuthenticationError, a ConnectionError, which
every `except REDIS_DOWN` would retry for ever as "unreachable". The clients `connect()` makes
raise RedisRefused instead, at once, naming the setting to fix (and UnblockedError for a failover's
UNBLOCKED, which redis-py leaves untyped).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.retry import Retry

from watcher.errors import ConfigError, RedisUnavailable
from watcher.retry import (
    REDIS_DOWN,
    REDIS_REFUSED,
    UnblockedError,
    backoff,
    log_redis_back,
    log_redis_retry,
    retry_redis,
)

__all__ = [
    "REDIS_DOWN",
    "AppKeys",
    "Backoff",
    "RedisRefused",
    "connect",
    "describe",
    "key",
    "masked",
    "retrying",
]

T = TypeVar("T")


class RedisRefused(RedisUnavailable, ConfigError):
    """Redis refused the credentials, or by its ACL a command: the configuration must change
    (exit 2). A RedisUnavailable too, so whatever reports Redis trouble reports this as well."""


def key(app: str, *parts: str, prefix: str = "") -> str:
    """Every key watcher writes is `watcher:<app>:...`, so apps can share one Redis; with the
    installation's `[redis] prefix`, `<prefix>:watcher:<app>:...`, so installations can too."""
    return ":".join((*([prefix] if prefix else []), "watcher", app, *parts))


class AppKeys:
    """One app's keys of the queue and the lock, built once (scripts/queue.lua says what each holds)."""

    def __init__(self, app: str, prefix: str = "") -> None:
        def named(name: str) -> str:
            return key(app, name, prefix=prefix)

        self.waiting = named("waiting")
        self.running = named("running")
        self.seq = named("seq")
        self.history = named("history")
        self.wake = named("wake")
        self.last = named("last")
        self.paused = named("paused")
        self.awaiting = named("awaiting")
        self.lock = named("lock")
        self.fence = named("fence")
        self.epoch = named("epoch")
        self.jobs = key(app, "job", "", prefix=prefix)  # a job's key is this and its id

    def job(self, job_id: str) -> str:
        return self.jobs + job_id


def masked(url: str) -> str:
    """The URL with any password replaced, fit for logs and error messages."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def connect(url: str, password: str | None = None) -> redis.Redis:
    """A client that fails fast (one quick reconnect, then our backoff takes over), and at once,
    with RedisRefused, when Redis refuses the password or a command (see _Classified).

    `health_check_interval` pings a pooled connection idle for 10 s before using it, so the
    first command after a Redis restart does not fail on a dead socket.
    """
    try:
        base = parse_url(url).get("connection_class", Connection)
        checked = type(f"Classified{base.__name__}", (_Classified, base), {"url": masked(url)})
        return redis.Redis.from_url(
            url,
            password=password,
            decode_responses=True,
            socket_connect_timeout=3,
            socket_timeout=10,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 1),
            connection_class=checked,
        )
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL {masked(url)}: {exc}") from None


class _Classified(AbstractConnection):
    """Mixed into the connection class of each client, to type two replies as watcher/retry.py
    needs them: a refusal (REDIS_REFUSED) becomes RedisRefused, which neither redis-py's retry
    nor ours catches (the connection is closed first, as redis-py does after an error, so a
    half-authenticated socket is never reused); UNBLOCKED becomes UnblockedError."""

    url = ""  # masked, set per client by connect()

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().connect_check_health(*args, **kwargs)
        except REDIS_REFUSED as exc:
            self.disconnect()
            raise self._refused(exc) from None

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        # AuthenticationWrongNumberOfArgsError is left to connect_check_health: redis-py's
        # handshake answers it by retrying AUTH with the password alone (a Redis before 6).
        try:
            return super().read_response(*args, **kwargs)
        except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            self.disconnect()
            raise self._refused(exc) from None
        except redis.exceptions.ResponseError as exc:
            if type(exc) is redis.exceptions.ResponseError and str(exc).startswith("UNBLOCKED "):
                raise UnblockedError(str(exc)) from None
            raise

    def _refused(self, exc: Exception) -> RedisRefused:
        said = f"(Redis said: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        if isinstance(exc, redis.exceptions.NoPermissionError):
            return RedisRefused(
                f"Redis at {self.url} denied a command to the user of [redis] url / REDIS_URL: "
                f"allow it watcher's commands and its watcher:* keys in the ACL {said}"
            )
        if not (self.password or self.credential_provider):
            return RedisRefused(
                f"Redis at {self.url} requires a password: set REDIS_PASSWORD or "
                f"REDIS_PASSWORD_FILE, or put it in [redis] url / REDIS_URL {said}"
            )
        return RedisRefused(
            f"Redis at {self.url} refused the password: check REDIS_PASSWORD / "
            f"REDIS_PASSWORD_FILE or the password in [redis] url / REDIS_URL {said}"
        )


def describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if issubclass(client.connection_pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"


class Backoff:
    """The same waits and log lines as `retrying`, for a loop that is not one call (the worker's)."""

    def __init__(self, what: str, *, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.what = what
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self.down_since: float | None = None

    def failed(self, exc: BaseException) -> float:
        """Log the failure; return how long to sleep before the next try."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        self.failures += 1
        delay = backoff(self.failures, initial=self.initial, maximum=self.maximum)
        log_redis_retry(self.what, exc, delay, now - self.down_since)
        return delay

    def succeeded(self) -> None:
        if self.down_since is not None:
            log_redis_back(self.what, time.monotonic() - self.down_since)
        self.failures = 0
        self.down_since = None


def retrying(call: Callable[[], T], what: str, *, give_up_after: float | None = None) -> T:
    """`call()` until Redis answers; RedisUnavailable once `give_up_after` seconds have passed."""
    if give_up_after is None:
        return retry_redis(call, what)
    deadline = time.monotonic() + give_up_after
    return retry_redis(call, what, deadline=lambda: deadline)
