"""Manual promotion's pure logic: the `[promote]` config, the wait's deadline, the pending note
that carries it, the job fields, and the answers of POST /promote and /abort."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.unit.test_config import MINIMAL, make_project, refused
from tests.unit.test_dashboard import dashboard
from tests.unit.test_webhook import API_TOKEN, receiver
from watcher.config import load_config
from watcher.engine.promotion import deadline, expired, past
from watcher.engine.reconcile import Observed, reconcile
from watcher.engine.state import AWAITING, DeployState, Pending, StateStore, awaiting
from watcher.errors import UsageError
from watcher.host import Outcome
from watcher.platforms.color import Color
from watcher.queue import DeployLock
from watcher.queue.job import Job, Status

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


# -- config ---------------------------------------------------------------------------------


def test_promotion_is_automatic_unless_the_config_says_manual(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert (config.promote.manual, config.promote.timeout) == (False, 3600.0)


def test_manual_promotion_in_the_single_app_layout(tmp_path: Path) -> None:
    config = load_config(
        make_project(tmp_path, MINIMAL + '\n[promote]\nmode = "manual"\ntimeout = "30m"\n'), {}
    )
    assert (config.promote.manual, config.promote.timeout) == (True, 1800.0)


def test_manual_promotion_per_app(tmp_path: Path) -> None:
    apps = (
        MINIMAL.replace('[app]\nname = "shop"', "[apps.shop]")
        .replace("[services.web]", "[apps.shop.services.web]")
        .replace("[verify]", "[apps.shop.verify]")
        + '\n[apps.shop.promote]\nmode = "manual"\n'
    )
    config = load_config(make_project(tmp_path, apps), {}, "shop")
    assert config.promote.manual and config.promote.timeout == 3600.0


@pytest.mark.parametrize(
    "section, key", [('mode = "later"', "promote.mode"), ('timeout = "0s"', "promote.timeout")]
)
def test_a_wrong_promote_setting_names_its_key(tmp_path: Path, section: str, key: str) -> None:
    assert key in refused(make_project(tmp_path, MINIMAL + f"\n[promote]\n{section}\n"))


# -- the wait -------------------------------------------------------------------------------


def waiting(until: str) -> Pending:
    return Pending(
        "deploy", "v2", Color.GREEN, AWAITING, until=until, digest="sha256:" + "a" * 64, image="sha256:img"
    )


def test_a_wait_expires_at_its_deadline() -> None:
    pending = waiting(deadline(3.0, NOW))
    assert awaiting(pending)
    assert not expired(pending, NOW + timedelta(seconds=2.9))
    assert expired(pending, NOW + timedelta(seconds=3))


def test_a_deadline_nobody_can_read_has_passed() -> None:
    assert past("", NOW) and past("not a time", NOW) and past(None, NOW)
    assert not past("2026-12-03T12:00:01", NOW), "a time without a zone is UTC"


def test_only_the_awaiting_phase_awaits() -> None:
    assert not awaiting(None)
    assert not awaiting(Pending("deploy", "v2", Color.GREEN, "health"))


def test_the_pending_note_keeps_what_the_waiting_colour_runs(tmp_path: Path) -> None:
    store = StateStore(tmp_path, None)
    pending = waiting(deadline(60, NOW))
    store.save(DeployState(None, None, pending))
    assert store.load().pending == pending


def test_a_wait_is_no_interrupted_deploy_in_the_warnings() -> None:
    view = reconcile(
        DeployState(None, None, waiting("2026-12-03T13:00:00+00:00")),
        Observed(None, {c: [] for c in Color}, ("web",), "img", True),
    )
    assert view.warnings == [
        "v2 on green awaits promotion until 2026-12-03T13:00:00+00:00 "
        "(`watcher promote` switches to it, `watcher abort` removes it)"
    ]


# -- jobs -----------------------------------------------------------------------------------


def test_promote_and_abort_jobs_say_what_they_act_on() -> None:
    job = Job("7", "shop", "v2", "promote", "ann@box", 0.0, awaits="6")
    again = Job.from_fields(job.to_fields())
    assert (again.kind, again.awaits) == ("promote", "6")
    waited = Job(
        "6", "shop", "v2", "cli", "ann@box", 0.0, status=Status.AWAITING, until="2026-12-03T13:00:00+00:00"
    )
    back = Job.from_fields(waited.to_fields())
    assert back.status is Status.AWAITING and back.status.final and back.until == waited.until
    assert "awaiting promotion" in back.describe()


# -- POST /promote and /abort ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_promote_and_abort_need_the_api_token(action: str) -> None:
    hooks = receiver()
    assert hooks.client.post(f"/{action}", json={}).status_code == 401


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_promote_and_abort_queue_a_job(action: str) -> None:
    hooks = receiver()
    asked: list[tuple[str, str, str]] = []

    def act(what: str, *, by: str) -> Outcome:
        asked.append(("demo", what, by))
        return Outcome("demo", "enqueued", f"job 8 queued: {what} v2 (job 7)", "v2", job_id="8")

    hooks.host.apps["demo"].act = act  # type: ignore[method-assign]
    reply = hooks.client.post(
        f"/{action}", json={"by": "ann"}, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert reply.status_code == 202, reply.json
    assert reply.json["job"] == "8" and asked == [("demo", action, "ann")]


def test_promote_with_nothing_waiting_is_409_with_the_reason() -> None:
    hooks = receiver()

    def act(what: str, *, by: str) -> Outcome:
        raise UsageError("no job of demo awaits promotion: nothing to promote")

    hooks.host.apps["demo"].act = act  # type: ignore[method-assign]
    reply = hooks.client.post("/promote", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert reply.status_code == 409
    assert "awaits promotion" in reply.json["reason"]


# -- the dashboard's buttons (login + CSRF, as every action) -----------------------------------


def test_the_dashboard_promotes_the_waiting_job_and_says_when_nothing_waits(
    redis_url: str, app_name: str
) -> None:
    board = dashboard(redis_url, app_name)
    board.login()
    nothing = board.client.post(f"/apps/{app_name}/promote", data={"csrf": board.csrf("/")})
    assert nothing.status_code == 303 and nothing.headers["Location"].endswith(f"/apps/{app_name}")
    assert "awaits promotion: nothing to promote" in board.client.get(f"/apps/{app_name}").get_data(
        as_text=True
    )
    assert board.client.post(f"/apps/{app_name}/promote", data={}).status_code in (400, 403), (
        "CSRF is checked"
    )

    queue = board.queue
    lock = DeployLock(queue.client, app_name, ttl=10, purpose="test", prefix=app_name)  # the board's prefix
    job = queue.enqueue("v2", source="cli", requested_by="test").job
    assert lock.try_acquire()
    try:
        assert queue.take(lock, worker="test") is not None
        queue.finish(
            lock,
            job,
            Status.AWAITING,
            message="v2 is healthy on green, awaiting promotion",
            until="2026-12-03T13:00:00+00:00",
        )
    finally:
        lock.release()
    asked = board.client.post(f"/apps/{app_name}/abort", data={"csrf": board.csrf("/")})
    assert asked.status_code == 303 and "/jobs/" in asked.headers["Location"]
    waiting = queue.waiting()
    assert [(j.kind, j.version, j.awaits) for j in waiting] == [("abort", "v2", job.id)]
