"""`watcher deploy` killed with SIGKILL at each phase on a real 3-node swarm
(tests/harness/swarm.py), under keep-alive POST load through the edge Caddy (tests/swarm/faulting.py
has the app and the checks). Each case prints "sent N failed M" and what watcher did; afterwards
`watcher status` must agree with the route file and with Swarm, and the next deploy must succeed
with no request failed.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.swarm.conftest import SwarmApp, total
from tests.swarm.faulting import Deploying, app, loaded, next_version, recover, route, truthful

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration

__all__ = ["app"]  # the module's own swarm and app (a module-scoped fixture)


# ---------------------------------------------------------------- 1. kill -9 of the deploy

#: Where the deploy dies: the line it waits for, and how long after it the kill comes.
KILL_AT = {
    "start": ("] start: ", 0.0),  # the stack deploy of the new colour under way (or just done)
    "health": ("] health: ", 1.0),  # the new colour's tasks starting, not yet healthy
    "switched": ("switch done in", 0.0),  # the route names the new colour; verify begins
    "record": ("] record: ", 0.0),  # verified; the state being written
    "drain": ("] drain: ", 0.3),  # recorded; the old colour draining
    "stop-old": ("] stop old: ", 0.0),  # drained; the old colour being scaled to 0
}


@pytest.mark.parametrize("phase", KILL_AT)
def test_kill_9_of_the_deploy_leaves_one_colour_serving_and_the_next_deploy_works(
    app: SwarmApp, phase: str
) -> None:
    before = app.status()
    old, old_color = before["live_version"], before["live_color"]
    version = next_version(old)
    marker, after = KILL_AT[phase]
    with loaded(app) as loads:
        deploying = Deploying(app, "deploy", version)
        seen = deploying.wait_for(marker)
        time.sleep(after)
        deploying.kill()
        killed_at = time.monotonic()
        code = deploying.wait()
        time.sleep(3)  # the edge keeps answering after the kill
    load = total(loads)
    status = app.status()
    print(
        f"\nkill -9 at {phase} ({marker!r} + {after}s, {killed_at - seen:.1f}s after the line): "
        f"exit {code}; sent {load.sent} failed {load.failed}; served {load.versions}; "
        f"route {route(app)}; status live {status['live_version']} on {status['live_color']}, "
        f"in_sync {status['in_sync']}, warnings {status['warnings']}"
    )
    assert code == -signal.SIGKILL, deploying.output
    assert load.sent > 0 and load.failed == 0, load.errors
    truthful(app, status)
    if phase in ("start", "health"):  # before the switch: the old colour serves, as recorded
        assert (status["live_version"], status["live_color"]) == (old, old_color), status
        assert set(load.versions) == {old}, load.versions
    else:  # after the switch the new colour serves (recorded or not)
        assert status["live_version"] == version and status["live_color"] != old_color, status
    recover(app, version)  # after drain or stop-old the old colour may still run: a leftover to remove
