"""Constant-rate (open-loop) HTTP/1.1 keep-alive load generator that never retries.

Why hand-written: watcher promises zero failed requests during a blue-green swap, and the failures
that matter (field notes §1) happen when the proxy closes an idle keep-alive connection just as a
client sends its next request on it. Stock clients (urllib3, httpx, browsers, curl) quietly reconnect
and resend in that case, which hides exactly the failure we must measure. This client writes each
request once, on a persistent connection, and counts anything short of a complete, non-error
response as failed.

Why open-loop: a closed-loop client slows down when the server stalls, so a swap that stalls traffic
looks harmless. Here requests are scheduled every 1/rate seconds whatever happens, and latency is
measured from each request's *scheduled* time, so queueing behind a stall shows up.

Stdlib only. Run it as ``python -m tests.harness.load URL --rate 200 --duration 10 [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["COLOR_HEADER", "LOOPBACK_HOSTS", "LoadGenerator", "LoadResult", "run_load", "main"]

#: Only these hosts may be loaded: the generator is a test tool, never a way to hit someone else.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

CLOSED_BEFORE_RESPONSE = "connection closed before response"
CLOSED_WHILE_IDLE = "connection closed before response (closed while idle)"
CLOSED_MID_RESPONSE = "connection closed mid-response"
CANCELLED_AT_STOP = "cancelled at stop"

#: The response header Caddy sets to the colour whose app served the response (header_down).
COLOR_HEADER = "x-watcher-color"

_LAST_N = 20  # how many recent ok bodies to keep: enough to see which colour answers now
_VERSION_MAX = 200  # cap stored bodies so a large page cannot bloat the counters
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


@dataclass
class LoadResult:
    """What a run saw. ``sent == ok + failed + in_flight``; after ``stop()`` ``in_flight`` is 0."""

    sent: int = 0  # requests scheduled (each is attempted exactly once, never retried)
    ok: int = 0  # complete response with status < 400
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)  # complete responses, from scheduled time
    versions: collections.Counter[str] = field(default_factory=collections.Counter)  # 2xx bodies
    last_versions: list[str] = field(default_factory=list)  # bodies of the last 20 ok responses
    # Complete responses (any status) by their X-Watcher-Color header; "" when it is absent.
    colors: collections.Counter[str] = field(default_factory=collections.Counter)
    # time.monotonic() at which the first complete response of each colour (same keys) arrived.
    colors_first_at: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0  # from the first scheduled request to stop (or now, for a snapshot)
    in_flight: int = 0
    # time.monotonic() of the first scheduled request: second 0 of the per-second counters below.
    started_at: float | None = None
    # Outcomes per whole second since `started_at`, by when each was recorded: a plot of the rate of
    # answers and failures over time (benchmarks/deploy_plot.py) lines these up with a deploy's phases.
    ok_per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    failed_per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    # Complete responses (any status, as `colors`) per (second, X-Watcher-Color value).
    colors_per_second: collections.Counter[tuple[int, str]] = field(default_factory=collections.Counter)
    # time.time() at which each complete response (any status) arrived, with its colour and status:
    # what a traffic receipt read from Caddy's log is checked against (tests/integration/test_receipts.py).
    answered: list[tuple[float, str, int]] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile in ms; NaN when nothing completed (so ``p99() < x`` is False)."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        rank = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
        return ordered[min(rank, len(ordered) - 1)]

    def p50(self) -> float:
        return self.percentile(50)

    def p99(self) -> float:
        return self.percentile(99)

    def timeline(self) -> list[dict[str, Any]]:
        """JSON-ready rows ``{"second", "ok", "failed", "colors": {colour: n}}``, one per second from
        0 to the last second anything was recorded in (quiet seconds included, as zeros)."""
        seconds = [*self.ok_per_second, *self.failed_per_second, *(s for s, _ in self.colors_per_second)]
        rows = [
            {"second": s, "ok": self.ok_per_second[s], "failed": self.failed_per_second[s], "colors": {}}
            for s in range(max(seconds, default=-1) + 1)
        ]
        for (second, color), count in sorted(self.colors_per_second.items()):
            rows[second]["colors"][color] = count
        return rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (raw latencies left out; NaN percentiles become None)."""

        def ms(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 3)

        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "errors": dict(self.errors),
            "p50_ms": ms(self.p50()),
            "p99_ms": ms(self.p99()),
            "max_ms": ms(max(self.latencies_ms)) if self.latencies_ms else None,
            "completed": len(self.latencies_ms),
            "versions": dict(self.versions),
            "last_versions": list(self.last_versions),
            "colors": dict(self.colors),
            "duration_s": round(self.duration_s, 3),
            "rate_achieved": round(self.sent / self.duration_s, 2) if self.duration_s > 0 else None,
        }


class _Failure(Exception):
    """A request failed for a reason we name ourselves; ``str(exc)`` is the errors-counter key."""


class _Slot:
    """One of the ``connections`` pool slots: a kept-alive connection, or not yet (re)opened."""

    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def discard(self) -> None:
        """Close the connection; the slot reconnects when it is next used (never for this request)."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None


def _parse_url(url: str) -> tuple[str, int, str, str]:
    """Return (connect host, port, request target, Host header); refuse anything but loopback http."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to load a non-loopback host {host!r}; allowed: {sorted(LOOPBACK_HOSTS)}")
    port = parts.port or 80  # .port raises ValueError on a bad port, which is what we want
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return host, port, target, host_header


class LoadGenerator:
    """Open-loop keep-alive HTTP/1.1 load on a background thread; see the module docstring for why.

    Pool: ``connections`` slots, each opened lazily on first use and then kept alive. Idle slots are
    handed out round-robin (FIFO), so every connection stays in use and is exposed to a proxy closing
    idle connections, as in the field-notes measurement. With no idle slot, a request waits in a FIFO
    queue; that wait counts in its latency. After any failure, or a ``Connection: close`` response,
    the slot's connection is closed and the *next* request on that slot reconnects.

    There is deliberately no check for a server-closed idle connection before sending: a request
    written on such a connection fails (as ``CLOSED_WHILE_IDLE`` when the close had already arrived),
    because a non-idempotent request cannot be silently resent by a real client either.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        method: str = "POST",
        body: bytes | None = None,
        connections: int = 16,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``body=None`` means 64 bytes of ``x`` for POST/PUT/PATCH and none for GET/HEAD etc."""
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive, finite number of requests per second")
        if connections < 1:
            raise ValueError("connections must be >= 1")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        method = method.upper()
        if not method.isalpha():
            raise ValueError(f"bad HTTP method {method!r}")
        self.url = url
        self.rate = float(rate)
        self.method = method
        self.connections = connections
        self.timeout = float(timeout)
        self._host, self._port, target, host_header = _parse_url(url)
        if body is None:
            body = b"" if method in _BODYLESS_METHODS else b"x" * 64
        self.body = body
        self._head = method == "HEAD"
        self._request = self._build_request(target, host_header, body, headers or {})
        self.result: LoadResult | None = None

        # Figures, written on the loop thread and read by snapshot(): guarded by a lock.
        self._lock = threading.Lock()
        self._sent = self._ok = self._failed = 0
        self._errors: collections.Counter[str] = collections.Counter()
        self._latencies: list[float] = []
        self._versions: collections.Counter[str] = collections.Counter()
        self._last: collections.deque[str] = collections.deque(maxlen=_LAST_N)
        self._colors: collections.Counter[str] = collections.Counter()
        self._colors_first: dict[str, float] = {}
        self._ok_per_second: collections.Counter[int] = collections.Counter()
        self._failed_per_second: collections.Counter[int] = collections.Counter()
        self._colors_per_second: collections.Counter[tuple[int, str]] = collections.Counter()
        self._answered: list[tuple[float, str, int]] = []
        self._t0: float | None = None  # loop.time() of the first scheduled request (== time.monotonic())
        self._t_end: float | None = None

        # Loop-thread state.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._slots = [_Slot() for _ in range(connections)]
        self._idle: collections.deque[_Slot] = collections.deque(self._slots)
        self._waiters: collections.deque[asyncio.Future[_Slot]] = collections.deque()
        self._inflight: set[asyncio.Task[None]] = set()

    def _build_request(self, target: str, host_header: str, body: bytes, extra: dict[str, str]) -> bytes:
        """Pre-render the request once: every request is identical, and this keeps CPU low."""
        hdrs: dict[str, str] = {"Host": host_header, "User-Agent": "watcher-load/1", "Accept": "*/*"}
        if body or self.method not in _BODYLESS_METHODS:
            hdrs["Content-Length"] = str(len(body))
        hdrs["Connection"] = "keep-alive"
        lower = {k.lower(): k for k in hdrs}
        for name, value in extra.items():  # caller may override e.g. Host for a Caddy site block
            if any(c in name + value for c in "\r\n") or not name or ":" in name:
                raise ValueError(f"bad header {name!r}")
            hdrs.pop(lower.get(name.lower(), name), None)
            hdrs[name] = value
        head = f"{self.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        return head.encode("latin-1") + b"\r\n" + body

    # ----------------------------------------------------------------- public, caller's thread

    def start(self) -> LoadGenerator:
        """Start scheduling on a daemon thread with its own event loop; returns once it runs."""
        if self._thread is not None:
            raise RuntimeError("LoadGenerator already started")
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._scheduler = loop.create_task(self._schedule())
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.wait(pending, timeout=1) if pending else asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="watcher-load", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("load generator thread did not start")
        return self

    def stop(self) -> LoadResult:
        """Stop scheduling, let in-flight requests finish (each bounded by ``timeout``), close all.

        Always returns within ``timeout + 5`` seconds; a request still unfinished by then is failed
        as ``cancelled at stop``. Idempotent: a second call returns the same result.
        """
        if self.result is not None:
            return self.result
        if self._thread is None or self._loop is None:
            raise RuntimeError("LoadGenerator was not started")
        deadline = time.monotonic() + self.timeout + 4.5
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, Exception):
            fut.result(timeout=self.timeout + 3.5)
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._t_end is None:
            self._t_end = time.monotonic()
        self.result = self.snapshot()
        lost = self.result.sent - self.result.ok - self.result.failed - self.result.in_flight
        if lost:  # a request neither succeeded nor failed: the client's bug, never a clean result
            raise RuntimeError(f"the load generator lost track of {lost} of {self.result.sent} requests")
        return self.result

    def snapshot(self) -> LoadResult:
        """Figures so far, without stopping (requests in flight are in ``in_flight``)."""
        with self._lock:
            end = self._t_end if self._t_end is not None else time.monotonic()
            return LoadResult(
                sent=self._sent,
                ok=self._ok,
                failed=self._failed,
                errors=collections.Counter(self._errors),
                latencies_ms=list(self._latencies),
                versions=collections.Counter(self._versions),
                last_versions=list(self._last),
                colors=collections.Counter(self._colors),
                colors_first_at=dict(self._colors_first),
                duration_s=max(0.0, end - self._t0) if self._t0 is not None else 0.0,
                in_flight=self._sent - self._ok - self._failed,
                started_at=self._t0,
                ok_per_second=collections.Counter(self._ok_per_second),
                failed_per_second=collections.Counter(self._failed_per_second),
                colors_per_second=collections.Counter(self._colors_per_second),
                answered=list(self._answered),
            )

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- loop thread

    async def _schedule(self) -> None:
        """Fire one request every 1/rate s from t0, whatever the responses; catch up if late."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        t0 = loop.time()
        with self._lock:
            self._t0 = t0
        i = 0
        while True:
            at = t0 + i * interval
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            with self._lock:
                self._sent += 1
            task = loop.create_task(self._one(at))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            i += 1

    async def _shutdown(self) -> None:
        """Stop scheduling, wait for in-flight requests (their own deadlines bound this), close."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._t_end = loop.time()
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=self.timeout + 1.0)
        leftovers = set(self._inflight)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=1.0)
        for slot in self._slots:
            slot.discard()
        await asyncio.sleep(0)  # let the transports finish closing before the loop stops

    async def _acquire(self) -> _Slot:
        """Take the longest-idle slot, or wait in FIFO order for one to be released."""
        if self._idle:
            return self._idle.popleft()
        fut: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot just as we timed out: pass it on
                self._release(fut.result())
            raise

    def _release(self, slot: _Slot) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():  # skip waiters that timed out
                fut.set_result(slot)
                return
        self._idle.append(slot)

    async def _one(self, scheduled: float) -> None:
        """Run one request exactly once and record its outcome; never retried."""
        loop = asyncio.get_running_loop()
        slot: _Slot | None = None
        keep = False
        status = 0
        body = b""
        color = ""
        reason: str | None = None
        try:
            async with asyncio.timeout_at(scheduled + self.timeout):
                slot = await self._acquire()
                status, body, keep, color = await self._exchange(slot)
        except TimeoutError:
            reason = "timeout"
        except _Failure as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = CANCELLED_AT_STOP
            raise
        except Exception as exc:  # OSError family: ConnectionResetError, BrokenPipeError, ...
            reason = type(exc).__name__
        finally:
            if reason is None and status >= 400:
                reason = f"status {status}"
            if slot is not None:
                if reason is not None or not keep:
                    slot.discard()
                self._release(slot)
            self._record(scheduled, loop.time(), status, body, reason, color)

    def _record(
        self, scheduled: float, now: float, status: int, body: bytes, reason: str | None, color: str = ""
    ) -> None:
        with self._lock:
            assert self._t0 is not None  # set before the first request is scheduled
            second = int(now - self._t0)
            if status:  # a complete response arrived, whatever its status
                self._latencies.append((now - scheduled) * 1000.0)
                self._colors[color] += 1
                self._colors_first.setdefault(color, now)
                self._colors_per_second[second, color] += 1
                self._answered.append((time.time(), color, status))
            if reason is not None:
                self._failed += 1
                self._errors[reason] += 1
                self._failed_per_second[second] += 1
                return
            self._ok += 1
            self._ok_per_second[second] += 1
            text = body.strip()[:_VERSION_MAX].decode("utf-8", "replace")
            if 200 <= status < 300:
                self._versions[text] += 1
            self._last.append(text)

    async def _exchange(self, slot: _Slot) -> tuple[int, bytes, bool, str]:
        """Write the request on the slot's connection (opening it if needed) and read the response."""
        if slot.writer is None:
            try:
                slot.reader, slot.writer = await asyncio.open_connection(self._host, self._port)
            except OSError as exc:
                raise _Failure(f"connect error: {type(exc).__name__}") from exc
        assert slot.reader is not None
        closed_while_idle = slot.reader.at_eof()  # only to label the failure; we send regardless
        slot.writer.write(self._request)
        await slot.writer.drain()
        try:
            return await self._read_response(slot.reader)
        except _Failure as exc:
            if closed_while_idle and str(exc) == CLOSED_BEFORE_RESPONSE:
                raise _Failure(CLOSED_WHILE_IDLE) from None
            raise

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool, str]:
        """Parse status line, headers and a Content-Length, chunked or close-delimited body;
        return (status, body, keep-alive, X-Watcher-Color value or "")."""
        got_any = False
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                got_any = got_any or bool(exc.partial)
                raise _Failure(CLOSED_MID_RESPONSE if got_any else CLOSED_BEFORE_RESPONSE) from None
            except asyncio.LimitOverrunError:
                raise _Failure("bad response: header too large") from None
            got_any = True
            lines = head[:-4].decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise _Failure("bad response: status line")
            status = int(code)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise _Failure("bad response: header line")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
            if 100 <= status < 200 and status != 101:
                continue  # interim response (100 Continue, 103 Early Hints): the real one follows
            break
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = "close" not in tokens and (version != "HTTP/1.0" or "keep-alive" in tokens)
        try:
            if self._head or status in (101, 204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = await self._read_chunked(reader)
            elif "content-length" in headers:
                try:
                    length = int(headers["content-length"].split(",")[0])
                except ValueError:
                    raise _Failure("bad response: content-length") from None
                body = await reader.readexactly(length)
            else:
                body = await reader.read()  # delimited by close: cannot be reused
                keep = False
        except asyncio.IncompleteReadError:
            raise _Failure(CLOSED_MID_RESPONSE) from None
        return status, body, keep, headers.get(COLOR_HEADER, "")

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Failure("bad response: chunk size") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise _Failure("bad response: chunk framing")


class _Stopped(Exception):
    """Raised by `main`'s SIGTERM handler: the run ends early (its figures are still printed)."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped


def run_load(url: str, *, rate: float, duration: float, **kw: Any) -> LoadResult:
    """Blocking helper: run ``rate`` req/s for ``duration`` seconds, then stop and return."""
    gen = LoadGenerator(url, rate=rate, **kw).start()
    try:
        time.sleep(duration)
    except _Stopped:  # SIGTERM under `main`: stop early, report what was sent
        pass
    finally:
        result = gen.stop()
    return result


def _format(result: LoadResult) -> str:
    d = result.as_dict()

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    errors = ", ".join(f"{k}={v}" for k, v in result.errors.most_common()) or "none"
    versions = ", ".join(f"{k!r}={v}" for k, v in result.versions.most_common(10)) or "none"
    colors = ", ".join(f"{k or '(none)'}={v}" for k, v in result.colors.most_common()) or "none"
    return (
        f"sent {d['sent']}  ok {d['ok']}  failed {d['failed']}  "
        f"({d['rate_achieved']}/s over {d['duration_s']:.2f} s)\n"
        f"p50 {ms(d['p50_ms'])}  p99 {ms(d['p99_ms'])}  max {ms(d['max_ms'])}\n"
        f"errors: {errors}\nversions: {versions}\ncolors: {colors}"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI; exit status 0 when nothing failed, 1 otherwise (so scripts can gate on it)."""
    p = argparse.ArgumentParser(prog="python -m tests.harness.load", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--method", default="POST")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--timeout", type=float, default=30.0, help="per-request, from its scheduled time")
    p.add_argument("--body", default=None, help="request body (default: 64 x's for POST/PUT/PATCH)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--answered", action="store_true", help="with --json: every answer's [epoch time, colour, status]"
    )
    args = p.parse_args(argv)
    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            p.error(f"bad header {h!r}; use 'Name: value'")
        headers[name.strip()] = value.strip()
    signal.signal(signal.SIGTERM, _stop)
    try:
        result = run_load(
            args.url,
            rate=args.rate,
            duration=args.duration,
            method=args.method,
            body=None if args.body is None else args.body.encode(),
            connections=args.connections,
            timeout=args.timeout,
            headers=headers,
        )
    except ValueError as exc:
        p.error(str(exc))
    shown = result.as_dict()
    if args.answered:  # every answer, and outcomes per second from `started_epoch` (epoch seconds)
        offset = time.time() - time.monotonic()
        started = None if result.started_at is None else result.started_at + offset
        shown |= {"answered": result.answered, "timeline": result.timeline(), "started_epoch": started}
    print(json.dumps(shown, indent=2) if args.json else _format(result))
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
