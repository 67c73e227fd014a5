"""Traffic receipts from Caddy's access log: finding a window in a big log, following a roll,
classing answers, and the per-second rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

from watcher.backends.access_log import AccessLog, Served
from watcher.engine import receipt as receipts
from watcher.engine.receipt import response_class


def line(
    at: float,
    app: str = "demo",
    color: str = "blue",
    status: int = 200,
    upstream: int | None = 200,
    duration: float = 0.01,
    probe: str = "",
) -> str:
    return (
        json.dumps(
            {
                "level": "info",
                "ts": at,
                "logger": "http.log.access.log0",
                "msg": "handled request",
                "duration": duration,
                "size": 3,
                "status": status,
                "watcher_probe": probe,
                "watcher_upstream": upstream,
                "watcher_color": color,
                "watcher_app": app,
            },
            separators=(",", ":"),
        )
        + "\n"
    )


def test_a_window_of_a_large_log_is_found_by_bisection_and_filtered_exactly(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with path.open("w") as log:
        for i in range(50_000):  # 5,000 s at 10 requests/s, two apps
            log.write(line(1000.0 + i / 10, app="demo" if i % 2 else "api"))
    served = AccessLog(path).served("demo", 3000.0, 3010.0)
    assert len(served) == 50  # 100 lines in 10 s, half of them demo's
    assert all(3000.0 <= s.at < 3010.0 for s in served)
    assert AccessLog(path).served("demo", 0, 999) == []


def test_lines_slightly_out_of_order_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    stamps = [100.0, 100.5, 100.2, 101.0, 100.9, 102.0]
    path.write_text("".join(line(t) for t in stamps))
    assert [s.at for s in AccessLog(path).served("demo", 100.1, 101.0)] == [100.2, 100.5, 100.9]


def test_a_rolled_file_is_read_before_the_current_one(tmp_path: Path) -> None:
    rolled, current = tmp_path / "access-2026-12-03T12-00-00.000.log", tmp_path / "access.log"
    rolled.write_text("".join(line(100.0 + i) for i in range(10)))
    os.utime(rolled, (109.0, 109.0))
    current.write_text("".join(line(110.0 + i) for i in range(10)))
    old = tmp_path / "access-2026-12-02T12-00-00.000.log"  # ended before the window: not read
    old.write_text(line(5.0))
    os.utime(old, (6.0, 6.0))
    assert [s.at for s in AccessLog(current).served("demo", 105.0, 115.0)] == [105.0 + i for i in range(10)]


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(line(1.0) + '{"ts": 2.0, "watcher_app":"demo", "status": \n' + "not json\n" + line(3.0))
    assert [s.at for s in AccessLog(path).served("demo", 0, 10)] == [1.0, 3.0]


def test_classes_tell_the_apps_errors_from_caddys() -> None:
    def served(status: int, upstream: int | None, color: str = "green") -> str:
        return response_class(Served(0, color, status, upstream, 0.0, False))

    assert served(200, 200) == "2xx"
    assert served(404, 404) == "4xx"
    assert served(500, 500) == "5xx"  # the app answered 500
    assert served(502, 502) == "5xx"  # the app itself answered 502
    assert served(502, None) == "upstream_error"  # Caddy got no answer from the app
    assert served(503, None, "none") == "upstream_error"
    assert served(0, None) == "cancelled"


def test_a_receipt_counts_per_colour_and_per_second_and_leaves_probes_apart() -> None:
    moved = 1000.0
    entries = [Served(moved - 3 + i * 0.1, "blue", 200, 200, 0.01, False) for i in range(30)]  # 3 s of blue
    entries += [
        Served(moved + i * 0.1, "green", 500 if i % 20 == 0 else 200, 200, 0.02, False) for i in range(40)
    ]
    entries += [
        Served(moved + 0.5, "green", 200, 200, 0.01, True),
        Served(moved + 1.5, "blue", 200, 200, 12.0, False),
    ]
    receipt = receipts.build("deploy", entries, moved, moved - 10, moved + 5, "/run/access.log")
    assert receipt.requests == 71 and receipt.probes == 1
    assert receipt.colors["green"]["requests"] == 40 and receipt.colors["green"]["failed"] == 2
    assert receipt.colors["blue"]["long_lived"] == 1
    assert receipt.failed == 2
    assert [row["t"] for row in receipt.seconds] == list(range(-10, 6))
    assert receipt.seconds[10]["green"]["requests"] == 10 and "blue" not in receipt.seconds[10]
    assert receipt.summary() == "served 71 requests during the swap, 2 failed, 1 long-lived"
    assert (
        receipts.Receipt.from_dict(json.loads(json.dumps(receipt.to_dict()))).to_dict() == receipt.to_dict()
    )


def test_a_missing_log_makes_a_receipt_that_says_why() -> None:
    receipt = receipts.missing("abort", 10.0, 20.0, "Caddy writes no access log at /x")
    assert receipt.summary() == "no traffic receipt: Caddy writes no access log at /x"


def test_a_request_claiming_to_be_a_probe_is_a_users_request(tmp_path: Path) -> None:
    """Issue 21's attack: `X-Watcher-Probe: 1` (or any value Caddy did not match against the
    probe file's secret) hid a request from the receipt and the bake. Only `watcher_own`, which
    Caddy sets when the header equals the secret, marks watcher's own request."""
    path = tmp_path / "access.log"
    path.write_text(
        line(1.0, probe="1")  # a Caddyfile of before: the header's value, whatever the client sent
        + line(2.0, probe="anything-at-all-0123456789abcdefghij")
        + line(3.0).replace('"watcher_probe":""', '"watcher_own":"1"')  # Caddy matched the secret
    )
    served = AccessLog(path).served("demo", 0, 10)
    assert [s.probe for s in served] == [False, False, True]
    receipt = receipts.build("deploy", served, 2.0, 0.0, 10.0, str(path))
    assert receipt.requests == 2 and receipt.probes == 1
