"""Caddy's admin API, read-only: in-flight request counts per upstream; and whether Caddy
serves at all (`probe`).

watcher never changes Caddy's config to switch traffic (see engine/switch.py); it only asks
how many requests each upstream still has in flight, to know when a colour has drained.
The admin API is reached over a unix socket (default) or loopback TCP, never a public address.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx

from watcher.errors import WatcherError


class CaddyUnavailable(WatcherError):
    """The admin API did not answer."""


class CaddyAdmin:
    def __init__(self, admin: str, timeout: float = 5.0) -> None:
        if admin.startswith("unix://"):
            self.where = admin
            transport = httpx.HTTPTransport(uds=admin[len("unix://") :])
            # Caddy checks Host against its admin origins; over a unix socket any host is fine.
            self._client = httpx.Client(
                transport=transport, base_url="http://localhost", timeout=timeout, trust_env=False
            )
        else:
            self.where = admin
            self._client = httpx.Client(base_url=admin, timeout=timeout, trust_env=False)

    def upstreams(self) -> dict[str, int]:
        """Every upstream address Caddy knows, with its requests in flight. A dynamic upstream
        (Swarm's tasks) may be listed more than once: its counts add up (a drain waits longer,
        never shorter)."""
        try:
            response = self._client.get("/reverse_proxy/upstreams")
            response.raise_for_status()
            counts: dict[str, int] = {}
            for upstream in response.json():
                counts[upstream["address"]] = counts.get(upstream["address"], 0) + int(
                    upstream.get("num_requests", 0)
                )
            return counts
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise CaddyUnavailable(f"Caddy admin API at {self.where} did not answer: {exc}") from exc

    def in_flight(self, addresses: list[str]) -> int:
        """Requests in flight on any of `addresses` (an address Caddy has not seen counts 0)."""
        counts = self.upstreams()
        return sum(counts.get(address, 0) for address in addresses)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Front:
    """Caddy, seen from here: `up` when its site takes connections (down: nothing is served,
    whatever the colours' health), `admin` when its admin API answers (drains count on it)."""

    site: str  # host:port of the app's verify URL, where Caddy listens for the app
    site_problem: str  # why nothing took a connection there ("" when something did)
    admin_problem: str  # why the admin API did not answer ("" when it did)

    @property
    def up(self) -> bool:
        return not self.site_problem

    @property
    def admin(self) -> bool:
        return not self.admin_problem

    def to_dict(self) -> dict[str, object]:
        return {
            "up": self.up,
            "site": self.site,
            "site_problem": self.site_problem or None,
            "admin": self.admin,
            "admin_problem": self.admin_problem or None,
        }


def probe(admin: str, url: str, timeout: float = 2.0) -> Front:
    """Connect to `url`'s host and port (no request: Caddy logs nothing, no receipt counts it)
    and ask the admin API at `admin` for its upstreams."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    site = f"{parsed.host}:{port}"
    try:
        with socket.create_connection((parsed.host, port), timeout=timeout):
            site_problem = ""
    except OSError as exc:
        site_problem = exc.strerror or str(exc) or type(exc).__name__
    caddy = CaddyAdmin(admin, timeout=timeout)
    try:
        caddy.upstreams()
        admin_problem = ""
    except CaddyUnavailable as exc:
        admin_problem = str(exc)
    finally:
        caddy.close()
    return Front(site, site_problem, admin_problem)
