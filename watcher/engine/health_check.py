"""Waiting until a new colour is healthy: fail fast, wait only for slow starts.

`unhealthy` reported by Docker, a container that exited or is restarting (a crash loop, an
image whose entrypoint cannot start) ends the wait at once with the container's last health
output and log lines: waiting longer cannot help, and the lock and the queue would be held for
nothing. HEALTH_CHECK_TIMEOUT bounds only a start that is still `starting` (the app's own
healthcheck `start_period` is where a slow boot is declared).
"""

from __future__ import annotations

import time

from watcher.backends.containers import ContainerInfo, Containers
from watcher.engine.health import judge
from watcher.engine.progress import Progress
from watcher.engine.stack import ColorStack
from watcher.errors import DeployFailed


class HealthCheckFailed(DeployFailed):
    """The new colour did not become healthy; `details` shows why, per container."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def wait_until_healthy(stack: ColorStack, *, timeout: float, interval: float, progress: Progress) -> float:
    """Poll every `interval` seconds; return the seconds it took, or raise HealthCheckFailed."""
    started = time.monotonic()
    restarts = {c.id: c.restart_count for c in stack.containers()}
    while True:
        containers = stack.containers()
        health = judge(containers, stack.services, restarts)
        elapsed = time.monotonic() - started
        if health.healthy:
            if any(c.health is None for c in containers):
                progress.say("  warning: a container has no healthcheck; running counts as healthy")
            return elapsed
        if health.failed:
            raise _failure(f"{stack.color} failed its health check after {elapsed:.0f}s: {health.reason}",
                           containers, stack.docker)
        if elapsed >= timeout:
            raise _failure(f"not healthy after {timeout:.0f}s (HEALTH_CHECK_TIMEOUT): {health.reason}",
                           [c for c in containers if not c.ready], stack.docker)
        progress.waiting(health.reason or "containers to be created", elapsed, timeout)
        time.sleep(min(interval, max(0.0, timeout - elapsed)) or interval)


def _failure(message: str, containers: list[ContainerInfo], docker: Containers) -> HealthCheckFailed:
    """The message carries the first failing container's last health output (short enough for a
    job's reason); the details, every container's state, health output and last log lines."""
    parts, first_output = [], ""
    for container in containers:
        parts.append(f"--- {container.name}: state={container.state} health={container.health} "
                     f"restarts={container.restart_count}")
        output = docker.last_health_output(container.id)
        if output:
            parts.append(f"last health check: {output[-500:]}")
            if not first_output and not container.ready:
                first_output = " ".join(output.split())[:200]
        logs = docker.logs(container.id, tail=15)
        if logs:
            parts.append("last log lines:\n" + logs)
    if first_output:
        message += f" (last health check: {first_output})"
    return HealthCheckFailed(message, "\n".join(parts))
