"""The queue end to end against the real engine: what is live comes from the route file, never
from a copy in Redis. (Workers killed, stopped or signalled at each phase of a deploy:
tests/faults/test_signals.py.)
"""

from __future__ import annotations

import pytest

from tests.harness.stack import Stack

pytestmark = pytest.mark.integration


def deployed(stack: Stack, version: str) -> None:
    proc = stack.watcher("deploy", version)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"


def test_what_is_live_comes_from_the_route_file_not_a_copy_in_redis(queued: Stack) -> None:
    """Defect E: the queue's no-op rule and check-tags read what serves from the route file and
    the state, so deploys made outside the queue can never leave a stale 'already live'."""
    stack = queued
    deployed(stack, "v1")
    deployed(stack, "v2")
    noop = stack.watcher("enqueue", "v2")
    assert noop.returncode == 0 and "v2 is already live on green: nothing to do" in noop.stderr, noop.stderr
    again = stack.watcher("enqueue", "v1")
    assert again.returncode == 0 and "queued: deploy v1" in again.stderr, again.stderr
    tags = stack.watcher("check-tags")
    assert "live: v2" in tags.stdout, tags.stdout
