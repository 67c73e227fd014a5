"""Draining: waiting until Caddy has no request in flight on the old colour.

Not a sleep: after the switch no new request is routed to the old colour, so the count Caddy
reports for its upstreams only falls; we stop the old colour when it has stayed at zero for
QUIET seconds or DRAIN_TIMEOUT passes. The quiet period steps over a request caught between
routing (Caddy read the route file before the switch) and counting (Caddy counts it when it
dials): on a loaded host that gap is not bounded by a poll interval.
"""

from __future__ import annotations

import time

from watcher.backends.caddy import CaddyAdmin, CaddyUnavailable
from watcher.progress import Progress

QUIET = 1.0  # seconds the old colour must show no request in flight


def wait_drained(admin: CaddyAdmin, upstreams: list[str], *, timeout: float, progress: Progress) -> bool:
    """True when drained; False when the timeout passed with requests still in flight."""
    started = time.monotonic()
    zero_since: float | None = None
    while True:
        now = time.monotonic()
        elapsed = now - started
        try:
            in_flight = admin.in_flight(upstreams)
        except CaddyUnavailable as exc:
            # Without counts, the safe fallback is the whole drain window.
            progress.say(f"  warning: {exc}; waiting the full drain timeout instead")
            time.sleep(max(0.0, timeout - elapsed))
            return False
        zero_since = (zero_since or now) if in_flight == 0 else None
        if zero_since is not None and now - zero_since >= QUIET:
            return True
        if elapsed >= timeout:
            if in_flight == 0:  # a DRAIN_TIMEOUT shorter than QUIET: zero now is all we can know
                return True
            progress.say(f"  {in_flight} request(s) still in flight after {timeout:.0f}s (DRAIN_TIMEOUT)")
            return False
        progress.waiting(
            f"{in_flight} request(s) in flight on {', '.join(upstreams)}", elapsed, timeout, every=2.0
        )
        time.sleep(0.1)
