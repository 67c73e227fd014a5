"""THE traffic switch: where a deploy, a rollback or an abort moves traffic between colours.

Mechanism. Caddy's route reads the live colour from a file through the `{file.*}` placeholder on
every request (see the Caddyfile). Switching is an atomic rename of that one file, so:
- no Caddy config change happens, so Caddy never closes a client's idle keep-alive connection
  (a config reload does, and a non-retried POST on such a connection fails);
- a request reads the file once, when it is routed: requests in flight finish on the colour
  they started on, new ones go to the new colour from the next request on;
- if watcher dies, the file stays as it was: traffic keeps flowing to the last colour switched
  to, and Caddy's health checks fall back to the other colour if that one dies.
"""

from __future__ import annotations

from pathlib import Path

from watcher.engine.atomic import write_atomic
from watcher.engine.color import Color


class TrafficSwitch:
    """Reads and flips the live-colour file Caddy routes by."""

    def __init__(self, route_file: Path) -> None:
        self.route_file = route_file

    def current(self) -> Color | None:
        """The colour Caddy routes to first, or None before the first switch."""
        try:
            text = self.route_file.read_text().strip()
        except FileNotFoundError:
            return None
        # Exactly what Caddy's matcher compares: "GREEN" is not green to Caddy, so not to us.
        return next((c for c in Color if c.value == text), None)

    def route_to(self, color: Color) -> None:
        """Send every new request to `color`, atomically."""
        write_atomic(self.route_file, color.value)

    def clear(self) -> None:
        """Forget the live colour (used by reset, when no colour is left to serve)."""
        self.route_file.unlink(missing_ok=True)
