"""What the swarm fault modules share (test_swarm_faults.py: kill -9 at each phase;
test_swarm_nodes.py: a node drained or cut off): the app of test_swarm_deploy.py
(tests/swarm/conftest.py `swarm_app`) with two replicas, at most one a node, so a drained or lost
node leaves room for a colour; a deploy followed line by line; the load; the checks that
`watcher status` agrees with the route file and with Swarm, and that the next deploy works.

Each module has its own swarm (`app` is module-scoped), so `make test` runs them side by side.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.harness.swarm import RunningLoad, Swarm
from tests.swarm.conftest import APP, SwarmApp, swarm_app, total

REPLICAS = 2
VERSIONS = ("v1", "v2", "v3")


@pytest.fixture(scope="module")
def app(swarm3: Swarm, swarm_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SwarmApp:
    app = swarm_app(swarm3, swarm_images, tmp_path_factory.mktemp("swarm-faults"), replicas=REPLICAS)
    app.deploy("deploy", "v1")
    return app


class Deploying:
    """`watcher deploy` running in a process group of its own; its output lines, as they come."""

    def __init__(self, app: SwarmApp, *args: str) -> None:
        self.proc = app.spawn(*args)
        self.pgid = os.getpgid(self.proc.pid)
        assert self.pgid != os.getpgrp(), "the CLI must not share the test's process group"
        self.lines: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, marker: str, timeout: float = 120) -> float:
        """Wait for a line containing ``marker``; when it was read (monotonic)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, line in self.lines:
                    if marker in line:
                        return at
                if not self._reader.is_alive() or time.monotonic() > deadline:
                    raise AssertionError(f"no line with {marker!r}:\n{self.output}")
                self._changed.wait(0.2)

    def kill(self) -> None:
        os.killpg(self.pgid, signal.SIGKILL)  # the CLI's own group (start_new_session), never ours

    def wait(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


@contextmanager
def loaded(app: SwarmApp) -> Iterator[list[RunningLoad]]:
    """Keep-alive POSTs through the edge for as long as the block runs (and 1 s more)."""
    loads = [
        app.swarm.start_load("/cgi-bin/work", rate=30, duration=600, connections=8, timeout=10, answered=True)
    ]
    time.sleep(1)  # connections open and kept alive before the fault
    try:
        yield loads
    finally:
        time.sleep(1)
        for load in loads:
            load.stop()


def next_version(live: str, *skip: str) -> str:
    return next(v for v in VERSIONS if v != live and v not in skip)


def route(app: SwarmApp) -> str:
    return app.route_file.read_text().strip()


def running_on(status: dict, color: str) -> list[str]:
    return [
        c["node"] for c in status["colors"].get(color, {}).get("containers", []) if c["state"] == "running"
    ]


def truthful(app: SwarmApp, status: dict) -> None:
    """Status names the colour the route file names, the version its tasks run, and Swarm runs
    the live colour's replicas."""
    routed = route(app)
    assert status["route"] == routed and status["live_color"] == routed, (routed, status)
    assert status["live_version"] == status["colors"][routed]["version"], status
    assert len(running_on(status, routed)) == REPLICAS, status["colors"][routed]
    tasks = app.swarm.running_tasks(f"{APP}-{routed}_web")
    assert len(tasks) == REPLICAS, tasks


def recover(app: SwarmApp, *skip: str) -> str:
    """The next deploy (of a version neither live nor in ``skip``), under load: it succeeds, no
    request fails, and status is in sync afterwards."""
    live = app.status()["live_version"]
    version = next_version(live, *skip)
    with loaded(app) as loads:
        done = app.watcher("deploy", version)
    load = total(loads)
    print(f"  next deploy {live} -> {version}: exit {done.returncode}; sent {load.sent} failed {load.failed}")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert load.sent > 0 and load.failed == 0, load.errors
    status = app.status()
    assert status["live_version"] == version and status["in_sync"], status
    truthful(app, status)
    return version
