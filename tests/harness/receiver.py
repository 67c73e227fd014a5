"""A real HTTP endpoint for notifications: a threaded http.server on 127.0.0.1 that records
every request (method, path, headers, JSON body, arrival time) and answers 200, or is told to
hang (accept and never answer) or to fail (500). `down_url` is a port nothing listens on.

    with Receiver() as receiver:
        url = receiver.apprise_url("/hook")      # json://127.0.0.1:PORT/hook
        ...
        receiver.wait_for(2)                      # the first two requests, or AssertionError
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float          # time.time() when it arrived


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.mode = "ok"               # ok | hang | fail
        self._changed = threading.Condition()
        self._release = threading.Event()   # set at stop: a hanging handler returns
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                receiver.record(Received("POST", self.path, dict(self.headers), body, time.time()))
                if receiver.mode == "hang":
                    receiver._release.wait(120)
                    return
                code = 500 if receiver.mode == "fail" else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def record(self, request: Received) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def apprise_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} requests within {timeout:g}s, expected {count}: "
                                         f"{[r.body for r in self.requests]}")
                self._changed.wait(left)
            return list(self.requests[:count])

    def clear(self) -> None:
        with self._changed:
            self.requests.clear()


def down_url(path: str = "/hook") -> str:
    """An apprise URL to a port that was free a moment ago: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"json://127.0.0.1:{port}{path}"
