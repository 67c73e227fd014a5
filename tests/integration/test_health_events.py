"""The health wait sees Docker's `health_status: healthy` event, on the real Docker engine: the
switch follows it, not the next poll. Timing goals are benchmarks/health_detection.py's; this
only checks, with a bound far from any noise, that the event and not the poll ended the wait.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.stack import Stack

pytestmark = pytest.mark.integration

POLL = 60.0  # far longer than the test app needs to be healthy (about 1 s): only an event ends it sooner


def test_the_switch_follows_dockers_healthy_event_not_the_poll(stack: Stack) -> None:
    stack.watcher("deploy", "v1", check=True)
    proc = stack.watcher("deploy", "v2", "--json", check=True, HEALTH_CHECK_INTERVAL=f"{POLL:g}s")
    assert "healthy, seen on Docker's event" in proc.stderr and "health_status: healthy" in proc.stderr, (
        proc.stderr
    )
    health = json.loads(proc.stdout)["phases"]["health"]
    assert health < POLL / 2, f"the health wait took {health:.1f}s: the poll, not the event, ended it"
    assert stack.version() == "v2"
