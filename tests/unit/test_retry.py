"""The retry policy (watcher/retry.py) as pure logic: which Redis errors pass and which do not,
how long the waits are, and how `retry_redis` bounds, logs and ends its retries. Against real
Redis servers failing in these ways: tests/integration/test_redis_faults.py."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis import exceptions as rx

from watcher.errors import RedisUnavailable
from watcher.queue.connection import REDIS_DOWN, Backoff, retrying
from watcher.retry import UnblockedError, backoff, redis_transient, retry_redis

TRANSIENT = [
    rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    rx.ConnectionError("Connection reset by peer"),
    rx.TimeoutError("Timeout reading from 127.0.0.1:6379"),
    rx.BusyLoadingError("Redis is loading the dataset in memory"),
    rx.MaxConnectionsError("Too many connections"),
    rx.ReadOnlyError("You can't write against a read only replica."),
    rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    rx.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    UnblockedError("UNBLOCKED force unblock from blocking operation, instance state changed"),
]

FATAL = [
    rx.AuthenticationError("invalid username-password pair or user is disabled."),
    rx.AuthenticationWrongNumberOfArgsError("wrong number of arguments for 'auth' command"),
    rx.NoPermissionError("this user has no permissions to run the 'eval' command"),
    rx.ResponseError(
        "Error running script (call to f_0123): @user_script:1: Script attempted to access a non local key"
    ),
    rx.ResponseError("UNBLOCKED but not typed: only connect()'s clients type it"),
    rx.NoScriptError("No matching script."),
    rx.DataError("Invalid input of type: 'dict'."),
    ValueError("not a Redis error at all"),
]


def test_redis_py_files_failover_and_oom_under_response_error_and_a_wrong_password_under_connection_error() -> (
    None
):
    """Why the policy classifies by name: a blanket `except ResponseError` would retry a script's
    bug for ever, and `except ConnectionError` alone would retry a wrong password for ever."""
    assert issubclass(rx.ReadOnlyError, rx.ResponseError) and issubclass(
        rx.OutOfMemoryError, rx.ResponseError
    )
    assert issubclass(rx.AuthenticationError, rx.ConnectionError)
    assert issubclass(rx.BusyLoadingError, rx.ConnectionError)


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda exc: type(exc).__name__)
def test_passing_redis_failures_are_transient_and_caught_by_redis_down(exc: Exception) -> None:
    assert redis_transient(exc)
    assert isinstance(exc, REDIS_DOWN)


@pytest.mark.parametrize("exc", FATAL, ids=lambda exc: f"{type(exc).__name__}: {exc}"[:40])
def test_refusals_and_other_errors_are_not_transient(exc: Exception) -> None:
    assert not redis_transient(exc)


def test_backoff_doubles_up_to_its_maximum_with_equal_jitter() -> None:
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (30, 10.0)]:
        waits = [backoff(failures, initial=0.5, maximum=10.0) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10, "jittered"


class Flaky:
    """Raises the given errors in turn, then returns 'ok'; counts the calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retry_redis_rides_out_a_failover_and_logs_each_retry_and_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps: list[float] = []
    call = Flaky(
        rx.ReadOnlyError("You can't write against a read only replica."),
        rx.OutOfMemoryError("command not allowed"),
        rx.ConnectionError("Connection reset by peer"),
    )
    with caplog.at_level(logging.WARNING, logger="watcher.redis"):
        assert retry_redis(call, "recording job 7", initial=0.2, maximum=2.0, sleep=sleeps.append) == "ok"
    assert call.calls == 4 and len(sleeps) == 3
    assert [0.1 <= sleeps[0] <= 0.2, 0.2 <= sleeps[1] <= 0.4, 0.4 <= sleeps[2] <= 0.8] == [True] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert messages[0].startswith("redis: recording job 7 failed (ReadOnlyError: You can't write against")
    assert all("retrying in" in m for m in messages[:3])
    assert messages[3].startswith("redis: recording job 7 works again after")


def test_retry_redis_is_silent_when_the_first_try_works(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="watcher.redis"):
        assert retry_redis(Flaky(), "reading the queue") == "ok"
    assert caplog.records == []


@pytest.mark.parametrize("exc", FATAL, ids=lambda exc: f"{type(exc).__name__}: {exc}"[:40])
def test_retry_redis_never_retries_what_is_not_transient(exc: Exception) -> None:
    sleeps: list[float] = []
    call = Flaky(exc)
    with pytest.raises(type(exc)) as raised:
        retry_redis(call, "x", sleep=sleeps.append)
    assert raised.value is exc and call.calls == 1 and sleeps == []


def test_retry_redis_gives_up_at_its_deadline_with_the_callers_error() -> None:
    started = time.monotonic()
    deadline = started + 0.3
    down = Flaky(*[rx.ReadOnlyError("read only")] * 10)
    with pytest.raises(LookupError, match="gave up after ReadOnlyError"):
        retry_redis(
            down,
            "x",
            deadline=lambda: deadline,
            initial=2.0,
            maximum=2.0,
            give_up=lambda exc: LookupError(f"gave up after {type(exc).__name__}"),
        )
    took = time.monotonic() - started
    assert 0.3 <= took < 0.9, "the 1-2 s wait is cut short to end at the deadline"
    assert down.calls == 2, "one last try at the deadline"


def test_retry_redis_reads_a_moving_deadline_again_after_each_failure() -> None:
    """A lease moves when the renewal thread extends it: the retries follow it."""
    lease = [time.monotonic() + 0.2]
    extended = []

    def call() -> str:
        if not extended:
            extended.append(True)
            lease[0] += 0.6
        if time.monotonic() < lease[0] - 0.3:
            raise rx.ConnectionError("refused")
        return "ok"

    assert retry_redis(call, "x", deadline=lambda: lease[0], initial=0.05, maximum=0.1) == "ok"


def test_retrying_bounds_by_seconds_and_raises_redis_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(
        RedisUnavailable,
        match=r"Redis is unavailable for requeueing job 3: OutOfMemoryError: "
        r"command not allowed",
    ):
        retrying(
            Flaky(*[rx.OutOfMemoryError("command not allowed")] * 1000), "requeueing job 3", give_up_after=0.4
        )
    assert time.monotonic() - started < 1.5


def test_a_call_can_stop_the_retries_by_raising() -> None:
    class Stop(Exception):
        pass

    call = Flaky(rx.ConnectionError("refused"), Stop())
    with pytest.raises(Stop):
        retry_redis(call, "x", sleep=lambda seconds: None)
    assert call.calls == 2


def test_backoff_for_loops_logs_the_same_lines(caplog: pytest.LogCaptureFixture) -> None:
    loop = Backoff("worker w1: reading the queue", initial=0.5, maximum=10.0)
    with caplog.at_level(logging.WARNING, logger="watcher.redis"):
        first = loop.failed(rx.ReadOnlyError("You can't write against a read only replica."))
        second = loop.failed(redis.exceptions.ConnectionError("Connection refused"))
        loop.succeeded()
        loop.succeeded()  # nothing to say: it never failed since
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert (
        "worker w1: reading the queue failed (ReadOnlyError" in messages[0] and "retrying in" in messages[0]
    )
    assert "works again after" in messages[2]
    assert 0.25 <= loop.failed(rx.TimeoutError("timeout")) <= 0.5, "the count starts over after a success"
