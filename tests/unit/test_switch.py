"""The traffic switch: the one file Caddy reads the live colour from on every request."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.engine.color import Color
from watcher.engine.switch import TrafficSwitch


@pytest.fixture
def switch(tmp_path: Path) -> TrafficSwitch:
    return TrafficSwitch(tmp_path / "run" / "live")


def test_no_file_means_no_switch_yet(switch: TrafficSwitch) -> None:
    assert switch.current() is None


def test_route_to_and_current(switch: TrafficSwitch) -> None:
    switch.route_to(Color.GREEN)
    assert switch.current() is Color.GREEN
    # Caddy's {file.*} placeholder uses the content as is: exactly the colour, no newline.
    assert switch.route_file.read_text() == "green"
    switch.route_to(Color.BLUE)
    assert switch.current() is Color.BLUE
    assert switch.route_file.read_text() == "blue"


def test_switch_leaves_no_temp_files(switch: TrafficSwitch) -> None:
    for color in (Color.GREEN, Color.BLUE, Color.GREEN):
        switch.route_to(color)
    assert [p.name for p in switch.route_file.parent.iterdir()] == ["live"]


def test_switch_replaces_the_file_not_its_content(switch: TrafficSwitch) -> None:
    # A rename, so a reader holding the old file never sees a half-written one.
    switch.route_to(Color.BLUE)
    before = switch.route_file.stat().st_ino
    switch.route_to(Color.GREEN)
    assert switch.route_file.stat().st_ino != before


def test_clear(switch: TrafficSwitch) -> None:
    switch.route_to(Color.GREEN)
    switch.clear()
    assert not switch.route_file.exists()
    assert switch.current() is None
    switch.clear()  # idempotent


@pytest.mark.parametrize("content", ["purple", "", "blue green", "\x00", "{}", "BLUEISH"])
def test_garbage_is_no_colour(switch: TrafficSwitch, content: str) -> None:
    switch.route_file.parent.mkdir(parents=True)
    switch.route_file.write_text(content)
    assert switch.current() is None

