"""The test app: an asyncio HTTP/1.1 server that is never the bottleneck of a test.

It runs inside the test image (tests/harness/images.py `build_app_image`) on the host's own
Python, stdlib only, with its settings in /etc/app/config.json. One process, one event loop:
keep-alive connections, a listen backlog of 1024, thousands of requests per second on one core,
so a failed request in a test is the switch's or the proxy's, never the app's accept queue.

    GET  /version                  the served version ("served_version", else "version")
    GET  /healthz                  200 "ok" while /www/healthz exists, else 404 (tests remove
                                   the file with `docker exec` to make a colour unhealthy)
    GET  /flavor                   the build's flavor, when set
    ANY  /cgi-bin/work[?sleep=S]   reads the body, sleeps S s, answers "<version>\\n"; answers
    ANY  /work[?sleep=S]           500 to a share "error_rate" of requests
    GET  /events[?every=S]         server-sent events: "data: <version>" every S s (default 1)
    GET  /ws                       WebSocket: sends the version, then echoes text frames

Life cycle: "exit_at_start" (exit at once with that code), "start_delay" (seconds before
listening), "healthy" (whether /www/healthz exists at start), "unhealthy_after" (seconds from
start until it is removed), "shutdown": "graceful" (on SIGTERM stop accepting, answer in-flight
requests with `Connection: close`, close idle connections and streams, exit 0 when none is left
or after 15 s) or "abrupt" (exit 143 at once, cutting whatever is in flight).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

CONFIG = "/etc/app/config.json"
HEALTH_FILE = "/www/healthz"
PORT = 8080
BACKLOG = 1024
DRAIN_LIMIT = 15.0
MAX_HEADER = 64 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def log(settings: dict, message: str) -> None:
    print(f"app {settings['version']}: {message}", flush=True)


class App:
    """The settings and the shared state of all connections: in-flight count, draining, streams."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.version = settings["version"]
        self.served_version = settings.get("served_version") or self.version
        self.error_rate = float(settings.get("error_rate") or 0)
        self.connections: set[Connection] = set()
        self.inflight = 0
        self.draining = False
        self.stopped = asyncio.Event()

    def begin_drain(self) -> None:
        """Graceful SIGTERM: idle connections and streams close now, busy ones after their answer."""
        self.draining = True
        for conn in list(self.connections):
            conn.close_if_idle()
        self.check_drained()

    def check_drained(self) -> None:
        if self.draining and self.inflight == 0:
            self.stopped.set()


class Connection(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests and answers them in order."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.stream: asyncio.Task | None = None
        self.websocket = False
        self.continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        if self.stream is not None:
            self.stream.cancel()

    def close_if_idle(self) -> None:
        if self.transport is not None and (not self.busy or self.stream is not None or self.websocket):
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self._websocket_frames()
        elif not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        """Start the next complete request in the buffer, if any (one at a time, in order)."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER:
                self._reply(400, b"header too large\n", close=True)
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, proto = head[0].split(" ", 2)
        except ValueError:
            self._reply(400, b"bad request line\n", close=True)
            return
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self._reply(400, b"bad content-length\n", close=True)
            return
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._reply(400, b"chunked bodies are not supported\n", close=True)
            return
        if len(self.buffer) < end + 4 + length:
            if headers.get("expect", "").lower() == "100-continue" and not self.continued:
                self.continued = True
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return  # the body is still coming
        self.continued = False
        del self.buffer[: end + 4 + length]
        keep = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        self.busy = True
        self.app.inflight += 1
        asyncio.get_running_loop().create_task(self._handle(method, target, headers, keep))

    async def _handle(self, method: str, target: str, headers: dict[str, str], keep: bool) -> None:
        try:
            await self._route(method, target, headers, keep)
        finally:
            self.app.inflight -= 1
            self.app.check_drained()

    async def _route(self, method: str, target: str, headers: dict[str, str], keep: bool) -> None:
        url = urlsplit(target)
        query = parse_qs(url.query)
        if url.path in ("/cgi-bin/work", "/work"):
            await asyncio.sleep(_seconds(query, "sleep", 0))
            if self.app.error_rate and random.random() < self.app.error_rate:
                self._reply(500, b"injected error\n", keep=keep)
            else:
                self._reply(200, f"{self.app.version}\n".encode(), keep=keep)
        elif url.path == "/version":
            self._reply(200, f"{self.app.served_version}\n".encode(), keep=keep)
        elif url.path == "/healthz":
            healthy = os.path.exists(HEALTH_FILE)
            self._reply(200 if healthy else 404, b"ok" if healthy else b"unhealthy\n", keep=keep)
        elif url.path == "/flavor" and self.app.settings.get("flavor") is not None:
            self._reply(200, f"{self.app.settings['flavor']}\n".encode(), keep=keep)
        elif url.path == "/events" and method == "GET":
            self.stream = asyncio.current_task()
            await self._events(_seconds(query, "every", 1.0))
        elif url.path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            self._accept_websocket(headers)
        else:
            self._reply(404, b"not found\n", keep=keep)

    def _reply(
        self,
        status: int,
        body: bytes,
        *,
        keep: bool = True,
        close: bool = False,
        content_type: str = "text/plain",
    ) -> None:
        """Answer with Content-Length; `Connection: close` when the client or a drain asks for it."""
        if self.transport is None or self.transport.is_closing():
            return
        keep = keep and not close and not self.app.draining
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nX-App-Version: {self.app.version}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.busy = False
        if not keep:
            self.transport.close()
        elif self.buffer:
            asyncio.get_running_loop().call_soon(self._next_request)

    async def _events(self, every: float) -> None:
        """An endless SSE stream until the client leaves or the app drains."""
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n"
        )
        self.app.inflight -= 1  # a stream is not an in-flight request: a drain does not wait for it
        try:
            while not self.transport.is_closing():
                self.transport.write(f"data: {self.app.version}\n\n".encode())
                await asyncio.sleep(every)
        finally:
            self.app.inflight += 1  # given back to _handle, which counts it down

    def _accept_websocket(self, headers: dict[str, str]) -> None:
        assert self.transport is not None
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self.websocket = True
        self.busy = False
        self._send_frame(0x1, self.app.version.encode())
        if self.buffer:
            self._websocket_frames()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, size])
        elif size < 65536:
            head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
        self.transport.write(head + payload)

    def _websocket_frames(self) -> None:
        """Answer every complete client frame: text echoed, ping ponged, close closed."""
        while len(self.buffer) >= 2:
            opcode, size, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if size == 126:
                size, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif size == 127:
                size, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            masked = self.buffer[1] & 0x80
            mask = bytes(self.buffer[offset : offset + 4]) if masked else b"\0\0\0\0"
            offset += 4 if masked else 0
            if len(self.buffer) < offset + size:
                return
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buffer[offset : offset + size]))
            del self.buffer[: offset + size]
            if opcode == 0x8:
                self._send_frame(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()
                return
            self._send_frame({0x9: 0xA}.get(opcode, 0x1), payload)


def _seconds(query: dict[str, list[str]], name: str, default: float) -> float:
    try:
        value = float(query[name][0])
    except (KeyError, ValueError):
        return default
    return value if 0 <= value < 3600 else default


async def serve(settings: dict, started: float) -> int:
    """Listen until SIGTERM; then exit as the "shutdown" setting says."""
    app = App(settings)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(app), "0.0.0.0", PORT, backlog=BACKLOG, reuse_address=True
    )
    if settings.get("unhealthy_after") is not None:
        delay = max(0.0, float(settings["unhealthy_after"]) - (time.monotonic() - started))
        loop.call_later(delay, _sicken, settings)

    def on_term() -> None:
        if settings.get("shutdown", "graceful") == "abrupt":
            log(settings, "SIGTERM: exiting now (abrupt)")
            os._exit(143)
        log(
            settings,
            f"SIGTERM: closing the listener, draining {app.inflight} in-flight requests "
            f"(max {DRAIN_LIMIT:g} s)",
        )
        server.close()
        app.begin_drain()
        loop.call_later(DRAIN_LIMIT, _cut, app)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    log(
        settings,
        f"listening on :{PORT} (backlog {BACKLOG}, healthy={os.path.exists(HEALTH_FILE)}, "
        f"shutdown={settings.get('shutdown', 'graceful')})",
    )
    await app.stopped.wait()
    log(settings, "stopped")
    return 0


def _cut(app: App) -> None:
    log(app.settings, f"drain timeout, {app.inflight} in-flight requests are cut")
    app.stopped.set()


def _sicken(settings: dict) -> None:
    try:
        os.remove(HEALTH_FILE)
    except FileNotFoundError:
        pass
    log(settings, "now unhealthy")


def main() -> int:
    started = time.monotonic()
    with open(CONFIG, encoding="utf-8") as f:
        settings = json.load(f)
    if settings.get("exit_at_start") is not None:
        log(settings, f"exiting {settings['exit_at_start']} at start (crash)")
        return int(settings["exit_at_start"])
    if settings.get("healthy", True):
        with open(HEALTH_FILE, "w", encoding="utf-8") as f:
            f.write("ok")
    elif os.path.exists(HEALTH_FILE):
        os.remove(HEALTH_FILE)
    if settings.get("start_delay"):
        log(settings, f"sleeping {settings['start_delay']:g} s before listening")
        time.sleep(float(settings["start_delay"]))
    # A SIGTERM before the loop runs (during the start delay) finds nothing to drain.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143 if settings.get("shutdown") == "abrupt" else 0))
    return asyncio.run(serve(settings, started))


if __name__ == "__main__":
    sys.exit(main())
