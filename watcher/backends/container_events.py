"""Docker's events for one compose project's containers, read by a thread of their own.

The health wait re-judges a colour the moment Docker reports a change (`health_status: healthy`,
a `die`, a restart) instead of at its next poll, so the switch follows the healthy report within
milliseconds rather than up to HEALTH_CHECK_INTERVAL later. Events are a hint, never the truth:
the waiter reads Docker's state again on each one and keeps polling, so a stream that cannot be
opened (a socket proxy that does not forward /events), breaks, or loses an event only costs
latency.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from docker.errors import DockerException

#: Container actions after which a colour's health may have changed. `health_status` matches
#: every `health_status: <state>` (Docker filters it by prefix).
HEALTH_ACTIONS = ("health_status", "start", "restart", "die", "oom", "destroy")


class EventStream(Protocol):
    """What the docker SDK's `events(decode=True)` returns: decoded events, and a close that ends
    the iteration from another thread."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ContainerEvent:
    container: str  # the container's name
    action: str  # e.g. `health_status: healthy`, `die`

    @classmethod
    def of(cls, raw: dict[str, Any]) -> ContainerEvent:
        actor = raw.get("Actor") or {}
        name = (actor.get("Attributes") or {}).get("name") or str(actor.get("ID", ""))[:12]
        return cls(name, str(raw.get("Action") or raw.get("status") or ""))

    def __str__(self) -> str:
        return f"{self.container}: {self.action}"


class ContainerEvents:
    """Owns the stream and the thread reading it; `close` (or leaving the `with`) ends both."""

    def __init__(self, stream: EventStream | None, problem: str = "") -> None:
        #: Why no events come (could not subscribe, or the stream ended); "" while they flow.
        self.problem = problem
        self._stream = stream
        self._events: queue.SimpleQueue[ContainerEvent] = queue.SimpleQueue()
        self._closing = False
        self._thread: threading.Thread | None = None
        if stream is not None:
            self._thread = threading.Thread(
                target=self._read, args=(stream,), name="docker-events", daemon=True
            )
            self._thread.start()

    def _read(self, stream: EventStream) -> None:
        try:
            for raw in stream:
                self._events.put(ContainerEvent.of(raw))
            ended = "Docker ended the event stream"
        except Exception as exc:  # the thread's only report is `problem`: never let it die silently
            ended = f"the event stream broke ({type(exc).__name__}: {str(exc)[:200]})"
        if not self._closing:
            self.problem = ended

    def wait(self, timeout: float) -> list[ContainerEvent]:
        """The events that arrived, as soon as there is one; [] after `timeout` seconds without."""
        try:
            first = self._events.get(timeout=timeout)
        except queue.Empty:
            return []
        seen = [first]
        while not self._events.empty():
            seen.append(self._events.get_nowait())
        return seen

    def close(self) -> None:
        self._closing = True
        if self._stream is not None:
            try:
                self._stream.close()
            except (DockerException, OSError):  # not cancellable over ssh://: the daemon ends it at `until`
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> ContainerEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
