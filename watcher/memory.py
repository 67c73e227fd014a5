"""What the receiver must remember for minutes and every process of it must share: failed
authentications per client address, the nonces of signed requests, the dashboard's sessions.

In Redis when it is configured (every `watcher serve` / `run` of the installation sees the same),
else in this process (a single process; lost at restart). While Redis is unreachable, in this
process too, so what answers without Redis still does (`/metrics` saying `watcher_redis_up 0`,
`/healthz`) and failures are still counted; a dashboard session begun before the outage is not
known then (log in again). Each entry expires by itself; no value is a secret (a nonce is public
once used, a session id is only the record's name).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis

from watcher.queue.connection import REDIS_DOWN, key

log = logging.getLogger("watcher.webhook")
T = TypeVar("T")

#: Adds ARGV[1] (0: only reads) to the counter KEYS[1], which expires ARGV[2] ms after its first
#: addition (a fixed window); answers the count and the ms left. INCR and PEXPIRE in one atomic
#: call, so a crash between them cannot leave a counter that never expires.
_TALLY = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > 0 then
  n = redis.call('INCRBY', KEYS[1], ARGV[1])
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
return {n, math.max(redis.call('PTTL', KEYS[1]), 0)}
"""


class Memory(Protocol):
    def claim(self, name: str, ttl: int, value: str = "1") -> bool:
        """Set `name` for `ttl` seconds unless it is set: whether this call set it."""

    def exists(self, name: str) -> bool: ...

    def forget(self, name: str) -> None: ...

    def forget_all(self, start: str) -> int:
        """Forget every name that begins with `start`; how many there were."""

    def tally(self, name: str, add: int, window: int) -> tuple[int, float]:
        """Add `add` to the counter `name` (0: read it), which lives `window` seconds from its
        first addition: the count and the seconds it has left."""


class AuthKeys:
    """The names the receiver's memory uses, built once from the installation's prefix
    ("_auth" cannot be an app name: those start with a letter or digit)."""

    def __init__(self, prefix: str = "") -> None:
        self.failed = key("_auth", "failed", "", prefix=prefix)  # + client address
        self.nonce = key("_auth", "nonce", "", prefix=prefix)  # + a signed request's nonce
        self.session = key("_auth", "session", "", prefix=prefix)  # + a dashboard session id


class RedisMemory:
    """In Redis; while it is unreachable, in `fallback` (see the module's docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.script = client.register_script(_TALLY)  # by SHA; reloaded by redis-py on NOSCRIPT
        self.fallback = LocalMemory()

    def _or_local(self, in_redis: Callable[[], T], in_process: Callable[[LocalMemory], T]) -> T:
        try:
            return in_redis()
        except REDIS_DOWN as exc:
            log.warning("Redis is unreachable (%s): remembering in this process", str(exc).splitlines()[0])
            return in_process(self.fallback)

    def claim(self, name: str, ttl: int, value: str = "1") -> bool:
        return self._or_local(
            lambda: bool(self.client.set(name, value, nx=True, ex=ttl)), lambda m: m.claim(name, ttl, value)
        )

    def exists(self, name: str) -> bool:
        return self._or_local(lambda: bool(self.client.exists(name)), lambda m: m.exists(name))

    def forget(self, name: str) -> None:
        self._or_local(lambda: self.client.delete(name), lambda m: m.forget(name))

    def forget_all(self, start: str) -> int:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", start) + "*"  # the prefix's own glob characters escaped

        def in_redis() -> int:
            names = list(self.client.scan_iter(match=pattern, count=500))
            return int(self.client.delete(*names)) if names else 0

        return self._or_local(in_redis, lambda m: m.forget_all(start))

    def tally(self, name: str, add: int, window: int) -> tuple[int, float]:
        def in_redis() -> tuple[int, float]:
            count, left_ms = self.script(keys=[name], args=[add, window * 1000])
            return int(count), int(left_ms) / 1000

        return self._or_local(in_redis, lambda m: m.tally(name, add, window))


class LocalMemory:
    """The same, in this process: a dict of values and their deadlines (time.monotonic), swept of
    expired entries whenever it grows past SWEEP_AT."""

    SWEEP_AT = 4096

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()

    def _live(self, name: str) -> str | None:
        value, deadline = self.entries.get(name, ("", 0.0))
        return value if deadline > time.monotonic() else None

    def _put(self, name: str, value: str, deadline: float) -> None:
        if len(self.entries) >= self.SWEEP_AT:
            now = time.monotonic()
            self.entries = {n: e for n, e in self.entries.items() if e[1] > now}
        self.entries[name] = (value, deadline)

    def claim(self, name: str, ttl: int, value: str = "1") -> bool:
        with self.lock:
            if self._live(name) is not None:
                return False
            self._put(name, value, time.monotonic() + ttl)
            return True

    def exists(self, name: str) -> bool:
        with self.lock:
            return self._live(name) is not None

    def forget(self, name: str) -> None:
        with self.lock:
            self.entries.pop(name, None)

    def forget_all(self, start: str) -> int:
        with self.lock:
            names = [n for n in self.entries if n.startswith(start) and self._live(n) is not None]
            for name in names:
                del self.entries[name]
            return len(names)

    def tally(self, name: str, add: int, window: int) -> tuple[int, float]:
        with self.lock:
            now = time.monotonic()
            value = self._live(name)
            count, deadline = (int(value), self.entries[name][1]) if value is not None else (0, now + window)
            if add:
                count += add
                self._put(name, str(count), deadline)
            return count, max(deadline - now, 0.0) if count else 0.0
