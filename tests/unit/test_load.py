"""Tests for the strict load generator against tiny local HTTP/1.1 servers on 127.0.0.1.

Why: the generator is the ruler for watcher's zero-failure promise, so it must count a request that
died on a closed keep-alive connection as failed, never resend it, and never invent failures itself.
Every server here counts what it accepted and received, so the client's figures can be checked from
the other side of the wire.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.load import (
    CLOSED_BEFORE_RESPONSE,
    LoadGenerator,
    LoadResult,
    run_load,
)

REPO = Path(__file__).resolve().parents[2]


class Server:
    """Minimal keep-alive HTTP/1.1 server on its own loop thread, with knobs for misbehaviour."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        status: Callable[[int], int] = lambda n: 200,
        body: bytes = b"v1\n",
        connection_close: bool = False,
        chunked: bool = False,
        color: Callable[[int], str | None] = lambda n: None,
    ) -> None:
        self.delay = delay
        self.color = color  # request number -> X-Watcher-Color value (None: no header)
        self.status = status
        self.body = body
        self.connection_close = connection_close
        self.chunked = chunked
        self.accepted = 0
        self.received = 0  # complete requests read, answered or not
        self.dropped = 0  # requests read and then closed on without a response
        self.closed_idle = 0
        self.statuses: dict[int, int] = {}
        self._drop_next: set[int] = set()
        self._conns: dict[int, tuple[asyncio.StreamWriter, dict[str, bool]]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        srv = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = srv.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        srv.close()
        for writer, _ in list(self._conns.values()):
            writer.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, asyncio.sleep(0), return_exceptions=True))
        self._loop.close()

    def call(self, fn: Callable[[], None]) -> None:
        """Run fn on the server loop and wait for it: no races with the handlers."""

        async def go() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(go(), self._loop).result(5)

    def drop_next_request_on_every_connection(self) -> int:
        """Each open connection reads its next request and closes without answering."""
        marked: list[int] = []

        def go() -> None:
            self._drop_next.update(self._conns)
            marked.append(len(self._conns))

        self.call(go)
        return marked[0]

    def close_idle_connections(self) -> None:
        """What Caddy does on a config change: close idle keep-alive connections, and make busy ones
        answer with ``Connection: close``."""

        def go() -> None:
            for writer, state in self._conns.values():
                if state["idle"]:
                    self.closed_idle += 1
                    state["closed"] = True  # bytes already buffered are discarded, as by a real close
                    writer.close()
                else:
                    state["close"] = True

        self.call(go)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        cid = self.accepted
        state = {"idle": True, "close": False, "closed": False}
        self._conns[cid] = (writer, state)
        try:
            while True:
                state["idle"] = True
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if state["closed"]:
                    return
                state["idle"] = False
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                self.received += 1
                n = self.received
                if cid in self._drop_next:
                    self._drop_next.discard(cid)
                    self.dropped += 1
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                status = self.status(n)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                close = self.connection_close or state["close"]
                hdrs = f"HTTP/1.1 {status} X\r\n"
                color = self.color(n)
                if color is not None:
                    hdrs += f"X-Watcher-Color: {color}\r\n"
                if self.chunked:
                    mid = len(self.body) // 2
                    payload = (
                        b"".join(
                            b"%x\r\n%s\r\n" % (len(part), part)
                            for part in (self.body[:mid], self.body[mid:])
                            if part
                        )
                        + b"0\r\nX-Trailer: 1\r\n\r\n"
                    )
                    hdrs += "Transfer-Encoding: chunked\r\n"
                else:
                    payload = self.body
                    hdrs += f"Content-Length: {len(payload)}\r\n"
                if close:
                    hdrs += "Connection: close\r\n"
                writer.write(hdrs.encode() + b"\r\n" + payload)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.CancelledError):  # cancelled only at server shutdown
            return
        finally:
            self._conns.pop(cid, None)
            writer.close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


def assert_consistent(r: LoadResult) -> None:
    assert r.in_flight == 0
    assert r.sent == r.ok + r.failed
    assert sum(r.errors.values()) == r.failed


# (1) ------------------------------------------------------------------------------------------


def test_healthy_keepalive_server_no_failures_and_connections_reused(server: Server) -> None:
    r = run_load(server.url, rate=100, duration=2.0, connections=8)
    assert_consistent(r)
    assert r.failed == 0, r.errors
    assert 195 <= r.sent <= 203
    assert server.received == r.sent
    assert server.accepted <= 8  # kept alive: one TCP connection per slot, not per request
    assert r.versions == {"v1": r.sent}
    assert r.last_versions == ["v1"] * 20
    assert r.p99() < 200
    assert 1.9 <= r.duration_s <= 2.3


def test_context_manager_snapshot_and_get(server: Server) -> None:
    with LoadGenerator(server.url, rate=50, method="GET", connections=4) as gen:
        time.sleep(0.5)
        snap = gen.snapshot()
        assert snap.sent >= 20 and snap.failed == 0
        time.sleep(0.3)
    r = gen.result
    assert r is not None and r.sent > snap.sent and r.failed == 0
    assert gen.stop() is r  # idempotent
    assert_consistent(r)


# (2) ------------------------------------------------------------------------------------------


def test_request_dropped_on_kept_alive_connection_is_failed_not_retried(server: Server) -> None:
    with LoadGenerator(server.url, rate=100, connections=8) as gen:
        time.sleep(0.6)  # all 8 slots connected and idle between requests
        k = server.drop_next_request_on_every_connection()
        time.sleep(0.8)
    r = gen.result
    assert r is not None
    assert_consistent(r)
    assert k == 8 and server.dropped == 8
    assert r.failed == 8
    assert r.errors == {CLOSED_BEFORE_RESPONSE: 8}
    assert server.received == r.sent  # no request was sent twice
    assert server.accepted == 8 + 8  # each failed slot reconnected once, for its next request


def test_idle_connections_closed_by_server_fail_next_request_once(server: Server) -> None:
    """The Caddy config-change case: idle keep-alive connections are closed under the client."""
    with LoadGenerator(server.url, rate=100, connections=8) as gen:
        time.sleep(0.6)
        server.close_idle_connections()
        time.sleep(0.8)
    r = gen.result
    assert r is not None
    assert_consistent(r)
    assert 1 <= server.closed_idle <= 8
    assert r.failed == server.closed_idle  # one failed request per closed connection, no more
    assert all(e.startswith(CLOSED_BEFORE_RESPONSE) or e.endswith("Error") for e in r.errors), r.errors
    assert server.received == r.sent - r.failed  # the failed ones never reached the app: not resent


# (3) ------------------------------------------------------------------------------------------


def test_5xx_and_4xx_are_failures_recorded_by_status() -> None:
    codes = {0: 502, 1: 404}
    with Server(status=lambda n: codes.get(n % 5, 200)) as s:
        r = run_load(s.url, rate=100, duration=1.0, connections=4)
    assert_consistent(r)
    assert r.errors == {"status 502": s.statuses[502], "status 404": s.statuses[404]}
    assert r.failed == s.statuses[502] + s.statuses[404] and r.ok == s.statuses[200]
    assert s.received == r.sent
    assert r.versions == {"v1": r.ok}  # error bodies are not versions
    assert s.accepted <= 4 + r.failed  # a connection is dropped only after a failure
    assert len(r.latencies_ms) == r.sent  # 502s are complete responses: their latency counts


# colours ---------------------------------------------------------------------------------------


def test_responses_counted_by_colour_header_errors_included_and_none_as_empty() -> None:
    """Every complete response counts under its X-Watcher-Color value ("" without one), errors too:
    a 502 Caddy made up itself carries no colour."""
    colors = {0: "blue", 1: "green", 2: None}
    codes = {3: 502}
    with Server(color=lambda n: colors.get(n % 4, "blue"), status=lambda n: codes.get(n % 4, 200)) as s:
        t0 = time.monotonic()
        r = run_load(s.url, rate=100, duration=1.0, connections=4)
    assert_consistent(r)
    assert sum(r.colors.values()) == len(r.latencies_ms) == r.sent
    expect = {"blue": 0, "green": 0, "": 0}
    for n in range(1, s.received + 1):
        expect[colors.get(n % 4, "blue") or ""] += 1
    assert r.colors == {k: v for k, v in expect.items() if v}
    assert r.failed == s.statuses[502] and r.colors["blue"] > r.failed  # the 502s came back "blue" here
    assert set(r.colors_first_at) == set(r.colors)
    assert all(t0 <= t <= time.monotonic() for t in r.colors_first_at.values())
    # Request 1 answered green, request 3 (a 502) blue: 20 ms apart in schedule.
    assert r.colors_first_at["green"] < r.colors_first_at[""] < r.colors_first_at["blue"]
    d = r.as_dict()
    assert d["colors"] == dict(r.colors)
    json.dumps(d)


def test_per_second_timeline_adds_up_to_the_totals() -> None:
    """The per-second counters (for plots of a deploy under load) hold every outcome once, in the
    second since the first scheduled request it was recorded in, colours as in `colors`."""
    with Server(
        color=lambda n: "green" if n % 2 else "blue", status=lambda n: 502 if n % 5 == 0 else 200
    ) as s:
        before = time.monotonic()
        r = run_load(s.url, rate=100, duration=2.5, connections=4)
    assert_consistent(r)
    assert r.started_at is not None and before <= r.started_at <= before + 1
    assert sum(r.ok_per_second.values()) == r.ok and sum(r.failed_per_second.values()) == r.failed > 0
    rows = r.timeline()
    assert [row["second"] for row in rows] == list(range(len(rows))) and len(rows) >= 3  # 2.5 s of load
    per_color: dict[str, int] = {}
    for row in rows:
        for color, count in row["colors"].items():
            per_color[color] = per_color.get(color, 0) + count
    assert per_color == dict(r.colors)
    json.dumps(rows)


def test_no_colour_header_counts_as_empty(server: Server) -> None:
    r = run_load(server.url, rate=50, duration=0.5, connections=2)
    assert r.colors == {"": r.sent} and r.failed == 0


# (4) ------------------------------------------------------------------------------------------


def test_slow_responses_with_enough_connections() -> None:
    with Server(delay=1.0) as s:
        r = run_load(s.url, rate=40, duration=2.0, connections=64)
    assert_consistent(r)
    assert r.failed == 0, r.errors
    assert 78 <= r.sent <= 82
    assert 1000 <= r.p50() <= 1100
    assert s.accepted <= 64


def test_queue_wait_counts_in_latency() -> None:
    """Open loop: with too few connections requests queue, and latency is from the scheduled time."""
    with Server(delay=0.1) as s:
        r = run_load(s.url, rate=20, duration=1.0, connections=1)  # demand 2 s of work in 1 s
    assert_consistent(r)
    assert r.failed == 0 and s.accepted == 1
    assert r.sent >= 19
    assert max(r.latencies_ms) > 800  # the last one waited behind ~10 others


# (5) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://10.0.0.1:8080/",
        "http://192.168.1.10/",
        "https://127.0.0.1/",
        "ftp://localhost/",
    ],
)
def test_non_loopback_or_non_http_url_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        LoadGenerator(url, rate=10)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "http://localhost/x", "http://[::1]:8080/"])
def test_loopback_urls_accepted(url: str) -> None:
    LoadGenerator(url, rate=10)


# protocol details and bounds -------------------------------------------------------------------


def test_connection_close_honoured_by_reconnecting_for_next_request() -> None:
    with Server(connection_close=True, chunked=True, body=b"v2-chunked\n") as s:
        r = run_load(s.url, rate=50, duration=1.0, connections=2)
    assert_consistent(r)
    assert r.failed == 0, r.errors
    assert s.accepted == r.sent == s.received
    assert r.versions == {"v2-chunked": r.sent}


def test_refused_connection_is_a_connect_error() -> None:
    with Server() as s:
        port = s.port
    r = run_load(f"http://127.0.0.1:{port}/", rate=20, duration=0.5, connections=2)
    assert_consistent(r)
    assert r.ok == 0 and r.failed == r.sent > 0
    assert set(r.errors) == {"connect error: ConnectionRefusedError"}


def test_timeout_and_stop_is_bounded() -> None:
    with Server(delay=30.0) as s:
        gen = LoadGenerator(s.url, rate=20, connections=4, timeout=0.5).start()
        time.sleep(0.5)
        t = time.monotonic()
        r = gen.stop()
        took = time.monotonic() - t
    assert took < 0.5 + 5
    assert_consistent(r)
    assert r.ok == 0 and r.errors["timeout"] == r.sent
    assert s.accepted == s.received <= r.sent  # a timed-out connection is discarded, never reused


def test_cli_json(server: Server) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.harness.load",
            server.url,
            "--rate",
            "50",
            "--duration",
            "0.5",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["failed"] == 0 and d["sent"] == server.received and d["versions"] == {"v1": d["sent"]}


def test_cli_rejects_remote_url() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.harness.load", "http://example.com/", "--duration", "0.1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2 and "non-loopback" in out.stderr


# CPU -------------------------------------------------------------------------------------------

_SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                n = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                await reader.readexactly(n)
                writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nv1\\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
    """
)


def test_cpu_at_200_per_second_is_modest() -> None:
    """The generator must not be the bottleneck; the server runs in another process so that
    ``time.process_time`` here is the generator's own cost."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        cpu0, wall0 = time.process_time(), time.monotonic()
        r = run_load(f"http://127.0.0.1:{port}/", rate=200, duration=3.0)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
    share = cpu / wall
    print(f"\nload generator CPU at 200 req/s: {cpu:.3f} s over {wall:.2f} s = {share:.1%} of one core")
    if os.environ.get("LOAD_CPU_REPORT"):
        Path(os.environ["LOAD_CPU_REPORT"]).write_text(f"{share:.4f}\n")
    assert r.failed == 0 and 595 <= r.sent <= 605
    assert share < 0.30
