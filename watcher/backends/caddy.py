"""Caddy's admin API, read-only: in-flight request counts per upstream.

watcher never changes Caddy's config to switch traffic (see engine/switch.py); it only asks
how many requests each upstream still has in flight, to know when a colour has drained.
The admin API is reached over a unix socket (default) or loopback TCP, never a public address.
"""

from __future__ import annotations

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
        """Every upstream address Caddy knows, with its requests in flight."""
        try:
            response = self._client.get("/reverse_proxy/upstreams")
            response.raise_for_status()
            return {u["address"]: int(u.get("num_requests", 0)) for u in response.json()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise CaddyUnavailable(f"Caddy admin API at {self.where} did not answer: {exc}") from exc

    def in_flight(self, addresses: list[str]) -> int:
        """Requests in flight on any of `addresses` (an address Caddy has not seen counts 0)."""
        counts = self.upstreams()
        return sum(counts.get(address, 0) for address in addresses)

    def close(self) -> None:
        self._client.close()
