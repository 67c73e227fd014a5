"""The engine under infrastructure faults, without Docker: a full disk under the state directory
(before a deploy, in its phase notes, at its record step) and a Docker engine that restarts
under an abort. End to end, on the real services: tests/faults/test_infra.py.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.harness.triggers import write_project
from watcher import atomic
from watcher.backends.containers import Containers
from watcher.config import load_host
from watcher.engine import unwind
from watcher.engine.deployment import Deployment
from watcher.engine.reconcile import Observed, View
from watcher.engine.state import DeployState, Pending, Release
from watcher.errors import DeployFailed, DockerUnavailable
from watcher.platforms.color import Color
from watcher.progress import Progress

LIVE = Release(Color.BLUE, "v1")


class Said(Progress):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def say(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Deployment]:
    config = load_host(write_project(tmp_path, app="shop", image="127.0.0.1:5000/acme/shop", port=9), {}).app(
        None
    )
    built = Deployment(config, progress=Said(), platform=SimpleNamespace())  # type: ignore[arg-type]
    built.store.save(DeployState(LIVE))
    yield built


def fill_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every new file's content is refused, as on a full disk (renames still work)."""

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", refused)


def test_a_deploy_that_starts_on_a_full_disk_changes_nothing_and_says_so(
    engine: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_disk(monkeypatch)
    view = View(LIVE, None, DeployState(LIVE), Observed(Color.BLUE, {}))
    with pytest.raises(DeployFailed) as failed:
        engine.ledger.note_pending(view, Pending("deploy", "v2", Color.GREEN, "prepare"))
    assert str(engine.store.path) in str(failed.value)
    assert "No space left on device" in str(failed.value) and "nothing was changed" in str(failed.value)
    assert engine.store.load() == DeployState(LIVE, updated=engine.store.load().updated)


def test_a_full_disk_after_the_prepare_neither_stops_the_deploy_nor_its_record(
    engine: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.ledger.note_pending(
        View(LIVE, None, DeployState(LIVE), Observed(Color.BLUE, {})),
        Pending("deploy", "v2", Color.GREEN, "health"),
    )
    prepared = engine.ledger.prepare(DeployState(Release(Color.GREEN, "v2"), LIVE, None))
    fill_disk(monkeypatch)
    engine.ledger.mark("verify")
    assert any(
        "No space left on device" in line and "'verify' is not noted" in line
        for line in engine.progress.lines
    )  # type: ignore[attr-defined]
    engine.store.deployment_color_file = None  # (in the project directory: not on the full disk)
    engine.ledger.record(prepared)
    recorded = engine.store.load()
    assert recorded.live == prepared.state.live and recorded.previous == LIVE and recorded.pending is None


def test_a_full_disk_before_the_switch_stops_it(engine: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_disk(monkeypatch)
    with pytest.raises(DeployFailed, match="No space left on device.*traffic was not switched"):
        engine.ledger.prepare(DeployState(Release(Color.GREEN, "v2"), LIVE, None))


def test_an_abort_waits_for_a_restarting_docker_engine(
    engine: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([False, False, False, True])
    engine.platform = SimpleNamespace(answers=lambda: next(answers))  # type: ignore[assignment]
    monkeypatch.setattr(unwind.time, "sleep", lambda seconds: None)
    assert unwind.came_back(engine)
    assert any("Docker is not answering; waiting up to" in line for line in engine.progress.lines)  # type: ignore[attr-defined]


def test_an_abort_step_that_failed_with_docker_answering_is_not_retried(
    engine: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.platform = SimpleNamespace(answers=lambda: True)  # type: ignore[assignment]
    assert not unwind.came_back(engine)


def test_an_abort_gives_up_on_an_engine_that_stays_away(
    engine: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 10_000, 50))
    engine.platform = SimpleNamespace(answers=lambda: False)  # type: ignore[assignment]
    monkeypatch.setattr(unwind.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(unwind.time, "sleep", lambda seconds: None)
    assert not unwind.came_back(engine)


def test_docker_going_away_under_a_call_is_docker_unavailable() -> None:
    """The SDK lets requests' ConnectionError through when the daemon's socket vanishes (a
    restart): it must read as DockerUnavailable, which the engine's abort knows, not a traceback."""

    def vanished(**kwargs: object) -> None:
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")

    docker = Containers.__new__(Containers)
    docker.client = SimpleNamespace(
        containers=SimpleNamespace(list=vanished),  # type: ignore[assignment]
        info=lambda: vanished(),
        api=SimpleNamespace(logs=lambda *a, **k: vanished(), inspect_container=lambda *a: vanished()),
    )
    with pytest.raises(DockerUnavailable, match="Docker stopped answering"):
        docker.of_project("shop-green")
    with pytest.raises(DockerUnavailable, match="Docker stopped answering"):
        docker.engine_id()
    # A failed health wait's report (seen under an engine restart: a traceback out of `deploy`).
    with pytest.raises(DockerUnavailable, match="Docker stopped answering"):
        docker.logs("id")
    with pytest.raises(DockerUnavailable, match="Docker stopped answering"):
        docker.last_health_output("id")
