"""Waiting until a new colour is healthy: fail fast, wait only for slow starts, see it at once
(the Docker way, for `ComposeColor.wait_healthy`).

`unhealthy` reported by Docker, a container that exited or is restarting (a crash loop, an
image whose entrypoint cannot start) ends the wait at once with the container's last health
output and log lines: waiting longer cannot help, and the lock and the queue would be held for
nothing. HEALTH_CHECK_TIMEOUT bounds only a start that is still `starting` (the app's own
healthcheck `start_period` is where a slow boot is declared).

The colour is judged again the moment Docker reports an event of one of its containers
(`health_status: healthy`, `die`, a restart), so the switch follows Docker's healthy report
within milliseconds, not up to HEALTH_CHECK_INTERVAL later. The poll every interval stays as
the fallback: events are a hint that can be lost, and a socket proxy may not forward them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from watcher.backends.instance import SETTLE, Instance
from watcher.errors import DeployFailed
from watcher.platforms.color import Color
from watcher.platforms.health import judge
from watcher.progress import Progress

if TYPE_CHECKING:  # the Docker SDK behind them loads when a colour is really watched
    from watcher.backends.container_events import ContainerEvent
    from watcher.backends.containers import Containers


class HealthCheckFailed(DeployFailed):
    """The new colour did not become healthy; `details` shows why, per container."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


class EventSource(Protocol):
    """Docker's events of the colour's containers (backends/container_events.py)."""

    problem: str

    def wait(self, timeout: float) -> list[ContainerEvent]: ...


class Watched(Protocol):
    """A colour whose containers Docker runs (compose.py's `ComposeColor`)."""

    color: Color
    services: list[str]
    one_shots: set[str]
    docker: Containers

    @property
    def name(self) -> str: ...

    def instances(self) -> list[Instance]: ...


def wait_until_healthy(stack: Watched, *, timeout: float, interval: float, progress: Progress) -> float:
    """Subscribe to the colour's events, then wait; return the seconds it took, or raise
    HealthCheckFailed."""
    with stack.docker.events(stack.name, until=time.time() + timeout + interval) as events:
        return wait_on_events(stack, events, timeout=timeout, interval=interval, progress=progress)


def wait_on_events(
    stack: Watched, events: EventSource, *, timeout: float, interval: float, progress: Progress
) -> float:
    """Judge the colour now, on every batch of events, and every `interval` seconds without one."""
    started = time.monotonic()
    restarts = {c.id: c.restart_count for c in stack.instances()}
    seen_by, told = "the first look", ""
    while True:
        containers = stack.instances()
        health = judge(containers, stack.services, restarts, stack.one_shots)
        elapsed = time.monotonic() - started
        if health.healthy:
            progress.say(f"  healthy, seen on {seen_by}")
            if any(c.health is None for c in containers):
                progress.say(
                    f"  warning: a container has no healthcheck; up for {SETTLE:g}s counts as healthy"
                )
            return elapsed
        if health.failed:
            raise _failure(
                f"{stack.color} failed its health check after {elapsed:.0f}s: {health.reason}",
                containers,
                stack.docker,
            )
        if elapsed >= timeout:
            raise _failure(
                f"not healthy after {timeout:.0f}s (HEALTH_CHECK_TIMEOUT): {health.reason}",
                [c for c in containers if not c.ready],
                stack.docker,
            )
        progress.waiting(health.reason or "containers to be created", elapsed, timeout)
        if events.problem != told:
            told = events.problem
            progress.say(f"  note: {told}; polling every {interval:g}s")
        arrived = events.wait(min(_next_look(containers, interval), max(0.0, timeout - elapsed)) or interval)
        seen_by = (
            f"Docker's event {', '.join(map(str, arrived[-3:]))}"
            if arrived
            else f"the poll (every {interval:g}s)"
        )


def _next_look(containers: list[Instance], interval: float) -> float:
    """No event says when a container without a healthcheck has settled: look again then."""
    settling = [SETTLE - c.up_for for c in containers if c.health is None and c.up_for is not None]
    return min([interval, *(max(0.05, left) for left in settling if left > 0)])


def _failure(message: str, containers: list[Instance], docker: Containers) -> HealthCheckFailed:
    """The message carries the first failing container's last health output (short enough for a
    job's reason); the details, every container's state, health output and last log lines."""
    parts, first_output = [], ""
    for container in containers:
        parts.append(
            f"--- {container.name}: state={container.state} health={container.health} "
            f"restarts={container.restart_count}"
        )
        output = container.probe or docker.last_health_output(container.id)
        if output:
            parts.append(f"last health check: {output[-500:]}")
            if not first_output and not container.ready:
                first_output = " ".join(output.split())[:200]
        logs = docker.logs(container.id, tail=15)
        if logs:
            parts.append("last log lines:\n" + logs)
    if first_output and first_output not in message:  # a GET's answer is in the reason already
        message += f" (last health check: {first_output})"
    return HealthCheckFailed(message, "\n".join(parts))
