"""The bake's verdicts: errors judged beyond chance as they come, latency once at the end."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_receipt import line
from watcher.backends.access_log import AccessLog, Served
from watcher.config import BakeSettings
from watcher.engine.bake import Bake, above, error_verdict, latency_verdict
from watcher.engine.receipt import Tally

SETTINGS = BakeSettings()


def tally_of(n: int, failed: int = 0, duration: float = 0.01) -> Tally:
    found = Tally()
    for i in range(n):
        found.add(Served(float(i), "green", 500 if i < failed else 200, 200, duration, False))
    return found


def test_a_five_percent_errors_version_fails_within_a_second_of_200_requests() -> None:
    verdict = error_verdict(SETTINGS, tally_of(20_000), tally_of(200, failed=10), "blue", "green")
    assert verdict is not None and "green answered 10 of 200 requests with an error (5.0%)" in verdict
    assert "blue's 0.0%" in verdict


def test_no_verdict_before_min_requests_nor_for_a_rate_the_old_colour_had_too() -> None:
    assert error_verdict(SETTINGS, tally_of(1000), tally_of(49, failed=49), "blue", "green") is None
    assert (
        error_verdict(SETTINGS, tally_of(1000, failed=50), tally_of(1000, failed=55), "blue", "green") is None
    )


def test_two_unlucky_errors_in_fifty_requests_of_a_healthy_app_do_not_roll_it_back() -> None:
    assert (
        error_verdict(SETTINGS, tally_of(10_000, failed=50), tally_of(50, failed=2), "blue", "green") is None
    )


def test_errors_are_not_judged_when_turned_off() -> None:
    off = BakeSettings(max_error_rate=None)
    assert error_verdict(off, tally_of(100), tally_of(100, failed=100), "blue", "green") is None


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_a_version_as_good_as_the_old_one_is_rarely_rolled_back(seed: int) -> None:
    """False alarms: a new colour failing at the old colour's 0.5 %, judged every second of a 60 s
    bake at 200 requests/s, is not rolled back (the test is one-sided at 0.1 % per look)."""
    rng = random.Random(seed)
    before = tally_of(60_000, failed=300)
    after = Tally()
    for second in range(60):
        for _ in range(200):
            after.add(Served(float(second), "green", 500 if rng.random() < 0.005 else 200, 200, 0.01, False))
        assert error_verdict(SETTINGS, before, after, "blue", "green") is None


def test_the_binomial_tail() -> None:
    assert above(10, 200, 0.01)  # 10 of 200 where 2 are expected
    assert not above(3, 200, 0.01)  # 3 of 200: chance
    assert not above(0, 10, 0.0)
    assert above(1, 10, 0.0)  # any error where none are allowed
    assert above(5_300, 100_000, 0.05)  # large counts stay cheap and exact enough
    assert not above(5_050, 100_000, 0.05)


def test_latency_judged_against_the_old_p99_with_a_floor() -> None:
    before = tally_of(1000, duration=0.02)
    assert (
        latency_verdict(SETTINGS, before, tally_of(1000, duration=0.25), "blue", "green") is None
    )  # +230 ms
    verdict = latency_verdict(SETTINGS, before, tally_of(1000, duration=0.5), "blue", "green")
    assert verdict is not None and "green's p99 latency is 500 ms" in verdict and "3x blue's 20 ms" in verdict
    assert latency_verdict(SETTINGS, tally_of(10), tally_of(1000, duration=5.0), "blue", "green") is None


def test_failures_claiming_to_be_probes_still_fail_the_bake(tmp_path: Path) -> None:
    """Issue 21's attack: green's failures sent with `X-Watcher-Probe: 1` were left out of the bake."""
    log = tmp_path / "access.log"
    moved = 1000.0
    log.write_text(
        "".join(line(moved - 60 + i * 0.5) for i in range(100))  # blue: 100 answers, no error
        + "".join(
            line(moved + i * 0.05, color="green", status=500, upstream=500, probe="1") for i in range(60)
        )
    )
    bake = Bake(SETTINGS, AccessLog(log), "demo", "blue", "green", moved, 10.0)
    verdict = bake.check(moved + 10, final=True)
    assert verdict is not None and "green answered 60 of 60 requests with an error" in verdict
