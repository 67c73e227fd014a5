"""The Redis connection: from `redis.url` / REDIS_URL (redis://, rediss:// for TLS, unix://) with
REDIS_PASSWORD or REDIS_PASSWORD_FILE when the URL carries none, key names, and the retry
helpers every caller uses so that losing Redis reads the same in every log.

Why our own backoff rather than redis-py's: an operator watching a worker during a Redis
restart must see one clear line when Redis goes, one per retry, and one when it is back; and
callers holding the deploy lock must bound their retries by the lock's lease, which only they
know.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from watcher.errors import RedisUnavailable

log = logging.getLogger("watcher.redis")

#: What "Redis is unreachable" looks like from redis-py (BusyLoadingError, the AOF replay after
#: a restart, is a ConnectionError too).
REDIS_DOWN: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

T = TypeVar("T")


def key(app: str, *parts: str) -> str:
    """Every key watcher writes is `watcher:<app>:...`, so apps can share one Redis."""
    return ":".join(("watcher", app, *parts))


def masked(url: str) -> str:
    """The URL with any password replaced, fit for logs and error messages."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def connect(url: str, password: str | None = None) -> redis.Redis:
    """A client that fails fast (one quick reconnect, then our backoff takes over).

    `health_check_interval` pings a pooled connection idle for 10 s before using it, so the
    first command after a Redis restart does not fail on a dead socket.
    """
    try:
        return redis.Redis.from_url(url, password=password, decode_responses=True, socket_connect_timeout=3,
                                    socket_timeout=10, health_check_interval=10, retry=Retry(NoBackoff(), 1))
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL {masked(url)}: {exc}") from None


def describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if client.connection_pool.connection_class.__name__ == "SSLConnection" else "redis"
    return f"{scheme}://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"


class Backoff:
    """Exponential backoff with jitter, logging each failure and the recovery."""

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
        delay = min(self.maximum, self.initial * 2 ** self.failures) * random.uniform(0.8, 1.2)
        self.failures += 1
        log.warning("redis: %s failed (%s); retrying in %.1fs (unreachable for %.1fs)",
                    self.what, _reason(exc), delay, now - self.down_since)
        return delay

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("redis: %s works again after %.1fs", self.what, time.monotonic() - self.down_since)
        self.failures = 0
        self.down_since = None


def retrying(call: Callable[[], T], what: str, *, give_up_after: float | None = None) -> T:
    """`call()` until Redis answers; RedisUnavailable once `give_up_after` seconds have passed."""
    backoff = Backoff(what)
    started = time.monotonic()
    while True:
        try:
            result = call()
        except REDIS_DOWN as exc:
            delay = backoff.failed(exc)
            if give_up_after is not None and time.monotonic() + delay - started > give_up_after:
                raise RedisUnavailable(f"cannot reach Redis for {what}: {_reason(exc)}") from None
            time.sleep(delay)
            continue
        backoff.succeeded()
        return result


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
