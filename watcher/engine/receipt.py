"""A deploy's traffic receipt: what Caddy served on each colour, second by second, from a little
before traffic moved to the end of the drain, so every deploy, rollback and abort can say
"served 4,812 requests during the swap, 0 failed" from the proxy's own log.

Classes of a response: 1xx (a WebSocket), 2xx, 3xx, 4xx and 5xx as the app answered, `upstream_error` when Caddy
got no answer from the app (connection refused or reset, timeout: the client saw a 502/503/504)
and `cancelled` when the client left first. Failed = 5xx + upstream_error. Watcher's own probes
and the smoke phase's preview requests are counted apart (`probes`), never as users' requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from watcher.backends.access_log import AccessLog, Served
from watcher.config import AppConfig

#: The receipt starts this long before traffic moves (or before the abort began).
LEAD = 10.0
FAILED = ("5xx", "upstream_error")
#: A request open this long is a stream (SSE, a long poll), not a slow request; a WebSocket (101)
#: is a stream whatever its length.
LONG_LIVED = 10.0


def response_class(served: Served) -> str:
    if served.upstream is None and served.color in ("blue", "green", "fallback") and served.status >= 500:
        return "upstream_error"
    if served.status < 100 or served.status == 499:
        return "cancelled"
    if served.status >= 500 and served.color == "none":
        return "upstream_error"  # no colour was live: nobody could answer
    return f"{min(served.status // 100, 5)}xx"


@dataclass
class Tally:
    """Counts and latencies of some requests (one colour, or one colour in one second)."""

    classes: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    long_lived: int = 0

    def add(self, served: Served) -> None:
        kind = response_class(served)
        self.classes[kind] = self.classes.get(kind, 0) + 1
        self.durations.append(served.duration)
        if served.status == 101 or served.duration >= LONG_LIVED:
            self.long_lived += 1

    @property
    def requests(self) -> int:
        return sum(self.classes.values())

    @property
    def failed(self) -> int:
        return sum(self.classes.get(kind, 0) for kind in FAILED)

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile of the latencies, in ms (None without requests)."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "classes": dict(self.classes),
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
            "long_lived": self.long_lived,
        }


def tally(entries: Iterable[Served], color: str | None = None) -> Tally:
    """Users' requests (probes left out), of one colour or of all."""
    found = Tally()
    for served in entries:
        if not served.probe and (color is None or served.color == color):
            found.add(served)
    return found


@dataclass
class Receipt:
    """The receipt of one engine run. `seconds` rows are offsets from `moved_at`."""

    kind: str  # deploy, rollback, abort
    moved_at: float  # when traffic moved (for an abort that moved nothing: when it began)
    start: float
    end: float
    colors: dict[str, dict[str, Any]]
    seconds: list[dict[str, Any]]
    probes: int
    source: str
    note: str = ""  # why the receipt is partial or missing

    @property
    def requests(self) -> int:
        return sum(c["requests"] for c in self.colors.values())

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.colors.values())

    @property
    def long_lived(self) -> int:
        return sum(c.get("long_lived", 0) for c in self.colors.values())

    def summary(self) -> str:
        """One line for messages: what users were served during this run."""
        if self.note and not self.colors:
            return f"no traffic receipt: {self.note}"
        during = {"deploy": "the swap", "rollback": "the rollback", "abort": "the abort"}.get(
            self.kind, "the swap"
        )
        streams = f", {self.long_lived:,} long-lived" if self.long_lived else ""
        return f"served {self.requests:,} requests during {during}, {self.failed:,} failed{streams}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "moved_at": round(self.moved_at, 3),
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "requests": self.requests,
            "failed": self.failed,
            "colors": self.colors,
            "seconds": self.seconds,
            "probes": self.probes,
            "source": self.source,
            "note": self.note,
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Receipt:
        return cls(
            raw.get("kind", "deploy"),
            float(raw["moved_at"]),
            float(raw["start"]),
            float(raw["end"]),
            dict(raw.get("colors") or {}),
            list(raw.get("seconds") or []),
            int(raw.get("probes", 0)),
            str(raw.get("source", "")),
            str(raw.get("note", "")),
        )


def build(
    kind: str, entries: list[Served], moved_at: float, start: float, end: float, source: str
) -> Receipt:
    """The receipt of `entries` (one app's requests finished in [start, end])."""
    per_color: dict[str, Tally] = {}
    per_second: dict[int, dict[str, Tally]] = {}
    probes = 0
    for served in entries:
        if served.probe or served.color == "preview":  # watcher's own checks and smoke requests
            probes += 1
            continue
        per_color.setdefault(served.color, Tally()).add(served)
        second = math.floor(served.at - moved_at)
        per_second.setdefault(second, {}).setdefault(served.color, Tally()).add(served)
    first, last = math.floor(start - moved_at), math.floor(end - moved_at)
    seconds = [
        {
            "t": second,
            **{
                color: {"requests": t.requests, "failed": t.failed, "p99_ms": t.percentile_ms(99)}
                for color, t in sorted(per_second.get(second, {}).items())
            },
        }
        for second in range(first, last + 1)
    ]
    return Receipt(
        kind,
        moved_at,
        start,
        end,
        {c: t.to_dict() for c, t in sorted(per_color.items())},
        seconds,
        probes,
        source,
    )


def missing(kind: str, moved_at: float, end: float, why: str) -> Receipt:
    """A receipt that could not be read, saying why (an old Caddyfile without the log, say)."""
    return Receipt(kind, moved_at, moved_at - LEAD, end, {}, [], 0, "", why)


def take(config: AppConfig, log: AccessLog | None, kind: str, moved_at: float) -> Receipt:
    """What Caddy served from LEAD before `moved_at` to now. Never fails the run: a log that
    cannot be read makes a receipt that says why."""
    now = time.time()
    if log is None or not log.exists():
        return missing(
            kind,
            moved_at,
            now,
            f"Caddy writes no access log at {config.caddy.access_log} "
            "(regenerate the Caddyfile with `watcher caddyfile`)",
        )
    try:
        served = log.served(config.name, moved_at - LEAD, now)
    except OSError as exc:
        return missing(kind, moved_at, now, f"cannot read {log.path}: {exc.strerror or exc}")
    return build(kind, served, moved_at, moved_at - LEAD, now, str(log.path))
