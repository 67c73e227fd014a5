"""Progress reporting: each phase with its duration, and what a long wait is waiting for.

The engine reports through this object so the CLI, the worker and tests can all read the
same phase timings (the demo and the benchmark print them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(
        self, stream: TextIO | None = None, *, on_phase: Callable[[str], None] | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.durations: dict[str, float] = {}
        self.on_phase = on_phase
        self._last_wait = 0.0

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=self.stream, flush=True)

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        """Log the start and end of a phase and keep its duration."""
        if self.on_phase:
            self.on_phase(name)
        self.say(f"{name}: {detail}" if detail else f"{name} ...")
        begun = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            took = time.monotonic() - begun
            self.durations[name] = self.durations.get(name, 0.0) + took
            self.say(f"{name} {'done' if ok else 'FAILED'} in {took:.1f}s")

    def waiting(self, what: str, elapsed: float, limit: float, every: float = 5.0) -> None:
        """Say what a wait is waiting for, at most every `every` seconds."""
        now = time.monotonic()
        if now - self._last_wait >= every:
            self._last_wait = now
            self.say(f"  waiting for {what} ({elapsed:.0f}s of {limit:.0f}s)")

    @property
    def total(self) -> float:
        return time.monotonic() - self.started
