"""One HTTP GET of a container's health path, from where watcher runs (stdlib only: it runs on
every look at a colour whose images have no shell or HTTP client to run a Docker healthcheck)."""

from __future__ import annotations

import errno
import http.client
import ipaddress
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

#: Seconds to open the connection: a container on a network this host can route to answers (or
#: refuses) in a millisecond; longer means the address cannot be reached from here.
CONNECT_TIMEOUT = 1.0
#: Seconds for the answer once connected.
ANSWER_TIMEOUT = 2.0
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


@dataclass(frozen=True)
class Answer:
    """What one GET saw: an HTTP status, or why there was none."""

    url: str
    status: int | None = None
    problem: str = ""  # "connection refused", "no answer within 2s", "unreachable: ..."

    @property
    def reached(self) -> bool:
        """The address is reachable from here: it answered, refused, or accepted the connection."""
        return not self.problem.startswith("unreachable")

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400

    def __str__(self) -> str:
        return f"GET {self.url}: " + (str(self.status) if self.status is not None else self.problem)


def nearest_first(addresses: tuple[str, ...], routes: Path = Path("/proc/net/route")) -> list[str]:
    """`addresses` with those on a network this host (or watcher's container) is on first: in its
    own container, watcher is on the app's shared network only, and another network's address
    would cost a connection timeout. Unchanged order where the routing table cannot be read."""
    try:
        rows = [line.split() for line in routes.read_text().splitlines()[1:]]
    except OSError:
        return list(addresses)
    linked = [
        ipaddress.ip_network(f"{_ipv4(row[1])}/{_ipv4(row[7])}", strict=False)
        for row in rows
        if len(row) > 7 and row[2] == "00000000" and row[1] != "00000000"
    ]

    def near(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in linked if net.version == ip.version)

    return sorted(addresses, key=lambda a: not near(a))


def _ipv4(hex_text: str) -> str:
    """An address of /proc/net/route (hex, in the host's byte order)."""
    return str(ipaddress.IPv4Address(int(hex_text, 16).to_bytes(4, sys.byteorder)))


def get(address: str, port: int, path: str) -> Answer:
    """GET `path` on `address:port`; never raises for what the network or the server does."""
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{port}{path}"
    try:
        sock = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
    except ConnectionRefusedError:
        return Answer(url, problem="connection refused")
    except TimeoutError:
        return Answer(url, problem=f"unreachable: no connection within {CONNECT_TIMEOUT:g}s")
    except OSError as exc:
        if exc.errno in _UNREACHABLE:
            return Answer(url, problem=f"unreachable: {exc.strerror or exc}")
        return Answer(url, problem=f"connection failed: {exc.strerror or exc}")
    connection = http.client.HTTPConnection(host, port, timeout=ANSWER_TIMEOUT)
    connection.sock = sock
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        connection.request("GET", path, headers={"User-Agent": "watcher-health", "Connection": "close"})
        return Answer(url, status=connection.getresponse().status)
    except TimeoutError:
        return Answer(url, problem=f"no answer within {ANSWER_TIMEOUT:g}s")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(url, problem=f"no answer ({type(exc).__name__})")
    finally:
        connection.close()
