"""reconcile(): the route file is what is live; Docker health is a property of it, never a reason
to call another colour live. What `status` shows, what a deploy targets and what a rollback
returns to all come from here."""

from __future__ import annotations

from watcher.backends.instance import Instance
from watcher.engine.reconcile import Observed, reconcile, served
from watcher.engine.state import DeployState, Pending, Release
from watcher.platforms.color import Color

BLUE, GREEN = Color.BLUE, Color.GREEN
IMAGE = "ghcr.io/acme/demo"


def container(
    color: Color,
    version: str,
    *,
    state: str = "running",
    health: str | None = "healthy",
    service: str = "web",
    image: str = IMAGE,
) -> Instance:
    return Instance(
        id=f"{color}-{service}-{version}" * 3,
        name=f"demo-{color}-{service}-1",
        service=service,
        image=f"{image}:{version}",
        image_id=f"sha256:{version}",
        state=state,
        health=health,
        exit_code=0 if state == "running" else 137,
    )


def observed(
    route: Color | None,
    *,
    closed: bool = False,
    services: tuple[str, ...] = ("web",),
    **by_color: list[Instance],
) -> Observed:
    return Observed(route, {Color(name): found for name, found in by_color.items()}, services, IMAGE, closed)


def test_state_and_reality_agree() -> None:
    recorded = DeployState(
        live=Release(BLUE, "1.0", "2024-01-01T00:00:00+00:00", "sha256:d1", "sha256:1.0"),
        previous=Release(GREEN, "0.9", "2023-12-01T00:00:00+00:00"),
    )
    view = reconcile(
        recorded,
        observed(
            BLUE, blue=[container(BLUE, "1.0")], green=[container(GREEN, "0.9", state="exited", health=None)]
        ),
    )
    assert view.warnings == []
    assert view.live == recorded.live
    assert view.live.since == "2024-01-01T00:00:00+00:00"  # not reset to "now"
    assert view.previous == recorded.previous
    assert view.live_health.healthy
    assert view.in_sync


def test_an_unhealthy_live_colour_stays_the_live_colour() -> None:
    """Defect 1: a flapping healthcheck must never turn the serving colour into a deploy target."""
    recorded = DeployState(live=Release(GREEN, "2.0"), previous=Release(BLUE, "1.0"))
    for health in ("unhealthy", "starting"):
        view = reconcile(
            recorded,
            observed(GREEN, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0", health=health)]),
        )
        assert (view.live.color, view.live.version) == (GREEN, "2.0")
        assert view.live_health.state == health
        assert any(f"the live colour green is {health}" in w for w in view.warnings)
        assert view.previous == recorded.previous


def test_a_live_colour_without_containers_is_still_the_route() -> None:
    view = reconcile(DeployState(live=Release(GREEN, "2.0")), observed(GREEN, blue=[container(BLUE, "1.0")]))
    assert (view.live.color, view.live.version) == (GREEN, "2.0")
    assert view.live_health.state == "absent"


def test_crash_after_switch_before_record() -> None:
    # The deploy switched Caddy to green 2.0 but died before writing state.json.
    recorded = DeployState(
        live=Release(BLUE, "1.0", "2024-01-01T00:00:00+00:00"),
        previous=Release(GREEN, "0.9"),
        pending=Pending("deploy", "2.0", GREEN, "verify", pid=4242, host="h"),
    )
    view = reconcile(
        recorded, observed(GREEN, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0")])
    )
    assert (view.live.color, view.live.version) == (GREEN, "2.0")
    assert view.previous == recorded.live  # a rollback returns to blue 1.0
    assert any(
        "recorded state says blue (1.0) is live, but Caddy routes to green (2.0)" in w for w in view.warnings
    )
    assert not view.in_sync


def test_pending_is_reported_with_its_phase() -> None:
    recorded = DeployState(
        live=Release(BLUE, "1.0"),
        pending=Pending(
            "deploy", "2.0", GREEN, "health", pid=4242, host="box", started="2024-01-01T00:00:00+00:00"
        ),
    )
    view = reconcile(
        recorded,
        observed(BLUE, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0", health="starting")]),
    )
    assert (view.live.color, view.live.version) == (BLUE, "1.0")
    assert len(view.warnings) == 1
    warning = view.warnings[0]
    assert "'health'" in warning and "2.0" in warning and "green" in warning and "4242" in warning
    assert not view.in_sync


def test_a_note_of_the_process_holding_the_host_lock_runs_any_other_was_interrupted() -> None:
    """While a promote runs, `status` names it and its live worker (issue 20, defect 7); the
    same note once that process is gone reads as interrupted."""
    note = Pending(
        "promote", "2.0", GREEN, "verify", pid=4242, host="box", started="2024-01-01T00:00:00+00:00"
    )
    seen = observed(BLUE, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0")])
    recorded = DeployState(live=Release(BLUE, "1.0"), pending=note)
    running = reconcile(recorded, seen, {"pid": 4242, "host": "box", "purpose": "worker w"}).warnings
    assert running == ["a promote of 2.0 to green (pid 4242 on box) is running, in phase 'verify'"]
    for holder in (None, {"pid": 4243, "host": "box"}, {"pid": 4242, "host": "other"}):
        (warning,) = reconcile(recorded, seen, holder).warnings
        assert warning == "a promote of 2.0 to green (pid 4242 on box) was interrupted during 'verify'"


def test_nothing_deployed_yet() -> None:
    for closed in (False, True):
        view = reconcile(DeployState(), observed(None, closed=closed))
        assert view.live is None and view.previous is None and not view.route_lost
        assert view.warnings == [] and view.in_sync


def test_a_missing_route_file_while_colours_exist_is_lost_not_blue() -> None:
    """Defect 8: `rm -rf .watcher/run` must not read as "nothing live, deploy to blue"."""
    view = reconcile(
        DeployState(live=Release(GREEN, "2.0")),
        observed(
            None, blue=[container(BLUE, "1.0", state="exited", health=None)], green=[container(GREEN, "2.0")]
        ),
    )
    assert view.route_lost and view.live is None and not view.in_sync
    assert any("route file is missing" in w for w in view.warnings)
    assert reconcile(DeployState(), observed(None, blue=[container(BLUE, "1.0")])).route_lost


def test_after_reset_the_closed_route_is_not_lost() -> None:
    view = reconcile(
        DeployState(), observed(None, closed=True, blue=[container(BLUE, "1.0", health="starting")])
    )
    assert not view.route_lost and view.live is None


def test_a_sidecar_on_another_image_does_not_make_the_version_unknown() -> None:
    """Defect 7."""
    blue = [
        container(BLUE, "1.0"),
        container(BLUE, "7.2", service="sidecar", image="docker.io/library/redis"),
    ]
    recorded = DeployState(live=Release(BLUE, "1.0", "t", None, "sha256:1.0"))
    view = reconcile(recorded, observed(BLUE, services=("web", "sidecar"), blue=blue))
    assert (view.live.version, view.live.image) == ("1.0", "sha256:1.0")
    assert view.warnings == [] and view.in_sync


def test_a_moved_tag_is_another_release() -> None:
    """Defect 6: the same tag on another image is not the recorded release."""
    recorded = DeployState(live=Release(BLUE, "latest", "t", "sha256:d1", "sha256:old"))
    view = reconcile(recorded, observed(BLUE, blue=[container(BLUE, "latest")]))  # image sha256:latest
    assert view.live.image == "sha256:latest" and view.live.since == ""
    assert not view.in_sync


def test_mixed_versions_in_one_colour_show_unknown() -> None:
    green = [container(GREEN, "2.0"), container(GREEN, "2.1", service="api")]
    view = reconcile(DeployState(), observed(GREEN, services=("web", "api"), green=green))
    assert view.live.version == "unknown"


def test_served_reads_without_docker() -> None:
    """Defect E: the triggers read what is live from the route file and the state."""
    live = Release(GREEN, "1.2.0", "t", "sha256:d")
    assert served(DeployState(live=live), GREEN) == live
    assert served(DeployState(live=live), BLUE).version == "unknown"
    assert served(DeployState(live=live), None) is None


def test_container_version_is_the_image_tag() -> None:
    assert container(BLUE, "1.2.3").version == "1.2.3"
    untagged = Instance("x", "n", "web", "localhost:5000/acme/demo", "sha", "running", None, 0)
    assert untagged.version == "latest"
    assert untagged.repository == "localhost:5000/acme/demo"
    assert container(BLUE, "1.0").repository == IMAGE
