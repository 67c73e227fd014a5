"""Caddy's JSON access log: what Caddy itself served, one line per request, as traffic receipts
and the bake read it. Never a probe of ours: these are the requests users sent.

`watcher caddyfile` gives every site a `log` writing `<run dir>/access.log` (Caddy rolls it at
`ROLL_SIZE`) and tags each request of an app with `log_append`: `watcher_app`, `watcher_color`
(the colour block that proxied it: blue, green, none, fallback), `watcher_upstream` (the status
the app answered; null when Caddy got no answer: an upstream error) and `watcher_own` ("1" on
watcher's own verification requests, so they are told apart from users' traffic: Caddy sets it
only when the request's `X-Watcher-Probe` equals the secret in the app's probe file, so a client
sending the header is counted as what it is, a user). The log holds no request header, URI or
address, and so no secret: it may be read by others (mode 0644).

Lines are in the order Caddy finished the requests (`ts` is that moment); a window of time is
found by bisecting the file on `ts`, so reading the minutes before a switch costs the same in
a 100 MB log as in a small one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

FILE_NAME = "access.log"
ROLL_SIZE_MB = 100
ROLL_KEEP = 3
#: Lines are written when requests finish, by many goroutines: `ts` is in order only to within a
#: moment. A bisection lands this much early, and the lines are then filtered on `ts` exactly.
DISORDER = 2.0
#: The header watcher's own requests carry (engine/verification.py), and the field Caddy logs
#: when its value is the probe file's secret (caddyfile.py).
PROBE_HEADER = "X-Watcher-Probe"
PROBE_FIELD = "watcher_own"


@dataclass(frozen=True)
class Served:
    """One request Caddy finished."""

    at: float  # when Caddy finished it (Unix seconds)
    color: str  # the colour block that took it: blue, green, none, fallback
    status: int  # what the client got (0: the client went away first)
    upstream: int | None  # what the app answered; None when Caddy got no answer
    duration: float  # seconds, as Caddy measured it
    probe: bool  # one of watcher's own verification requests, as Caddy checked its secret


class AccessLog:
    """The access log file (and the files Caddy rolled it into), read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    def served(self, app: str, since: float, until: float) -> list[Served]:
        """`app`'s requests finished in [since, until), oldest first."""
        marker = f'"watcher_app":"{app}"'.encode()
        found: list[Served] = []
        for path in self._files(since):
            try:
                with path.open("rb") as log:
                    log.seek(_offset_of(log, since - DISORDER))
                    for line in log:
                        if marker not in line:
                            continue
                        entry = _parse(line)
                        if entry is None or entry.at < since:
                            continue
                        if entry.at >= until:
                            if entry.at > until + DISORDER:
                                break
                            continue
                        found.append(entry)
            except FileNotFoundError:  # rolled away and deleted while we read: its time is past
                continue
        found.sort(key=lambda entry: entry.at)
        return found

    def _files(self, since: float) -> Iterator[Path]:
        """The rolled files that may hold lines after `since` (oldest first), then the current one."""
        rolled = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"), key=_mtime)
        yield from (path for path in rolled if _mtime(path) >= since)
        if self.path.exists():
            yield self.path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _offset_of(log: BinaryIO, stamp: float) -> int:
    """The offset of a line start at or before the first line finished at `stamp` or later."""
    low, high = 0, log.seek(0, os.SEEK_END)
    while high - low > 4096:
        middle = (low + high) // 2
        log.seek(middle)
        log.readline()  # to the next line start
        line = log.readline()
        entry = _stamp(line)
        if entry is None or entry >= stamp:
            high = middle
        else:
            low = middle
    if low:
        log.seek(low)
        log.readline()
        return log.tell()
    return 0


def _stamp(line: bytes) -> float | None:
    try:
        return float(json.loads(line)["ts"])
    except (ValueError, KeyError, TypeError):
        return None


def _parse(line: bytes) -> Served | None:
    """A line of ours, or None (another logger's, or torn by a roll)."""
    try:
        raw = json.loads(line)
        upstream = raw.get("watcher_upstream")
        return Served(
            at=float(raw["ts"]),
            color=str(raw.get("watcher_color") or "unknown"),
            status=int(raw.get("status") or 0),
            upstream=int(upstream) if isinstance(upstream, (int, float)) and upstream else None,
            duration=float(raw.get("duration") or 0.0),
            probe=raw.get(PROBE_FIELD) == "1",
        )
    except (ValueError, KeyError, TypeError):
        return None
