"""Scheduled freezes and timed pauses as pure logic, against fixed clocks: when a window is in
force (Friday 16:00 to Monday 08:00, at exactly its start and end, across a DST change, chained
windows), what the config accepts and refuses (each error naming the key), and `--until`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.unit.test_config import MINIMAL, make_project, refused
from watcher.config import load_config
from watcher.freeze import FreezeSchedule, FreezeWindow, moment, window
from watcher.queue.suspension import parse_until

WEEKEND = window("0 16 * * fri", "0 8 * * mon", reason="weekend")


def at(text: str) -> float:
    """A Unix time from an ISO text (UTC unless it names an offset)."""
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def until(schedule: FreezeSchedule, when: str) -> str | None:
    hold = schedule.hold(at(when))
    return moment(hold.until) if hold else None


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-12-03T12:00", None),  # Thursday
        ("2026-12-04T15:59:59", None),  # a second before the start
        ("2026-12-04T16:00:00", "2026-12-07 08:00 UTC"),  # exactly the start: in force
        ("2026-12-05T23:30", "2026-12-07 08:00 UTC"),  # Saturday night
        ("2026-12-07T07:59:59", "2026-12-07 08:00 UTC"),  # a second before the end
        ("2026-12-07T08:00:00", None),  # exactly the end: free
        ("2026-12-07T08:00:01", None),
    ],
)
def test_friday_afternoon_to_monday_morning(when: str, expected: str | None) -> None:
    assert until(FreezeSchedule((WEEKEND,)), when) == expected


def test_a_window_in_its_own_timezone_follows_daylight_saving_time() -> None:
    """Berlin leaves summer time on Sunday 2026-10-25: the window opens at 16:00 CEST (14:00 UTC)
    and closes at 08:00 CET (07:00 UTC), an hour more than the same window in winter."""
    berlin = FreezeSchedule((window("0 16 * * fri", "0 8 * * mon", "Europe/Berlin"),))
    assert until(berlin, "2026-10-23T13:59:59") is None
    assert until(berlin, "2026-10-23T14:00:00") == "2026-10-26 07:00 UTC"
    assert until(berlin, "2026-10-26T06:59:59") == "2026-10-26 07:00 UTC"
    assert until(berlin, "2026-10-26T07:00:00") is None
    assert until(berlin, "2026-12-04T15:00:00") == "2026-12-07 07:00 UTC"  # winter: UTC+1 both ends
    assert until(berlin, "2026-12-04T16:30:00+01:00") == "2026-12-07 07:00 UTC"


def test_windows_that_follow_on_hold_until_the_last_one_ends() -> None:
    nights = window("0 22 * * *", "0 6 * * *")
    schedule = FreezeSchedule((WEEKEND, window("0 8 * * mon", "0 9 * * mon"), nights))
    hold = schedule.hold(at("2026-12-05T12:00"))
    assert hold is not None and hold.window == WEEKEND and moment(hold.until) == "2026-12-07 09:00 UTC"
    assert until(schedule, "2026-12-08T23:00") == "2026-12-09 06:00 UTC"
    assert until(schedule, "2026-12-08T12:00") is None
    assert (
        hold.describe()
        == 'frozen until 2026-12-07 09:00 UTC (freeze "0 16 * * fri" to "0 8 * * mon" UTC: weekend)'
    )


def test_no_windows_never_hold_and_the_clock_is_read_when_no_time_is_given() -> None:
    assert FreezeSchedule().hold(at("2026-12-05T12:00")) is None
    schedule = FreezeSchedule((WEEKEND,), clock=lambda: at("2026-12-05T12:00"))
    assert schedule.hold() is not None
    assert FreezeSchedule((WEEKEND,), clock=lambda: at("2026-12-08T12:00")).hold() is None


@pytest.mark.parametrize(
    ("start", "end", "zone", "problem"),
    [
        ("0 16 * * friday", "0 8 * * mon", "UTC", "start: not a 5-field cron expression"),
        ("0 16 * *", "0 8 * * mon", "UTC", "start: not a 5-field cron expression"),
        ("0 16 * * fri", "61 8 * * mon", "UTC", "end: not a 5-field cron expression"),
        ("0 16 * * 5", "0 8 * * mon", "UTC", "start: name the weekdays"),
        ("0 0 30 2 *", "0 8 * * mon", "UTC", "start: '0 0 30 2 *' never fires"),
        ("0 16 * * fri", "0  16 * * fri", "UTC", "end: is the same as start"),
        ("0 16 * * fri", "0 8 * * mon", "Mars/Olympus", "timezone: not a timezone name"),
    ],
)
def test_bad_windows_are_refused_naming_the_key(start: str, end: str, zone: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("*", r"\*")):
        window(start, end, zone)


def test_the_config_reads_freezes_and_names_a_bad_one(tmp_path: Path) -> None:
    good = (
        MINIMAL + '\n[[freeze]]\nstart = "0 16 * * fri"\nend = "0 8 * * mon"\ntimezone = "Europe/Berlin"\n'
        'reason = "weekend"\n\n[[freeze]]\nstart = "0 0 24 12 *"\nend = "0 0 27 12 *"\n'
    )
    config = load_config(make_project(tmp_path, good), {})
    assert config.freezes == (
        FreezeWindow("0 16 * * fri", "0 8 * * mon", "Europe/Berlin", "weekend"),
        FreezeWindow("0 0 24 12 *", "0 0 27 12 *"),
    )
    assert load_config(make_project(tmp_path, MINIMAL), {}).freezes == ()
    bad = good.replace('"0 0 27 12 *"', '"0 0 27 13 *"')
    assert refused(make_project(tmp_path, bad)).startswith(
        f"{tmp_path / 'watcher.toml'}: freeze[1].end: not a 5-field cron expression"
    )
    zone = good.replace("Europe/Berlin", "Europe/Atlantis")
    assert (
        "freeze[0].timezone: not a timezone name like UTC or Europe/Berlin, got 'Europe/Atlantis'"
        in refused(make_project(tmp_path, zone))
    )
    missing = MINIMAL + '\n[[freeze]]\nstart = "0 1 * * *"\n'
    assert "freeze.0.end: is required" in refused(make_project(tmp_path, missing))


def test_several_apps_name_the_app_of_a_bad_freeze(tmp_path: Path) -> None:
    toml = (
        '[apps.shop]\nimage = "ghcr.io/acme/shop"\n[apps.shop.services.web]\nport = 8080\n'
        '[apps.shop.verify]\nurl = "http://127.0.0.1:8080/version"\n'
        '[[apps.shop.freeze]]\nstart = "0 16 * * fri"\nend = "0 8 * * 1"\n'
    )
    assert "app shop: freeze[0].end: name the weekdays" in refused(make_project(tmp_path, toml))


# -- pause --until ---------------------------------------------------------------------------

NOW = at("2026-12-03T12:00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", "2026-12-03 14:00 UTC"),
        ("30m", "2026-12-03 12:30 UTC"),
        ("90s", "2026-12-03 12:01:30 UTC"),
        ("1d", "2026-12-04 12:00 UTC"),
        ("2026-12-04T08:00", "2026-12-04 08:00 UTC"),  # no zone: UTC, as `history --since`
        ("2026-12-04 08:00", "2026-12-04 08:00 UTC"),
        ("2026-12-04T08:00Z", "2026-12-04 08:00 UTC"),
        ("2026-12-04T08:00+01:00", "2026-12-04 07:00 UTC"),
        ("2026-12-05", "2026-12-05 00:00 UTC"),
    ],
)
def test_until_takes_a_span_ahead_or_a_date_time(text: str, expected: str) -> None:
    assert moment(parse_until(text, NOW)) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-12-03T11:59", "is in the past"),
        ("2026-12-03T12:00", "is in the past"),
        ("0s", "is in the past"),
        ("tomorrow", "expected a span like 30m or 2h, or a date-time like 2026-12-04T08:00"),
        ("-2h", "expected a span like 30m or 2h"),
        ("", "expected a span like 30m or 2h"),
        ("99999999d", "expected a span like 30m or 2h"),
    ],
)
def test_until_refuses_the_past_and_junk(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_until(text, NOW)


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_say_frozen_and_when_a_freeze_and_a_timed_pause_end(redis_url: str, app_name: str) -> None:
    from prometheus_client import generate_latest

    from tests.harness.metrics import named, parse, value
    from tests.unit.test_metrics import owners
    from watcher.metrics import registry_for
    from watcher.queue import Suspension
    from watcher.queue.connection import connect

    client = connect(redis_url)
    saturday = FreezeSchedule((WEEKEND,), clock=lambda: at("2026-12-05T12:00"))

    def scrape(schedule: FreezeSchedule) -> dict:  # type: ignore[type-arg]
        [app] = owners(client, [app_name])
        app.freezes = schedule
        return parse(generate_latest(registry_for([app])).decode())

    frozen = scrape(saturday)
    assert value(frozen, "watcher_frozen", app=app_name) == 1
    assert value(frozen, "watcher_frozen_until_timestamp_seconds", app=app_name) == at("2026-12-07T08:00")
    assert not named(frozen, "watcher_paused_until_timestamp_seconds")
    free = scrape(FreezeSchedule((WEEKEND,), clock=lambda: at("2026-12-08T12:00")))
    assert value(free, "watcher_frozen", app=app_name) == 0
    assert not named(free, "watcher_frozen_until_timestamp_seconds")

    Suspension(client, app_name).pause(by="test", until=at("2099-01-01T08:00"))
    paused = scrape(FreezeSchedule())
    assert value(paused, "watcher_paused", app=app_name) == 1
    assert value(paused, "watcher_paused_until_timestamp_seconds", app=app_name) == at("2099-01-01T08:00")
    Suspension(client, app_name).pause(by="test")  # a new pause, until resumed: no end
    assert not named(scrape(FreezeSchedule()), "watcher_paused_until_timestamp_seconds")


# -- the CLI ---------------------------------------------------------------------------------


def in_force_now(reason: str = "") -> str:
    """A `[[freeze]]` table whose window began two hours ago and ends in two (daily crons)."""
    now = datetime.now(UTC)
    began, ends = now - timedelta(hours=2), now + timedelta(hours=2)
    return (
        f'\n[[freeze]]\nstart = "{began.minute} {began.hour} * * *"\nend = "{ends.minute} {ends.hour} * * *"\n'
        f'reason = "{reason}"\n'
    )


def test_deploy_in_a_freeze_is_refused_saying_how_to_deploy_anyway(tmp_path: Path) -> None:
    from tests.unit.test_cli import untouched, watcher

    path = make_project(tmp_path, MINIMAL + in_force_now("weekend"))
    refused_deploy = watcher("--config", str(path), "deploy", "v2", cwd=tmp_path)
    assert refused_deploy.returncode == 2, refused_deploy.stderr
    assert "shop is frozen until" in refused_deploy.stderr and ": weekend)" in refused_deploy.stderr
    assert "`watcher enqueue v2` deploys it when the freeze ends" in refused_deploy.stderr
    assert "`watcher deploy --ignore-freeze v2` deploys it now" in refused_deploy.stderr
    untouched(tmp_path)
    # --ignore-freeze goes on to the engine (which finds no Docker here): past the freeze check.
    forced = watcher("--config", str(path), "deploy", "--ignore-freeze", "v2", cwd=tmp_path)
    assert forced.returncode != 0 and "frozen" not in forced.stderr


def test_pause_until_junk_or_the_past_exits_2_and_a_timed_pause_shows_its_end(
    tmp_path: Path, redis_url: str, app_name: str
) -> None:
    from tests.unit.test_cli import watcher

    toml = MINIMAL.replace('name = "shop"', f'name = "{app_name}"') + f'\n[redis]\nurl = "{redis_url}"\n'
    path = make_project(tmp_path, toml + in_force_now())
    for junk, problem in (
        ("soon", "--until: expected a span like 30m or 2h"),
        ("2020-01-01T00:00", "--until: 2020-01-01 00:00 UTC is in the past"),
    ):
        answer = watcher("--config", str(path), "pause", "--until", junk, cwd=tmp_path)
        assert answer.returncode == 2 and problem in answer.stderr, answer.stderr
    paused = watcher(
        "--config", str(path), "pause", "--until", "2099-01-01T09:00+01:00", "--reason", "x", cwd=tmp_path
    )
    assert paused.returncode == 0, paused.stderr
    assert "start no new one until 2099-01-01 08:00 UTC (or `watcher resume`)" in paused.stdout
    queued = watcher("--config", str(path), "queue", cwd=tmp_path)
    assert "paused until 2099-01-01 08:00 UTC (by " in queued.stdout and ": x\n" in queued.stdout, (
        queued.stdout
    )
    assert "\nfrozen until " in queued.stdout, queued.stdout


def test_status_says_frozen_and_held_and_the_summary_says_frozen(redis_url: str, app_name: str) -> None:
    from watcher.engine.status import format_summary
    from watcher.queue import DeployQueue, format_overview, overview
    from watcher.queue.connection import connect

    client = connect(redis_url)
    saturday = FreezeSchedule((WEEKEND,), clock=lambda: at("2026-12-05T12:00"))
    DeployQueue(client, app_name).enqueue("v2", source="webhook", requested_by="test")
    data = overview(DeployQueue(client, app_name, freezes=saturday), paused=None, lock=None)
    assert data["frozen"]["holds_next"] and data["frozen"]["until"] == "2026-12-07T08:00:00+00:00"
    text = format_overview(data)
    assert 'frozen: until 2026-12-07 08:00 UTC (freeze "0 16 * * fri" to "0 8 * * mon" UTC: weekend)' in text
    assert "(held by freeze until 2026-12-07 08:00 UTC)" in text and "paused: no" in text
    row = {
        "app": app_name,
        "live_color": None,
        "live_version": None,
        "live_since": None,
        "live_health": "none",
        "warnings": [],
        **data,
    }
    assert format_summary([row]).splitlines()[1].split()[-1] == "frozen"
    assert overview(DeployQueue(client, app_name), paused=None, lock=None)["frozen"] is None


def test_the_cli_worker_and_pool_read_the_apps_freezes(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from watcher import cli
    from watcher.config import load_host
    from watcher.host import Host
    from watcher.queue.queue import DeployQueue

    toml = MINIMAL + f'\n[redis]\nurl = "{redis_url}"\n' + in_force_now("weekend")
    host = Host(load_host(make_project(tmp_path, toml), {}))
    config = host.app(None).config
    assert cli._app_worker(host.app(None), "n").queue.freezes.windows == config.freezes != ()
    seen: dict[str, FreezeSchedule] = {}

    class Pool:
        def __init__(
            self, client: object, queues: dict[str, DeployQueue], *args: object, **kw: object
        ) -> None:
            seen.update({name: queue.freezes for name, queue in queues.items()})

        def run(self) -> None:
            pass

    monkeypatch.setattr(cli, "WorkerPool", Pool)
    cli._pool(host, SimpleNamespace(one=False, app=None, name="n"))  # type: ignore[arg-type]
    assert seen["shop"].windows == config.freezes and seen["shop"].hold() is not None
