"""Traffic receipts and the bake, on the real engine behind the real Caddy, under non-retrying
keep-alive load: the receipt (read from Caddy's access log) against what the load generator got,
and a version answering 500 to 5 % of requests switched back by the bake."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time

import pytest
import websockets.exceptions
import websockets.sync.client

from tests.harness.load import LoadResult
from tests.harness.stack import Stack
from tests.harness.traffic import under_load

pytestmark = pytest.mark.integration


def answered_in(results: list[LoadResult], start: float, end: float) -> collections.Counter[tuple[str, int]]:
    """The load generator's complete responses received in [start, end), by colour and status."""
    return collections.Counter(
        (color, status) for r in results for at, color, status in r.answered if start <= at < end
    )


def test_the_receipt_counts_what_the_load_generator_was_answered(stack: Stack) -> None:
    assert stack.watcher("deploy", "v1").returncode == 0
    with under_load(stack) as loads:
        proc = stack.watcher("deploy", "v2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert loads.failed == 0, loads.describe()
    receipt = json.loads(proc.stdout)["receipt"]
    got = answered_in(loads.results, receipt["start"], receipt["end"])
    total = sum(got.values())
    assert total > 1000, f"the load sent too little in the receipt's window: {total}"
    assert abs(receipt["requests"] - total) <= 0.01 * total, (receipt["requests"], total)
    for color in ("blue", "green"):
        mine = sum(n for (c, _), n in got.items() if c == color)
        assert abs(receipt["colors"][color]["requests"] - mine) <= max(2, 0.01 * mine), (color, receipt, got)
    assert receipt["failed"] == 0 and receipt["probes"] > 0  # the verification's own requests, apart
    assert receipt["summary"] == f"served {receipt['requests']:,} requests during the swap, 0 failed"
    moved = [row for row in receipt["seconds"] if row["t"] >= 0]
    assert moved[0].get("green") and moved[-1].get("green") and not moved[-1].get("blue")
    print(
        f"receipt accuracy: {receipt['requests']} in the receipt vs {total} answered to the load "
        f"({(receipt['requests'] - total) / total:+.3%})"
    )


def test_the_bake_switches_a_version_with_five_percent_errors_back(queued: Stack) -> None:
    """err5 passes health and verification (GET /version), but answers 500 to 5 % of the
    users' requests: the bake sees it in Caddy's log and traffic goes back to v1 while v1 still
    runs. The only failed requests are those the app itself answered 500."""
    stack = queued
    assert stack.watcher("deploy", "v1").returncode == 0
    worker = stack.spawn("worker")
    threading.Thread(target=worker.communicate, daemon=True).start()  # its output must not fill the pipe
    try:
        with under_load(stack) as loads:
            proc = stack.watcher("enqueue", "err5", "--wait", timeout=180)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert proc.returncode != 0, proc.stderr
    assert stack.live_route() == "blue" and stack.version() == "v1"
    job = json.loads(stack.watcher("history", "--json").stdout)["jobs"][0]
    assert job["version"] == "err5" and job["status"] == "failed"
    assert "bake: green answered" in job["reason"] and "above the allowed 1.0%" in job["reason"], job[
        "reason"
    ]
    receipt = job["receipt"]
    green, blue = receipt["colors"]["green"], receipt["colors"]["blue"]
    assert receipt["kind"] == "abort" and green["classes"].get("5xx", 0) > 0
    assert "upstream_error" not in green["classes"] and blue["failed"] == 0

    # The load's failures are the app's own 500s, every one of them from green, and the receipt
    # counted each of them.
    assert loads.sent > 1000
    assert set(loads.results[0].errors) | set(loads.results[1].errors) == {"status 500"}, loads.describe()
    got = answered_in(loads.results, receipt["start"], receipt["end"])
    assert {c for (c, status) in got if status == 500} == {"green"}
    assert (
        loads.failed == sum(n for (_, status), n in got.items() if status == 500) == green["classes"]["5xx"]
    )
    shown = stack.watcher("show", job["id"])
    assert receipt["summary"] in shown.stdout, shown.stdout
    print(shown.stdout)
    print(
        f"bake: switch to err5 -> switched back after {job['phases']['verify']:.1f}s of verification "
        f"(green served {green['requests']}, {green['failed']} failed)"
    )


def test_a_websocket_on_the_old_colour_lasts_until_the_drain_timeout(stack: Stack) -> None:
    """A stream open on the old colour at the switch is not cut by it: it keeps working through
    the verification and the drain, is closed when the old colour stops (drain.timeout later),
    and the receipt counts it. The app must reconnect (docs/how-it-works.md)."""
    stack.write_config(drain_timeout="6s")
    assert stack.watcher("deploy", "v1").returncode == 0
    echoes: list[tuple[float, str]] = []
    closed: list[float] = []
    with websockets.sync.client.connect(f"ws://127.0.0.1:{stack.port}/ws", open_timeout=10) as socket:
        assert socket.recv(timeout=10) == "v1"

        def talk() -> None:
            try:
                while True:
                    socket.send("ping")
                    echoes.append((time.time(), str(socket.recv(timeout=10))))
                    time.sleep(0.5)
            except websockets.exceptions.ConnectionClosed:
                closed.append(time.time())

        talker = threading.Thread(target=talk, daemon=True)
        talker.start()
        proc = stack.watcher("deploy", "v2", "--json")
        talker.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    receipt = json.loads(proc.stdout)["receipt"]
    assert closed, "the stream was not closed when the old colour stopped"
    moved, drain = receipt["moved_at"], json.loads(proc.stdout)["phases"]["drain"]
    assert drain >= 5.5, f"the drain did not wait for the open stream: {drain:.1f}s"
    assert any(at > moved + 4 for at, text in echoes if text == "ping"), (
        "the stream stopped working at the switch"
    )
    assert closed[0] >= moved + 6, closed[0] - moved
    assert (
        receipt["colors"]["blue"]["long_lived"] == 1 and receipt["colors"]["blue"]["classes"].get("1xx") == 1
    )
    print(f"websocket: open on blue until {closed[0] - moved:.1f}s after the switch (drain {drain:.1f}s)")
