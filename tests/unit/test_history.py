"""`--since` parsing and `watcher show`'s layout: pure logic (the records are tested against
Redis in tests/integration/test_history.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.errors import UsageError
from watcher.history import parse_since, show
from watcher.queue.job import Job, Status

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("90m", 5400), ("6h", 21600), ("7d", 604800), ("2w", 1209600), ("30s", 30), ("1.5h", 5400)],
)
def test_since_a_span_back_from_now(text: str, seconds_ago: float) -> None:
    assert parse_since(text, NOW) == NOW - seconds_ago


def test_since_a_date_or_time_is_utc_unless_it_says_otherwise() -> None:
    assert parse_since("2026-12-01", NOW) == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert parse_since("2026-12-01T08:00", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp()
    assert parse_since("2026-12-01T08:00+01:00", NOW) == datetime(2026, 12, 1, 7, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["", "yesterday", "7", "-1d", "7 days", "2026-13-01", "1d; rm -rf /"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError, match="--since: expected a span like 6h or 7d"):
        parse_since(text, NOW)


def test_show_prints_every_fact_then_the_phases_in_order() -> None:
    job = Job(
        id="17",
        app="shop",
        version="v2",
        source="webhook",
        requested_by="github delivery 9f (ann)",
        created=NOW,
        digest="sha256:" + "ab" * 32,
        status=Status.FAILED,
        worker="box:12",
        started=NOW + 1,
        finished=NOW + 31.5,
        reason="v2 never became healthy",
        attempts=1,
        fence=4,
        phases={"pull": 3.0, "health": 27.5},
        before="v1",
        after="v1",
    )
    text = show(job)
    assert text.splitlines()[0] == "job          17 (shop)"
    for line in (
        "asked by     webhook: github delivery 9f (ann)",
        "outcome      failed",
        "reason       v2 never became healthy",
        "live before  v1",
        "live after   v1",
        "duration     30.5s",
        "worker       box:12 (attempt 1, fence 4)",
        "  pull               3.00s",
        "  health            27.50s",
        "  total             30.50s",
    ):
        assert line in text.splitlines(), text
    assert text.index("  pull ") < text.index("  health ")
