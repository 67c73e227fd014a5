"""Draining waits for a quiet old colour, not for one lucky zero."""

from __future__ import annotations

import io

from watcher.engine import drain
from watcher.progress import Progress


class Counts:
    """Caddy's in-flight counts, one per read, then zeros."""

    def __init__(self, *counts: int) -> None:
        self.counts = list(counts)
        self.reads = 0

    def in_flight(self, upstreams: list[str]) -> int:
        self.reads += 1
        return self.counts.pop(0) if self.counts else 0


def test_a_zero_between_requests_is_not_drained(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(drain, "QUIET", 0.3)
    counts = Counts(3, 0, 2, 0, 1)
    assert drain.wait_drained(counts, ["a-web-blue:8080"], timeout=10, progress=Progress(io.StringIO()))  # type: ignore[arg-type]
    assert counts.reads >= 5 + 3  # every count was read, then a quiet period of zeros


def test_still_busy_at_the_timeout_is_not_drained() -> None:
    counts = Counts(*[1] * 1000)
    assert not drain.wait_drained(counts, ["a"], timeout=0.3, progress=Progress(io.StringIO()))  # type: ignore[arg-type]
