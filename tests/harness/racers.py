"""Several watcher processes racing for one app's deploy lock, and the swaps their engines
report, to check that exactly one swap runs at a time.

Every line a racer prints is read on a thread and stamped with `time.monotonic()` as it is read
(traffic.Output). An engine run shows as its phase lines, "[  1.2s] pull: ...", from its `pull:`
line to its last phase line before the next run of the same process. Two runs of different
processes are apart by at least the lock's hand-over (release, take, compose config, pull
check: well over a tenth of a second), against a reader lag of milliseconds; so "this run's last
line was read before the next run's first" is what "one swap at a time" means here.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass

from tests.harness.stack import Stack
from tests.harness.traffic import Output, spawn

PHASE_LINE = re.compile(r"^\[\s*[0-9.]+s\] ")
PULL = re.compile(r"^\[\s*[0-9.]+s\] pull: \S+:(?P<tag>[^\s:]+)\s*$")


@dataclass(frozen=True)
class Swap:
    """One engine run of one process, between the read times of its first and last phase lines."""

    racer: str
    version: str
    start: float
    end: float
    switches: int  # "switch: traffic" lines: 1 for a swap, 0 for a deploy that failed before it
    outcome: str  # its last phase line

    def describe(self, offset: float) -> str:
        return (
            f"{self.racer}: {self.version} from {self.start + offset:.2f} to {self.end + offset:.2f} "
            f"({self.switches} switch) -> {self.outcome.strip()}"
        )


def swaps_of(racer: str, out: Output) -> list[Swap]:
    """The engine runs in one racer's output, in order."""
    runs: list[list[tuple[float, str]]] = []
    for stamp, line in list(out.lines):
        if PULL.match(line):
            runs.append([])
        if PHASE_LINE.match(line) and runs:
            runs[-1].append((stamp, line))
    return [
        Swap(
            racer,
            _tag(run[0][1]),
            run[0][0],
            run[-1][0],
            sum("switch: traffic" in line for _, line in run),
            run[-1][1],
        )
        for run in runs
    ]


def _tag(line: str) -> str:
    match = PULL.match(line)
    assert match is not None, line
    return match.group("tag")


def assert_one_at_a_time(swaps: list[Swap]) -> list[Swap]:
    """No two engine runs overlap; returns them in the order they ran."""
    ordered = sorted(swaps, key=lambda s: s.start)
    offset = time.time() - time.monotonic()
    shown = "\n".join(s.describe(offset) for s in ordered)
    for earlier, later in zip(ordered, ordered[1:]):
        assert earlier.end < later.start, f"two swaps at once:\n{shown}"
    return ordered


class Racers:
    """Named watcher processes of one stack (workers, `watcher run`, a host-CLI deploy)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.outputs: dict[str, Output] = {}

    def start(self, racer: str, *args: str) -> Output:
        """Spawn `watcher *args` as `racer`, its output followed line by line."""
        out = spawn(self.stack, *args)
        self.outputs[racer] = out
        return out

    def swaps(self) -> list[Swap]:
        return [swap for racer, out in self.outputs.items() for swap in swaps_of(racer, out)]

    def text(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {racer}\n{out.text[-tail:]}" for racer, out in self.outputs.items())

    def stop(self) -> dict[str, int]:
        """SIGTERM every racer still running (a worker finishes unwinding first); exit codes."""
        for out in self.outputs.values():
            if out.proc.poll() is None:
                out.proc.send_signal(signal.SIGTERM)
        codes = {}
        for racer, out in self.outputs.items():
            try:
                codes[racer] = out.wait(timeout=60)
            except subprocess.TimeoutExpired:
                out.proc.kill()
                codes[racer] = out.wait(timeout=10)
        return codes
