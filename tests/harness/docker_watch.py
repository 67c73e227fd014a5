"""Is the Docker engine answering? Figures measured across a dockerd restart or freeze (fault tests
on a shared engine do both) measure the engine, not the swap: while the engine is away, Caddy cannot
resolve a new container's name (Docker's embedded DNS is dockerd's), published ports stop, compose
fails. The benchmarks watch the engine and void what was measured across an outage.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import docker
import docker.errors

__all__ = ["DockerWatch", "wait_for_docker"]


def _ping(timeout: float) -> bool:
    try:
        client = docker.from_env(timeout=timeout)
    except (docker.errors.DockerException, OSError):  # requests' errors are OSErrors
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


def wait_for_docker(timeout: float = 120.0) -> bool:
    """Until the engine answers (True), or `timeout` passed (False): cleanup against a missing
    daemon would leave every container behind."""
    deadline = time.monotonic() + timeout
    while not _ping(5.0):
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


class DockerWatch:
    """Pings the engine every `every` s from a thread; a ping that fails or takes longer than `slow`
    s opens an outage, the next answered one closes it. Times are time.time()."""

    def __init__(self, every: float = 1.0, slow: float = 5.0) -> None:
        self.every = every
        self.slow = slow
        self._outages: list[list[float]] = []  # [start, end]; end == 0.0 while it lasts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docker-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.time()
            answered = _ping(self.slow) and time.time() - began <= self.slow
            with self._lock:
                open_ = bool(self._outages) and self._outages[-1][1] == 0.0
                if not answered and not open_:
                    self._outages.append([began, 0.0])
                elif answered and open_:
                    self._outages[-1][1] = time.time()
            self._stop.wait(self.every)

    def __enter__(self) -> DockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.slow + 2)

    def outages(self, start: float, end: float) -> list[dict[str, Any]]:
        """The outages that overlap [start, end] (one still going counts until now)."""
        now = time.time()
        with self._lock:
            spans = [(s, e or now) for s, e in self._outages]
        return [
            {"from": round(s, 3), "to": round(e, 3), "seconds": round(e - s, 1)}
            for s, e in spans
            if s <= end and e >= start
        ]
