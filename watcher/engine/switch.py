"""THE traffic switch: the one place where a deploy, a rollback or an abort moves traffic.

Mechanism. Caddy's route reads the live colour from a file through the `{file.*}` placeholder on
every request (see the Caddyfile) and proxies to that colour alone. Switching is an atomic rename
of that one file, so:
- no Caddy config change happens, so Caddy never closes a client's idle keep-alive connection
  (a config reload does, and a non-retried POST on such a connection fails);
- a request reads the file once, when it is routed: requests in flight finish on the colour
  they started on, new ones go to the new colour from the next request on;
- if watcher dies, the file stays as it was: traffic keeps flowing to the last colour switched to.

The rule every move obeys: traffic only ever moves to a colour whose containers are healthy at
that moment (`move_to` asks the platform itself, right before the rename). The file may also say
`none` (nothing is live yet, or after `reset`): Caddy then answers 503 rather than proxy to a
colour nobody verified.
"""

from __future__ import annotations

from pathlib import Path

from watcher.atomic import write_atomic
from watcher.errors import DeployFailed
from watcher.platforms.base import ColorStack
from watcher.platforms.color import Color

CLOSED = "none"


class TargetNotHealthy(DeployFailed):
    """Traffic was about to move to a colour that is not healthy: nothing was switched."""


class TrafficSwitch:
    """Reads and flips the live-colour file Caddy routes by."""

    def __init__(self, route_file: Path) -> None:
        self.route_file = route_file

    def _read(self) -> str | None:
        try:
            return self.route_file.read_text().strip()
        except FileNotFoundError:
            return None

    def current(self) -> Color | None:
        """The colour Caddy routes to, or None (no file, `none`, or text Caddy would not match)."""
        text = self._read()
        # Exactly what Caddy's matcher compares: "GREEN" is not green to Caddy, so not to us.
        return next((c for c in Color if c.value == text), None)

    def closed(self) -> bool:
        """True when the file says deliberately that nothing is live."""
        return self._read() == CLOSED

    def move_to(self, stack: ColorStack) -> None:
        """Send every new request to `stack`'s colour, atomically, if it is healthy right now."""
        health = stack.health()
        if not health.healthy:
            raise TargetNotHealthy(f"not switching traffic to {stack.color}: it is {health}")
        write_atomic(self.route_file, stack.color.value)

    def close(self) -> None:
        """Nothing is live: Caddy answers 503 (before a first deploy, and after `reset`)."""
        write_atomic(self.route_file, CLOSED)
