"""Traffic through a test stack's Caddy while something changes behind it, and reading a running
watcher's output: shared by the end-to-end deploy and worker tests.
"""

from __future__ import annotations

import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from tests.harness.load import LoadGenerator, LoadResult
from tests.harness.stack import Stack


class Loads:
    """Fast keep-alive POSTs at 200/s and slow 1 s POSTs at 40/s, as a user's clients would send."""

    def __init__(self, stack: Stack, fast_rate: float = 200, slow_rate: float = 40) -> None:
        self.stack = stack
        self.fast = LoadGenerator(f"{stack.url}/cgi-bin/work", rate=fast_rate, connections=16)
        self.slow = LoadGenerator(f"{stack.url}/cgi-bin/work?sleep=1", rate=slow_rate, connections=64)
        self.results: list[LoadResult] = []

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.results)

    def versions(self) -> set[str]:
        return {v for r in self.results for v in r.versions}

    def describe(self) -> str:
        loads = "; ".join(f"sent {r.sent} failed {r.failed} {dict(r.errors)}" for r in self.results)
        return f"{loads}\ncaddy errors:\n{self.stack.caddy_errors()}"


@contextmanager
def under_load(stack: Stack, **rates: float) -> Iterator[Loads]:
    loads = Loads(stack, **rates)
    loads.fast.start()
    loads.slow.start()
    try:
        time.sleep(1.5)  # connections open and kept alive before anything changes
        yield loads
        time.sleep(1.5)
    finally:
        loads.results = [loads.fast.stop(), loads.slow.stop()]


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    """Output of a running watcher up to the line containing `marker`."""
    seen: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise AssertionError(f"never saw {marker!r} in:\n{''.join(seen)}")
    return "".join(seen)
