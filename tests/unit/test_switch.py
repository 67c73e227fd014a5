"""The traffic switch: the one file Caddy reads the live colour from on every request, and the
one rule every move of traffic obeys: only to a colour that is healthy at that moment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from watcher.engine.switch import TargetNotHealthy, TrafficSwitch
from watcher.platforms.color import Color
from watcher.platforms.health import Health


@dataclass
class FakeStack:
    """Pure logic: a colour whose health the test sets (the real one asks Docker)."""

    color: Color
    state: str = "healthy"

    def health(self) -> Health:
        return Health(self.state, "" if self.state == "healthy" else f"web-1 {self.state}")


@pytest.fixture
def switch(tmp_path: Path) -> TrafficSwitch:
    return TrafficSwitch(tmp_path / "run" / "live")


def move(switch: TrafficSwitch, color: Color, state: str = "healthy") -> None:
    switch.move_to(FakeStack(color, state))  # type: ignore[arg-type]


def test_no_file_means_no_switch_yet(switch: TrafficSwitch) -> None:
    assert switch.current() is None and not switch.closed()


def test_move_to_and_current(switch: TrafficSwitch) -> None:
    move(switch, Color.GREEN)
    assert switch.current() is Color.GREEN
    assert switch.route_file.read_text() == "green"
    move(switch, Color.BLUE)
    assert switch.current() is Color.BLUE


@pytest.mark.parametrize("state", ["unhealthy", "starting", "restarting", "exited", "stopped", "absent"])
def test_traffic_never_moves_to_a_colour_that_is_not_healthy(switch: TrafficSwitch, state: str) -> None:
    move(switch, Color.BLUE)
    with pytest.raises(TargetNotHealthy, match=f"not switching traffic to green: it is {state}"):
        move(switch, Color.GREEN, state)
    assert switch.current() is Color.BLUE, "the refused move changed nothing"


def test_switch_leaves_no_temp_files(switch: TrafficSwitch) -> None:
    for color in (Color.GREEN, Color.BLUE, Color.GREEN):
        move(switch, color)
    assert [p.name for p in switch.route_file.parent.iterdir()] == ["live"]


def test_switch_replaces_the_file_not_its_content(switch: TrafficSwitch) -> None:
    # A rename, so a reader holding the old file never sees a half-written one.
    move(switch, Color.BLUE)
    inode = switch.route_file.stat().st_ino
    move(switch, Color.GREEN)
    assert switch.route_file.stat().st_ino != inode


def test_close_says_nothing_is_live(switch: TrafficSwitch) -> None:
    move(switch, Color.GREEN)
    switch.close()
    assert switch.current() is None and switch.closed()
    assert switch.route_file.read_text() == "none"


@pytest.mark.parametrize("content", ["purple", "", "blue green", "\x00", "{}", "BLUEISH"])
def test_garbage_is_no_colour(switch: TrafficSwitch, content: str) -> None:
    switch.route_file.parent.mkdir(parents=True)
    switch.route_file.write_text(content)
    assert switch.current() is None and not switch.closed()
