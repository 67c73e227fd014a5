"""Draining: waiting until Caddy has no request in flight on the old colour.

Not a sleep: after the switch no new request is routed to the old colour, so the count Caddy
reports for its upstreams only falls; we stop the old colour when it reaches zero (seen twice,
to step over a request caught between routing and counting) or DRAIN_TIMEOUT passes.
"""

from __future__ import annotations

import time

from watcher.backends.caddy import CaddyAdmin, CaddyUnavailable
from watcher.engine.progress import Progress


def wait_drained(admin: CaddyAdmin, upstreams: list[str], *, timeout: float, progress: Progress) -> bool:
    """True when drained; False when the timeout passed with requests still in flight."""
    started = time.monotonic()
    zero_seen = 0
    while True:
        elapsed = time.monotonic() - started
        try:
            in_flight = admin.in_flight(upstreams)
        except CaddyUnavailable as exc:
            # Without counts, the safe fallback is the whole drain window.
            progress.say(f"  warning: {exc}; waiting the full drain timeout instead")
            time.sleep(max(0.0, timeout - elapsed))
            return False
        zero_seen = zero_seen + 1 if in_flight == 0 else 0
        if zero_seen >= 2:
            return True
        if elapsed >= timeout:
            progress.say(f"  {in_flight} request(s) still in flight after {timeout:.0f}s (DRAIN_TIMEOUT)")
            return False
        progress.waiting(f"{in_flight} request(s) in flight on {', '.join(upstreams)}", elapsed, timeout, every=2.0)
        time.sleep(0.1)
