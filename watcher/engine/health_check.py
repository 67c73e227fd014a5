"""Waiting until every new container is healthy, bounded by HEALTH_CHECK_TIMEOUT.

An `unhealthy` status is not final while the timeout runs (a slow boot can still pass);
a container that exits or dies is, and fails the wait at once.
"""

from __future__ import annotations

import time
from typing import Callable

from watcher.backends.containers import ContainerInfo, Containers
from watcher.engine.progress import Progress
from watcher.errors import DeployFailed


class HealthCheckFailed(DeployFailed):
    """The new colour did not become healthy; `details` shows why, per container."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def wait_until_healthy(list_containers: Callable[[], list[ContainerInfo]], services: list[str],
                       docker: Containers, *, timeout: float, interval: float, progress: Progress) -> float:
    """Poll every `interval` seconds; return the seconds it took, or raise HealthCheckFailed."""
    started = time.monotonic()
    warned_no_check = False
    while True:
        containers = list_containers()
        elapsed = time.monotonic() - started
        missing = [s for s in services if not any(c.service == s for c in containers)]
        dead = [c for c in containers if c.state in ("exited", "dead")]
        if dead:
            raise _failure(f"{dead[0].name} exited (code {dead[0].exit_code}) before it was healthy",
                           dead, docker)
        if not missing and containers and all(c.ready for c in containers):
            if not warned_no_check and any(c.health is None for c in containers):
                progress.say("  warning: a container has no healthcheck; running counts as healthy")
            return elapsed
        if elapsed >= timeout:
            waiting = [c for c in containers if not c.ready]
            what = ", ".join(f"{c.name} ({c.health or c.state})" for c in waiting) or \
                f"services {', '.join(missing)} to start"
            raise _failure(f"not healthy after {timeout:.0f}s (HEALTH_CHECK_TIMEOUT): {what}", waiting, docker)
        pending = ", ".join(f"{c.name}: {c.health or c.state}" for c in containers if not c.ready)
        progress.waiting(pending or "containers to be created", elapsed, timeout)
        time.sleep(min(interval, max(0.0, timeout - elapsed)) or interval)


def _failure(message: str, containers: list[ContainerInfo], docker: Containers) -> HealthCheckFailed:
    parts = []
    for container in containers:
        parts.append(f"--- {container.name}: state={container.state} health={container.health}")
        output = docker.last_health_output(container.id)
        if output:
            parts.append(f"last health check: {output[-500:]}")
        logs = docker.logs(container.id, tail=15)
        if logs:
            parts.append("last log lines:\n" + logs)
    return HealthCheckFailed(message, "\n".join(parts))
