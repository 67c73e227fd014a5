"""The one retry policy: which failures of Redis and of a registry are worth another try, and how
long to wait before it. Every retry in watcher is built here, on tenacity, so that a Redis
failover, a full Redis, a restart or a registry's 503 are ridden out the same way wherever they
strike, and a wrong password is never mistaken for an outage.

Redis: a dropped, refused or reset connection, a timeout, a server still loading its data, a
failover (the server became a replica: READONLY, and UNBLOCKED for a BLPOP it cut short), a
replica cut off from its master (MASTERDOWN) and a full server (OOM under `maxmemory-policy
noeviction`) pass: they are retried with backoff
until the caller's deadline (a lock's lease, a command's bound) or for as long as it takes. A
refused password or ACL permission is not retried: waiting cannot fix it (the client that
`watcher.queue.connection.connect` makes raises RedisRefused for it). Any other error reply, such
as a bug in a Lua script, propagates at once: another try would only repeat it.

Registries: 429 (after its Retry-After, unless that is longer than the caller blocks for), 5xx
and network errors, for a fixed number of attempts.

How long: the wait doubles from `initial` up to `maximum` and is drawn between half and all of
that ("equal jitter"), so retries stay spaced and many processes do not retry in lockstep.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import httpx
import redis
import tenacity
from tenacity import RetryCallState

from watcher.errors import RedisUnavailable

log = logging.getLogger("watcher.redis")

T = TypeVar("T")


class UnblockedError(redis.exceptions.ResponseError):
    """UNBLOCKED: the server cut a blocking command (BLPOP) short because it became a replica.
    redis-py leaves this reply a plain ResponseError; the clients `connect()` makes raise this."""


#: Redis failures that pass. redis-py's ConnectionError covers refused, reset and dropped
#: connections, "max number of clients reached" and BusyLoadingError (the data still loading after
#: a restart); the others are error replies (ResponseError subclasses) that name a passing state,
#: unlike a plain ResponseError (a script's bug, a wrong argument).
REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a failover made this server a replica
    UnblockedError,  # the same, for a command blocked at that moment
    redis.exceptions.MasterDownError,  # a replica lost its master and serves no stale data
    redis.exceptions.OutOfMemoryError,  # maxmemory reached: writes refused until memory is freed
)

#: Refusals no retry can change. AuthenticationError is a ConnectionError in redis-py, so it
#: matches REDIS_DOWN: `redis_transient` and `connect()` take it out.
REDIS_REFUSED: tuple[type[Exception], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)


def redis_transient(exc: BaseException) -> bool:
    """Whether another try of the same Redis call may succeed by itself."""
    return isinstance(exc, REDIS_DOWN) and not isinstance(exc, REDIS_REFUSED)


def reason(exc: BaseException) -> str:
    """The error's kind and the first line of its message, for one-line logs."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- how long -----------------------------------------------------------------------------------


def backoff(failures: int, *, initial: float, maximum: float) -> float:
    """The wait after the `failures`-th failure in a row (1, 2, ...)."""
    ceiling = min(maximum, initial * 2 ** (failures - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


# Waits and stops are named in lower case, like tenacity's own.
class wait_backoff(tenacity.wait.wait_base):
    """`backoff` as a tenacity wait."""

    def __init__(self, *, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        return backoff(retry_state.attempt_number, initial=self.initial, maximum=self.maximum)


def _raising(give_up: Callable[[RetryCallState], BaseException]) -> Callable[[RetryCallState], NoReturn]:
    """A retry_error_callback that raises the caller's error instead of tenacity's RetryError."""

    def callback(retry_state: RetryCallState) -> NoReturn:
        raise give_up(retry_state) from None

    return callback


class stop_at(tenacity.stop.stop_base):
    """Stop once the monotonic clock reaches `deadline()`."""

    def __init__(self, deadline: Callable[[], float]) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self.deadline()


class wait_within(tenacity.wait.wait_base):
    """`pace`, cut short so that the next try comes no later than `deadline()`."""

    def __init__(self, pace: tenacity.wait.wait_base, deadline: Callable[[], float]) -> None:
        self.pace = pace
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> float:
        return max(0.0, min(self.pace(retry_state), self.deadline() - time.monotonic()))


# -- Redis --------------------------------------------------------------------------------------


def log_redis_retry(what: str, exc: BaseException, delay: float, down_for: float) -> None:
    log.warning(
        "redis: %s failed (%s); retrying in %.1fs (down for %.1fs)", what, reason(exc), delay, down_for
    )


def log_redis_back(what: str, down_for: float) -> None:
    log.warning("redis: %s works again after %.1fs", what, down_for)


def retry_redis(
    call: Callable[[], T],
    what: str,
    *,
    deadline: Callable[[], float] | None = None,
    give_up: Callable[[BaseException], BaseException] | None = None,
    initial: float = 0.5,
    maximum: float = 10.0,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """`call()`, retried while Redis fails transiently, logging each retry and the recovery.

    `deadline()` is a time on the monotonic clock, read again after every failure (a lock's lease
    moves when it is renewed): waits are cut short to end by it, and a failure once it has passed
    raises `give_up(last error)` (RedisUnavailable by default). Without a deadline, forever.
    Every other exception propagates at once, so `call()` can also stop the retries by raising.
    """
    pace = wait_backoff(initial=initial, maximum=maximum)
    stop: tenacity.stop.stop_base
    wait: tenacity.wait.wait_base
    if deadline is None:
        stop, wait = tenacity.stop_never, pace
    else:
        stop, wait = stop_at(deadline), wait_within(pace, deadline)

    def before_sleep(retry_state: RetryCallState) -> None:
        assert retry_state.outcome is not None
        log_redis_retry(
            what,
            retry_state.outcome.exception(),
            retry_state.upcoming_sleep,
            time.monotonic() - retry_state.start_time,
        )

    def failed(retry_state: RetryCallState) -> BaseException:
        assert retry_state.outcome is not None
        exc = retry_state.outcome.exception()
        return (
            give_up(exc) if give_up else RedisUnavailable(f"Redis is unavailable for {what}: {reason(exc)}")
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(redis_transient),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_raising(failed),
    )
    result = retrying(call)
    if retrying.statistics["attempt_number"] > 1:
        log_redis_back(what, time.monotonic() - retrying.statistics["start_time"])
    return result


# -- registries (HTTP) --------------------------------------------------------------------------


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait (Retry-After as seconds or HTTP date), None if unsaid."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def http_transient(response: httpx.Response) -> bool:
    """An answer that another try may change: rate limited, or the server failing."""
    return response.status_code == 429 or response.status_code >= 500


def asked_wait(retry_state: RetryCallState) -> float | None:
    """How long the last answer, a 429, asked us to wait; None when it did not say."""
    outcome = retry_state.outcome
    if outcome is None or outcome.failed or outcome.result().status_code != 429:
        return None
    return retry_after(outcome.result())


def problem(retry_state: RetryCallState) -> str:
    """What went wrong with the last attempt, for logs and the final error."""
    outcome = retry_state.outcome
    assert outcome is not None
    if outcome.failed:
        return reason(outcome.exception())
    status = outcome.result().status_code
    return "HTTP 429 Too Many Requests" if status == 429 else f"HTTP {status}"


def http_retrying(
    *,
    attempts: int,
    initial: float,
    maximum: float,
    max_retry_after: float,
    before_sleep: Callable[[RetryCallState], None],
    give_up: Callable[[RetryCallState], BaseException],
    sleep: Callable[[float], object] = time.sleep,
) -> tenacity.Retrying:
    """Retry a request on network errors, 429 and 5xx, `attempts` tries in all.

    A 429 is retried after its Retry-After, else after the backoff; one asking for longer than
    `max_retry_after` ends the retries at once (`give_up` sees it with `asked_wait`), since the
    caller may not block that long.
    """
    pace = wait_backoff(initial=initial, maximum=maximum)

    def wait(retry_state: RetryCallState) -> float:
        asked = asked_wait(retry_state)
        return asked if asked is not None else pace(retry_state)

    def asks_too_long(retry_state: RetryCallState) -> bool:
        asked = asked_wait(retry_state)
        return asked is not None and asked > max_retry_after

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(httpx.TransportError)
        | tenacity.retry_if_result(http_transient),
        wait=wait,
        stop=tenacity.stop_any(tenacity.stop_after_attempt(attempts), asks_too_long),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_raising(give_up),
    )
