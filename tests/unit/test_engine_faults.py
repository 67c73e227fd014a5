"""The engine under infrastructure faults, without Docker: a full disk under the state directory
(before a deploy, in its phase notes, at its record step). End to end, on the real services:
tests/faults/test_infra.py.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness.triggers import write_project
from watcher.config import load_host
from watcher.engine import atomic
from watcher.engine.color import Color
from watcher.engine.deployment import Deployment
from watcher.engine.progress import Progress
from watcher.engine.reconcile import Observed, View
from watcher.engine.state import DeployState, Pending, Release
from watcher.errors import DeployFailed

LIVE = Release(Color.BLUE, "v1")


class Said(Progress):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def say(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Deployment]:
    config = load_host(write_project(tmp_path, app="shop", image="127.0.0.1:5000/acme/shop", port=9), {}).app(None)
    built = Deployment(config, progress=Said(), docker=SimpleNamespace())  # type: ignore[arg-type]
    built.store.save(DeployState(LIVE))
    yield built


def fill_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every new file's content is refused, as on a full disk (renames still work)."""
    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", refused)


def test_a_deploy_that_starts_on_a_full_disk_changes_nothing_and_says_so(engine: Deployment,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fill_disk(monkeypatch)
    view = View(LIVE, None, DeployState(LIVE), Observed(Color.BLUE, {}))
    with pytest.raises(DeployFailed) as failed:
        engine._note_pending(view, Pending("deploy", "v2", Color.GREEN, "prepare"))
    assert str(engine.store.path) in str(failed.value)
    assert "No space left on device" in str(failed.value) and "nothing was changed" in str(failed.value)
    assert engine.store.load() == DeployState(LIVE, updated=engine.store.load().updated)


def test_a_full_disk_after_the_prepare_neither_stops_the_deploy_nor_its_record(
        engine: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    engine._note_pending(View(LIVE, None, DeployState(LIVE), Observed(Color.BLUE, {})),
                         Pending("deploy", "v2", Color.GREEN, "health"))
    prepared = engine._prepare(DeployState(Release(Color.GREEN, "v2"), LIVE, None))
    fill_disk(monkeypatch)
    engine._mark("verify")
    assert any("No space left on device" in line and "'verify' is not noted" in line
               for line in engine.progress.lines)  # type: ignore[attr-defined]
    engine.store.deployment_color_file = None   # (in the project directory: not on the full disk)
    engine._record(prepared)
    recorded = engine.store.load()
    assert recorded.live == prepared.state.live and recorded.previous == LIVE and recorded.pending is None


def test_a_full_disk_before_the_switch_stops_it(engine: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_disk(monkeypatch)
    with pytest.raises(DeployFailed, match="No space left on device.*traffic was not switched"):
        engine._prepare(DeployState(Release(Color.GREEN, "v2"), LIVE, None))
