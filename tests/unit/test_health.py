"""judge(): one colour's health from Docker's view of its containers, in one place."""

from __future__ import annotations

import pytest

from watcher.backends.containers import ContainerInfo
from watcher.engine.health import judge


def c(state: str = "running", health: str | None = "healthy", *, service: str = "web", restarts: int = 0,
      code: int = 0, name: str = "app-blue-web-1") -> ContainerInfo:
    return ContainerInfo(f"id-{name}", name, service, "ghcr.io/a/b:1", "sha256:1", state, health, code, restarts)


@pytest.mark.parametrize("containers, state", [
    ([], "absent"),
    ([c()], "healthy"),
    ([c(health=None)], "healthy"),                     # no healthcheck: running counts
    ([c(health="starting")], "starting"),
    ([c("created", None)], "starting"),
    ([c(health="unhealthy")], "unhealthy"),
    ([c("restarting", None, code=127)], "restarting"),
    ([c("exited", None, code=1)], "stopped"),           # all stopped: a retained colour
    ([c(), c("exited", None, code=1, service="api", name="x")], "exited"),
    ([c(), c(health="unhealthy", service="api", name="x")], "unhealthy"),
])
def test_states(containers: list[ContainerInfo], state: str) -> None:
    assert judge(containers, ["web", "api"] if len(containers) > 1 else ["web"]).state == state


def test_a_missing_service_is_still_starting() -> None:
    health = judge([c()], ["web", "worker"])
    assert health.state == "starting" and "worker" in health.reason and not health.failed


def test_a_restart_since_the_wait_began_is_a_crash_loop_even_while_running() -> None:
    """Defect D: between two restarts a crash-looping container looks `running`."""
    looping = c(health="starting", restarts=3)
    assert judge([looping], ["web"]).state == "starting"
    health = judge([looping], ["web"], {looping.id: 1})
    assert health.state == "restarting" and health.failed
    assert judge([looping], ["web"], {looping.id: 3}).state == "starting"


@pytest.mark.parametrize("state, failed", [("unhealthy", True), ("restarting", True), ("exited", True),
                                           ("starting", False), ("healthy", False), ("absent", False)])
def test_which_states_end_the_health_wait(state: str, failed: bool) -> None:
    from watcher.engine.health import Health
    assert Health(state).failed is failed
