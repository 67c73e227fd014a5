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
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.harness.local_server import LocalServer, Received, answer, received


class Receiver(LocalServer):
    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.requests: list[Received] = []
        self.mode = "ok"  # ok | hang | fail
        self._changed = threading.Condition()

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        self.record(received(request, method))
        if self.mode == "hang":
            self.released.wait(120)
            return
        answer(request, 500 if self.mode == "fail" else 200, {})

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
                    raise AssertionError(
                        f"{len(self.requests)} requests within {timeout:g}s, expected {count}: "
                        f"{[r.body for r in self.requests]}"
                    )
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


class Recorder(Receiver):
    """A receiver that also appends each request, as one JSON line, to a file: for a receiver
    in another network namespace (a swarm node's), which the test reads through the file."""

    def __init__(self, port: int, out: Path) -> None:
        super().__init__(port)
        self.out = out

    def record(self, request: Received) -> None:
        super().record(request)
        with self.out.open("a") as f:
            f.write(json.dumps(asdict(request)) + "\n")


def main(argv: list[str]) -> int:
    """`python -m tests.harness.receiver PORT FILE`: record until killed."""
    with Recorder(int(argv[0]), Path(argv[1])) as recorder:
        recorder.released.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
