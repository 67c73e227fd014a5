"""Sampling a compose project's container IDs in the background: proof that a colour's
containers were never touched (stopped, recreated) while something else happened."""

from __future__ import annotations

import threading

from tests.harness.stack import Stack


class IdSampler:
    """Samples a compose project's container IDs every `every` seconds on a thread."""

    def __init__(self, stack: Stack, project: str, every: float = 0.5) -> None:
        self.samples: list[dict[str, str]] = []
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                self.samples.append(stack.container_ids(project))
                self._stop.wait(every)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> list[dict[str, str]]:
        self._stop.set()
        self._thread.join(10)
        return self.samples
