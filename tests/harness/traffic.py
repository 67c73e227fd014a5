"""Traffic through a test stack's Caddy while something changes behind it, and reading a running
watcher's output: shared by the end-to-end deploy and worker tests.
"""

from __future__ import annotations

import collections
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.harness.load import LoadGenerator, LoadResult
from tests.harness.stack import Stack


class Loads:
    """Fast keep-alive POSTs at 200/s and slow 1 s POSTs at 40/s, as a user's clients would send.

    The test app (tests/harness/app_server.py) serves thousands of requests per second on one
    core with a listen backlog of 1024, so a request that fails here failed in the switch or
    the proxy, not in the app's accept queue."""

    def __init__(
        self,
        stack: Stack,
        fast_rate: float = 200,
        slow_rate: float = 40,
        *,
        path: str = "",
        fast_connections: int = 16,
        slow_connections: int = 64,
    ) -> None:
        """`path`: the app's prefix on the stack's Caddy (one of several apps behind it)."""
        self.stack = stack
        self.fast = LoadGenerator(
            f"{stack.url}{path}/cgi-bin/work", rate=fast_rate, connections=fast_connections
        )
        self.slow = LoadGenerator(
            f"{stack.url}{path}/cgi-bin/work?sleep=1", rate=slow_rate, connections=slow_connections
        )
        self.results: list[LoadResult] = []

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.results)

    def versions(self) -> set[str]:
        return {v for r in self.results for v in r.versions}

    def colors(self) -> set[str]:
        """The X-Watcher-Color values of every complete response ("" for one without the header)."""
        return set(self.color_counts())

    def color_counts(self) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter()
        for r in self.results:
            total.update(r.colors)
        return total

    def first_seen(self, color: str) -> float | None:
        """time.monotonic() of the first complete response of `color`, or None if none came."""
        times = [r.colors_first_at[color] for r in self.results if color in r.colors_first_at]
        return min(times) if times else None

    def describe(self) -> str:
        loads = "; ".join(
            f"sent {r.sent} failed {r.failed} {dict(r.errors)} versions {dict(r.versions)} "
            f"colors {dict(r.colors)}"
            for r in self.results
        )
        return f"{loads}\ncaddy errors:\n{self.stack.caddy_errors()}"


@contextmanager
def under_load(stack: Stack, *, settle: float = 1.5, **rates: float) -> Iterator[Loads]:
    with under_loads(stack, [""], settle=settle, **rates) as loads:
        yield loads[""]


@contextmanager
def under_loads(
    stack: Stack, paths: list[str], *, settle: float = 1.5, **options: float
) -> Iterator[dict[str, Loads]]:
    """A Loads per path prefix on the stack's Caddy (one per app behind it), all at once.

    `settle`: seconds of load before the body (connections open and kept alive before anything
    changes) and after it (the last requests land); shorter for a body that itself runs a while
    before it changes anything."""
    loads = {path: Loads(stack, path=path, **options) for path in paths}  # type: ignore[arg-type]
    for each in loads.values():
        each.fast.start()
        each.slow.start()
    try:
        time.sleep(settle)
        yield loads
        time.sleep(settle)
    finally:
        for each in loads.values():
            each.results = [each.fast.stop(), each.slow.stop()]
    # Every load test holds only if the load really ran: "0 failed" of nothing proves nothing.
    idle = [
        f"{kind} load on {path or '/'}"
        for path, each in loads.items()
        for kind, result in zip(("fast", "slow"), each.results)
        if result.sent == 0
    ]
    assert not idle, f"the {' and '.join(idle)} sent no request: " + "; ".join(
        each.describe() for each in loads.values()
    )


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


class Output:
    """Every output line of a spawned watcher, read on a thread as it comes, each with the
    `time.monotonic()` at which it was read (CLOCK_MONOTONIC: comparable with the load
    generator's `colors_first_at`).

    `started` must be taken right before the process was spawned: a phase line "[  12.3s] x: ..."
    was then printed no earlier than `started + 12.3 - 0.05` (the engine's clock starts after
    the process does), which `printed_after` returns: a lower bound safe against reader lag.
    """

    def __init__(self, proc: subprocess.Popen[str], started: float) -> None:
        self.proc = proc
        self.started = started
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._pump, name="watcher-output", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(line for _, line in self.lines)

    def find(self, marker: str) -> tuple[float, str] | None:
        with self._cond:
            return next(((t, line) for t, line in self.lines if marker in line), None)

    def wait_for(self, marker: str, timeout: float = 120) -> float:
        """Block until a line containing `marker` is read; return when it was read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((t for t, line in self.lines if marker in line), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if self._done or left <= 0:
                    break
                self._cond.wait(min(left, 1.0))
        self.proc.kill()
        raise AssertionError(f"never saw {marker!r} (exit {self.proc.poll()}) in:\n{self.text}")

    def printed_after(self, marker: str) -> float:
        """A lower bound of when the line containing `marker` was printed (see the class doc)."""
        found = self.find(marker)
        if found is None:
            raise AssertionError(f"no line with {marker!r} in:\n{self.text}")
        stamp = re.match(r"\s*\[\s*([0-9.]+)s\]", found[1])
        if stamp is None:
            raise AssertionError(f"no [elapsed] stamp on {found[1]!r}")
        return self.started + float(stamp.group(1)) - 0.05

    def wait(self, timeout: float = 180) -> int:
        """Wait for the process to exit and its output to be read; return its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        return code


def spawn(stack: Stack, *args: str, **env: str) -> Output:
    """`stack.spawn(*args)` with its output followed line by line (see Output)."""
    started = time.monotonic()
    return Output(stack.spawn(*args, **env), started)
