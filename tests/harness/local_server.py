"""A threaded http.server on 127.0.0.1 for the test stand-ins of outside services (the
notification receiver, the GitHub contract server): each request goes to the owner's
`handle(request, method)`, read with `received`; leaving the `with` releases any handler told
to hang, so a test never waits on its own server.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Received:
    method: str
    path: str  # without the query
    headers: dict[str, str]
    body: Any  # the JSON body, the text of one that is not JSON, or None
    at: float  # time.time() when it arrived


def received(request: BaseHTTPRequestHandler, method: str) -> Received:
    length = int(request.headers.get("Content-Length") or 0)
    raw = request.rfile.read(length) if length else b""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Received(method, urlsplit(request.path).path, dict(request.headers), body, time.time())


def answer(request: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    request.send_response(code)
    request.send_header("Content-Type", "application/json; charset=utf-8")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


class LocalServer:
    def __init__(self, port: int = 0) -> None:
        self.released = threading.Event()  # set at stop: a hanging handler returns
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner.handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                owner.handle(self, "POST")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
