"""reconcile(): the recorded state checked against what Caddy routes to and what Docker runs.
What `status` shows and what a rollback returns to both come from here."""

from __future__ import annotations

from watcher.backends.containers import ContainerInfo
from watcher.engine.color import Color
from watcher.engine.reconcile import Observed, reconcile
from watcher.engine.state import DeployState, Pending, Release

BLUE, GREEN = Color.BLUE, Color.GREEN


def container(color: Color, version: str, *, state: str = "running", health: str | None = "healthy",
              service: str = "web") -> ContainerInfo:
    return ContainerInfo(id=f"{color}-{service}-{version}" * 3, name=f"demo-{color}-{service}-1",
                         service=service, image=f"ghcr.io/acme/demo:{version}", image_id=f"sha256:{version}",
                         state=state, health=health, exit_code=0 if state == "running" else 137)


def observed(route: Color | None, **by_color: list[ContainerInfo]) -> Observed:
    return Observed(route, {Color(name): found for name, found in by_color.items()})


def test_state_and_reality_agree() -> None:
    recorded = DeployState(live=Release(BLUE, "1.0", "2024-01-01T00:00:00+00:00"),
                           previous=Release(GREEN, "0.9", "2023-12-01T00:00:00+00:00"))
    view = reconcile(recorded, observed(BLUE, blue=[container(BLUE, "1.0")],
                                        green=[container(GREEN, "0.9", state="exited", health=None)]))
    assert view.warnings == []
    assert view.live == recorded.live
    assert view.live.since == "2024-01-01T00:00:00+00:00"   # not reset to "now"
    assert view.previous == recorded.previous
    assert view.in_sync


def test_route_says_green_but_only_blue_is_ready_falls_back_to_blue() -> None:
    recorded = DeployState(live=Release(GREEN, "2.0"), previous=Release(BLUE, "1.0"))
    view = reconcile(recorded, observed(GREEN, blue=[container(BLUE, "1.0")],
                                        green=[container(GREEN, "2.0", health="unhealthy")]))
    assert (view.live.color, view.live.version) == (BLUE, "1.0")
    fallback = [w for w in view.warnings if "fallback" in w]
    assert len(fallback) == 1
    assert "green" in fallback[0] and "blue" in fallback[0]
    assert any("recorded state says green (2.0)" in w for w in view.warnings)
    assert not view.in_sync


def test_route_says_green_and_green_stopped_falls_back_to_blue() -> None:
    view = reconcile(DeployState(live=Release(GREEN, "2.0")),
                     observed(GREEN, blue=[container(BLUE, "1.0")], green=[]))
    assert view.live.color is BLUE
    assert any("fallback" in w for w in view.warnings)


def test_crash_after_switch_before_record() -> None:
    # The deploy switched Caddy to green 2.0 but died before writing state.json.
    recorded = DeployState(live=Release(BLUE, "1.0", "2024-01-01T00:00:00+00:00"),
                           previous=Release(GREEN, "0.9"),
                           pending=Pending("deploy", "2.0", GREEN, "verify", pid=4242, host="h"))
    view = reconcile(recorded, observed(GREEN, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0")]))
    assert (view.live.color, view.live.version) == (GREEN, "2.0")
    assert view.previous == recorded.live                      # a rollback returns to blue 1.0
    assert any("recorded state says blue (1.0) is live, but traffic goes to green (2.0)" in w
               for w in view.warnings)
    assert not view.in_sync


def test_crash_after_switch_without_pending_note() -> None:
    recorded = DeployState(live=Release(BLUE, "1.0"))
    view = reconcile(recorded, observed(GREEN, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0")]))
    assert (view.live.color, view.live.version) == (GREEN, "2.0")
    assert (view.previous.color, view.previous.version) == (BLUE, "1.0")
    assert len(view.warnings) == 1


def test_pending_is_reported_with_its_phase() -> None:
    recorded = DeployState(live=Release(BLUE, "1.0"),
                           pending=Pending("deploy", "2.0", GREEN, "health_check", pid=4242, host="box",
                                           started="2024-01-01T00:00:00+00:00"))
    view = reconcile(recorded, observed(BLUE, blue=[container(BLUE, "1.0")],
                                        green=[container(GREEN, "2.0", health="starting")]))
    assert (view.live.color, view.live.version) == (BLUE, "1.0")
    assert len(view.warnings) == 1
    warning = view.warnings[0]
    assert "'health_check'" in warning
    assert "2.0" in warning and "green" in warning and "4242" in warning and "box" in warning
    assert not view.in_sync


def test_nothing_running() -> None:
    view = reconcile(DeployState(), observed(None))
    assert view.live is None and view.previous is None
    assert view.warnings == []
    assert view.in_sync


def test_nothing_running_but_state_says_blue() -> None:
    view = reconcile(DeployState(live=Release(BLUE, "1.0")), observed(BLUE, blue=[], green=[]))
    assert view.live is None
    assert any("traffic goes to nothing" in w for w in view.warnings)


def test_running_but_nothing_healthy() -> None:
    view = reconcile(DeployState(), observed(BLUE, blue=[container(BLUE, "1.0", health="unhealthy")]))
    assert view.live is None
    assert any("no colour is healthy" in w for w in view.warnings)


def test_no_route_file_yet_means_blue_first() -> None:
    view = reconcile(DeployState(), observed(None, blue=[container(BLUE, "1.0")], green=[container(GREEN, "2.0")]))
    assert (view.live.color, view.live.version) == (BLUE, "1.0")
    assert view.warnings == []   # no route file is not a fallback


def test_one_unready_container_makes_the_colour_unready() -> None:
    blue = [container(BLUE, "1.0"), container(BLUE, "1.0", service="api", health="starting")]
    view = reconcile(DeployState(), observed(BLUE, blue=blue, green=[container(GREEN, "2.0")]))
    assert view.live.color is GREEN


def test_container_without_healthcheck_counts_as_ready() -> None:
    view = reconcile(DeployState(), observed(GREEN, green=[container(GREEN, "2.0", health=None)]))
    assert (view.live.color, view.live.version) == (GREEN, "2.0")


def test_mixed_versions_in_one_colour_show_unknown() -> None:
    green = [container(GREEN, "2.0"), container(GREEN, "2.1", service="api")]
    view = reconcile(DeployState(), observed(GREEN, green=green))
    assert view.live.version == "unknown"


def test_container_version_is_the_image_tag() -> None:
    assert container(BLUE, "1.2.3").version == "1.2.3"
    untagged = ContainerInfo("x", "n", "web", "localhost:5000/acme/demo", "sha", "running", None, 0)
    assert untagged.version == "latest"
