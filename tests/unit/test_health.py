"""judge(): one colour's health from Docker's view of its containers, in one place; the health
wait that judges it on Docker's events and polls as the fallback; the event source."""

from __future__ import annotations

import io
import queue
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from watcher.backends.container_events import ContainerEvent, ContainerEvents
from watcher.backends.containers import Containers, _up_for
from watcher.backends.instance import SETTLE, Instance
from watcher.platforms.health import judge
from watcher.platforms.health_check import HealthCheckFailed, wait_on_events
from watcher.progress import Progress


def c(
    state: str = "running",
    health: str | None = "healthy",
    *,
    service: str = "web",
    restarts: int = 0,
    code: int = 0,
    name: str = "app-blue-web-1",
) -> Instance:
    return Instance(f"id-{name}", name, service, "ghcr.io/a/b:1", "sha256:1", state, health, code, restarts)


@pytest.mark.parametrize(
    "containers, state",
    [
        ([], "absent"),
        ([c()], "healthy"),
        ([c(health=None)], "healthy"),  # no healthcheck: running counts
        ([c(health="starting")], "starting"),
        ([c("created", None)], "starting"),
        ([c(health="unhealthy")], "unhealthy"),
        ([c("restarting", None, code=127)], "restarting"),
        ([c("exited", None, code=1)], "stopped"),  # all stopped: a retained colour
        ([c(), c("exited", None, code=1, service="api", name="x")], "exited"),
        ([c(), c(health="unhealthy", service="api", name="x")], "unhealthy"),
    ],
)
def test_states(containers: list[Instance], state: str) -> None:
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


@pytest.mark.parametrize(
    "state, failed",
    [
        ("unhealthy", True),
        ("restarting", True),
        ("exited", True),
        ("stopped", True),
        ("starting", False),
        ("healthy", False),
        ("absent", False),
    ],
)
def test_which_states_end_the_health_wait(state: str, failed: bool) -> None:
    from watcher.platforms.health import Health

    assert Health(state).failed is failed


# -- the health wait on Docker's events (health_check.wait_on_events), with a scripted colour --


class FakeDocker:
    """What a failure report reads of a container."""

    def last_health_output(self, container_id: str) -> str:
        return "wget: server returned error: HTTP/1.1 404 Not Found"

    def logs(self, container_id: str, tail: int = 20) -> str:
        return "app: listening on :8080"


class ScriptedColor:
    """A colour whose every read of its containers returns the next view (the last one repeats)."""

    def __init__(self, *views: list[Instance], services: tuple[str, ...] = ("web",)) -> None:
        self.views, self.reads = list(views), 0
        self.services, self.color, self.name, self.docker = list(services), "green", "app-green", FakeDocker()
        self.one_shots: set[str] = set()

    def instances(self) -> list[Instance]:
        view = self.views[min(self.reads, len(self.views) - 1)]
        self.reads += 1
        return view


class FakeEvents:
    """Each wait returns the next scripted batch at once; with none left, it waits out the timeout
    (as a quiet stream, or a source without events, does)."""

    def __init__(self, *batches: list[ContainerEvent], problem: str = "") -> None:
        self.batches, self.problem, self.waits = list(batches), problem, []

    def wait(self, timeout: float) -> list[ContainerEvent]:
        self.waits.append(timeout)
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout)
        return []


def event(action: str, container: str = "app-blue-web-1") -> ContainerEvent:
    return ContainerEvent(container, action)


def wait(color: ScriptedColor, events: FakeEvents, *, timeout: float = 300, interval: float = 60) -> str:
    """Run the wait; return what it said."""
    out = io.StringIO()
    wait_on_events(color, events, timeout=timeout, interval=interval, progress=Progress(out))  # type: ignore[arg-type]
    return out.getvalue()


def test_a_healthy_event_ends_the_wait_at_once_not_at_the_next_poll() -> None:
    color = ScriptedColor([c(health="starting")], [c(health="starting")], [c()])
    events = FakeEvents([event("health_status: healthy")])
    said = wait(color, events, interval=60)
    assert events.waits == [60], "one wait, answered by the event"
    assert "healthy, seen on Docker's event app-blue-web-1: health_status: healthy" in said


def test_every_container_of_every_service_must_be_healthy() -> None:
    web, worker = c(health="starting"), c(health="starting", service="worker", name="app-blue-worker-1")
    color = ScriptedColor(
        [web], [web], [c()], [c(), worker], [c(), c(service="worker", name="w")], services=("web", "worker")
    )
    events = FakeEvents(
        [event("health_status: healthy")], [event("start", "w")], [event("health_status: healthy", "w")]
    )
    said = wait(color, events)
    assert len(events.waits) == 3, "web alone, then worker starting, are not enough"
    assert "w: health_status: healthy" in said


def test_an_unhealthy_event_fails_the_wait_at_once() -> None:
    color = ScriptedColor([c(health="starting")], [c(health="starting")], [c(health="unhealthy")])
    with pytest.raises(HealthCheckFailed) as failed:
        wait(color, FakeEvents([event("health_status: unhealthy")]))
    assert "failed its health check" in str(failed.value) and "404 Not Found" in str(failed.value)
    assert "last log lines" in failed.value.details


def test_a_container_that_died_and_restarted_fails_fast_though_running_again() -> None:
    color = ScriptedColor([c(health="starting")], [c(health="starting")], [c(health="starting", restarts=1)])
    with pytest.raises(HealthCheckFailed, match="is restarting"):
        wait(color, FakeEvents([event("die"), event("start")]))


def test_without_events_it_polls_every_interval_and_says_why_once() -> None:
    starting = [c(health="starting")]
    color = ScriptedColor(starting, starting, starting, starting, [c()])
    events = FakeEvents(problem="cannot subscribe to Docker's events: 403 Client Error: Forbidden")
    said = wait(color, events, interval=0.01)
    assert events.waits == [0.01, 0.01, 0.01]
    assert said.count("note: cannot subscribe to Docker's events: 403") == 1
    assert "polling every 0.01s" in said and "healthy, seen on the poll (every 0.01s)" in said


def test_starting_waits_until_the_timeout_whatever_the_events() -> None:
    color = ScriptedColor([c(health="starting")])
    events = FakeEvents([event("start")], [event("health_status: starting")])
    with pytest.raises(HealthCheckFailed, match="HEALTH_CHECK_TIMEOUT"):
        wait(color, events, timeout=0.1, interval=0.02)
    assert len(events.waits) > 2, "the events did not end the wait; the poll went on to the timeout"


# -- the event source (backends/container_events.py) on a fake Docker stream --


class FakeStream:
    """Decoded events as the docker SDK yields them; `close` ends the iteration (from any thread)."""

    def __init__(self, *raw: dict, breaks: Exception | None = None) -> None:
        self.items: queue.Queue[dict | None] = queue.Queue()
        for item in raw:
            self.items.put(item)
        self.breaks = breaks

    def __iter__(self) -> Iterator[dict]:
        while (item := self.items.get()) is not None:
            yield item
        if self.breaks:
            raise self.breaks

    def close(self) -> None:
        self.items.put(None)


def docker_event(action: str, name: str = "app-green-web-1") -> dict:
    """An event as Docker 20.10 sends it."""
    return {
        "status": action,
        "id": "f00d",
        "from": "app:2",
        "Type": "container",
        "Action": action,
        "Actor": {"ID": "f00d", "Attributes": {"name": name, "com.docker.compose.project": "app-green"}},
        "scope": "local",
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }


def collect(events: ContainerEvents, count: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < count and (batch := events.wait(5)):
        seen += map(str, batch)
    return seen


def test_events_arrive_in_order_and_close_ends_the_thread_quietly() -> None:
    stream = FakeStream(docker_event("start"), docker_event("health_status: healthy"))
    with ContainerEvents(stream) as events:
        assert collect(events, 2) == ["app-green-web-1: start", "app-green-web-1: health_status: healthy"]
    assert events.problem == "" and not events._thread.is_alive()  # type: ignore[union-attr]


def test_a_stream_that_breaks_or_ends_says_so_and_waits_go_on() -> None:
    stream = FakeStream(docker_event("start"), breaks=ConnectionResetError("reset by peer"))
    with ContainerEvents(stream) as events:
        assert collect(events, 1) == ["app-green-web-1: start"]
        stream.close()
        events._thread.join(5)  # type: ignore[union-attr]
        assert "broke (ConnectionResetError: reset by peer)" in events.problem
        assert events.wait(0.01) == []


def test_a_refused_subscription_is_a_source_without_events() -> None:
    """As a Docker socket proxy that does not forward /events answers."""
    from docker.errors import APIError

    class RefusingClient:
        def events(self, **_: object) -> None:
            raise APIError("403 Client Error: Forbidden")

    docker = Containers.__new__(Containers)
    docker.client = RefusingClient()  # type: ignore[assignment]
    events = docker.events("app-green", until=time.time() + 10)
    assert events.problem == "cannot subscribe to Docker's events: 403 Client Error: Forbidden"
    assert events.wait(0.01) == []
    events.close()


def test_a_container_without_a_healthcheck_is_ready_once_it_stayed_up() -> None:
    """An app that dies of its config a moment after start must not be judged healthy on the look
    that caught it running: without a healthcheck, it must have stayed up SETTLE seconds."""
    fresh = replace(c(health=None), up_for=0.4)
    health = judge([fresh], ["web"])
    assert health.state == "starting" and f"up 0.4s of the {SETTLE:g}s" in health.reason
    assert judge([replace(fresh, up_for=SETTLE)], ["web"]).healthy
    assert judge([replace(c(), up_for=0.1)], ["web"]).healthy  # a healthcheck decides by itself


def test_the_time_a_container_has_been_up_is_read_from_docker() -> None:
    started = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%f123Z")
    assert 4.5 < (_up_for({"Status": "running", "StartedAt": started}) or 0) < 6
    assert _up_for({"Status": "exited", "StartedAt": started}) is None
    assert _up_for({"Status": "running", "StartedAt": "0001-01-01T00:00:00Z"}) is not None
    assert _up_for({"Status": "running"}) is None
